"""The TLS flags and files: both or neither, and one clear line for each file that will not do."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    load_pem_private_key,
)

from objstore import cli
from objstore.cli import parse_config
from objstore.errors import StartupError
from objstore.tls import MAX_PEM_SIZE, server_context

from .helpers import TlsFiles, tls_files


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return tls_files(tmp_path / "tls")


def refusal(cert: Path, key: Path) -> str:
    with pytest.raises(StartupError) as refused:
        server_context(cert, key)
    return str(refused.value)


def test_context_serves_tls_1_2_and_later(tls: TlsFiles) -> None:
    """The context is a server one that refuses TLS 1.0 and 1.1."""
    context = server_context(tls.cert, tls.key)
    assert (context.protocol, context.minimum_version) == (
        ssl.PROTOCOL_TLS_SERVER,
        ssl.TLSVersion.TLSv1_2,
    )


def test_missing_certificate_is_named(tls: TlsFiles, tmp_path: Path) -> None:
    """A certificate file that does not exist is named, with the flag to check."""
    missing = tmp_path / "nope.pem"
    assert refusal(missing, tls.key) == (
        f"the TLS certificate file {missing} does not exist; check --tls-cert"
    )


def test_missing_key_is_named(tls: TlsFiles, tmp_path: Path) -> None:
    """A key file that does not exist is named, with the flag to check."""
    missing = tmp_path / "nope.pem"
    assert (
        refusal(tls.cert, missing) == f"the TLS key file {missing} does not exist; check --tls-key"
    )


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_key_is_named(tls: TlsFiles) -> None:
    """A key the user cannot read is named, with what to do."""
    tls.key.chmod(0)
    assert refusal(tls.cert, tls.key) == (
        f"the TLS key file {tls.key} cannot be read (permission denied); make it readable by "
        "the user running objstore, or copy it somewhere that user can read"
    )


def test_folder_given_as_certificate_is_named(tls: TlsFiles) -> None:
    """A folder given as the certificate cannot be read, and the line says so."""
    assert refusal(tls.cert.parent, tls.key) == (
        f"the TLS certificate file {tls.cert.parent} cannot be read (Is a directory); "
        "check --tls-cert"
    )


def test_certificate_that_is_not_pem_is_named(tls: TlsFiles) -> None:
    """A certificate file without a PEM certificate in it is refused, naming what to give."""
    tls.cert.write_text("hello\n")
    assert refusal(tls.cert, tls.key) == (
        f"the TLS certificate file {tls.cert} is not a PEM certificate (it has no "
        "-----BEGIN CERTIFICATE----- line); give --tls-cert the certificate chain, like "
        "Let's Encrypt's fullchain.pem"
    )


def test_certificate_given_as_key_is_refused(tls: TlsFiles) -> None:
    """The certificate given for both flags: the key file has no private key."""
    assert refusal(tls.cert, tls.cert) == (
        f"the TLS key file {tls.cert} is not a PEM private key (it has no -----BEGIN ... "
        "PRIVATE KEY----- line); give --tls-key the private key, like Let's Encrypt's "
        "privkey.pem"
    )


def test_oversized_file_is_refused_unread(tls: TlsFiles) -> None:
    """A file over 1 MiB is not read whole: it cannot be a certificate."""
    tls.cert.write_bytes(b"-" * (MAX_PEM_SIZE + 1))
    assert refusal(tls.cert, tls.key) == (
        f"the TLS certificate file {tls.cert} is larger than 1024 KiB, so it is not a PEM "
        "TLS certificate; check --tls-cert"
    )


def test_key_of_another_certificate_is_refused(tls: TlsFiles) -> None:
    """A key that is not the certificate's is named, with the certificate."""
    trustme.CA().issue_cert("localhost").private_key_pem.write_to_path(str(tls.key))
    assert refusal(tls.cert, tls.key) == (
        f"the TLS key file {tls.key} is not the key of the certificate in {tls.cert}; give "
        "--tls-key the private key made with that certificate"
    )


def test_key_with_a_passphrase_is_refused_without_asking(tls: TlsFiles) -> None:
    """An encrypted key is refused (no prompt), with how to decrypt it."""
    key = load_pem_private_key(tls.key.read_bytes(), password=None)
    tls.key.write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"secret"))
    )
    assert refusal(tls.cert, tls.key) == (
        f"the TLS key file {tls.key} is encrypted with a passphrase, which objstore does not "
        f"support; decrypt it once (openssl pkey -in {tls.key} -out key.pem) and give that file"
    )


def test_flags_fill_the_config() -> None:
    """--tls-cert and --tls-key are the config's paths; TLS is then on."""
    config = parse_config(["--tls-cert", "full.pem", "--tls-key", "priv.pem"], {})
    assert (config.tls_cert, config.tls_key, config.tls) == (
        Path("full.pem"),
        Path("priv.pem"),
        True,
    )


def test_environment_fills_the_config() -> None:
    """OBJSTORE_TLS_CERT and OBJSTORE_TLS_KEY do what the flags do."""
    config = parse_config([], {"OBJSTORE_TLS_CERT": "c.pem", "OBJSTORE_TLS_KEY": "k.pem"})
    assert (config.tls_cert, config.tls_key) == (Path("c.pem"), Path("k.pem"))


def test_no_flags_mean_no_tls() -> None:
    """Without the flags (or with empty variables) the server speaks plain ws:// and http://."""
    config = parse_config([], {"OBJSTORE_TLS_CERT": "", "OBJSTORE_TLS_KEY": ""})
    assert (config.tls_cert, config.tls_key, config.tls) == (None, None, False)


@pytest.mark.parametrize(
    ("argv", "env", "line"),
    [
        (["--tls-cert", "c.pem"], {}, "--tls-cert needs --tls-key too"),
        (["--tls-key", "k.pem"], {}, "--tls-key needs --tls-cert too"),
        ([], {"OBJSTORE_TLS_KEY": "k.pem"}, "--tls-key needs --tls-cert too"),
    ],
)
def test_one_flag_without_the_other_is_a_usage_error(
    argv: list[str], env: dict[str, str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """One of the two TLS settings alone exits 2 saying to give both or neither."""
    with pytest.raises(SystemExit) as exited:
        parse_config(argv, env)
    assert exited.value.code == cli.USAGE_ERROR
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"objstore: error: {line}: give both to serve TLS, or neither"
    )


def test_bad_file_exits_3_with_one_line(
    tls: TlsFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The program exits 3 with the one line naming the file, and nothing else on stderr."""
    missing = tmp_path / "gone.pem"
    argv = ["--port", "0", "--cache-dir", str(tmp_path / "cache")]
    code = cli.main([*argv, "--tls-cert", str(missing), "--tls-key", str(tls.key)])
    err = capsys.readouterr().err
    assert (code, err.splitlines()[-1]) == (
        cli.STARTUP_FAILURE,
        f"objstore: the TLS certificate file {missing} does not exist; check --tls-cert",
    )
    assert "Traceback" not in err
