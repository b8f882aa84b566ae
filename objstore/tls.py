"""The server's TLS context: a certificate chain and its key, loaded once at start.

Owns reading ``--tls-cert`` and ``--tls-key``, the settings of the
``SSLContext`` (TLS 1.2 or later, the ssl module's default ciphers) and what a
user is told when the files do not do: a missing or unreadable file, one that
is not PEM, a key encrypted with a passphrase (not supported: objstore starts
unattended, so nobody would type it), a key that is not the certificate's.
Each is a :class:`~objstore.errors.StartupError` that names the file and says
what to do. Knows nothing of the server, websockets or HTTP.

The files are read once: a renewed certificate (Let's Encrypt renews every
60 days or so) is used after a restart; there is no reload while running.

Bounds: each file is read up to 1 MiB (a long chain is a few KiB); a larger
file is refused as not being a certificate or key.
"""

from __future__ import annotations

import errno
import os
import ssl
from pathlib import Path

from .errors import StartupError

__all__ = ["MAX_PEM_SIZE", "server_context"]

#: The largest certificate or key file read, in bytes.
MAX_PEM_SIZE = 1024 * 1024

_CERT_MARK = b"-----BEGIN CERTIFICATE-----"
_ENCRYPTED_MARKS = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")


class _PassphraseAsked(Exception):
    """The ssl module asked for a key's passphrase, which objstore never has."""


def _never_a_passphrase() -> bytes:
    # Without a callback, OpenSSL would prompt on the terminal and wait.
    raise _PassphraseAsked


def _read_pem(path: Path, what: str, flag: str) -> bytes:
    """The bytes of *path*, or a StartupError naming it and *flag* to fix it."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_PEM_SIZE + 1)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise StartupError(f"the {what} file {path} does not exist; check {flag}") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise StartupError(
                f"the {what} file {path} cannot be read (permission denied); make it readable "
                "by the user running objstore, or copy it somewhere that user can read"
            ) from None
        raise StartupError(
            f"the {what} file {path} cannot be read ({exc.strerror or exc}); check {flag}"
        ) from None
    if len(data) > MAX_PEM_SIZE:
        raise StartupError(
            f"the {what} file {path} is larger than {MAX_PEM_SIZE // 1024} KiB, so it is not a "
            f"PEM {what}; check {flag}"
        )
    return data


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context serving the chain in *cert* with the private key in *key* (PEM).

    Raises StartupError with one line naming the file at fault and what to do.
    """
    chain = _read_pem(cert, "TLS certificate", "--tls-cert")
    secret = _read_pem(key, "TLS key", "--tls-key")
    if _CERT_MARK not in chain:
        raise StartupError(
            f"the TLS certificate file {cert} is not a PEM certificate (it has no "
            f"{_CERT_MARK.decode()} line); give --tls-cert the certificate chain, like "
            "Let's Encrypt's fullchain.pem"
        )
    if any(mark in secret for mark in _ENCRYPTED_MARKS):
        raise StartupError(_encrypted(key))
    if b"PRIVATE KEY-----" not in secret:
        raise StartupError(
            f"the TLS key file {key} is not a PEM private key (it has no -----BEGIN ... PRIVATE "
            "KEY----- line); give --tls-key the private key, like Let's Encrypt's privkey.pem"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(os.fspath(cert), os.fspath(key), password=_never_a_passphrase)
    except _PassphraseAsked:
        raise StartupError(_encrypted(key)) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise StartupError(
                f"the TLS key file {key} is not the key of the certificate in {cert}; give "
                "--tls-key the private key made with that certificate"
            ) from None
        raise StartupError(
            f"the TLS certificate {cert} and key {key} cannot be used "
            f"({exc.reason or exc}); check that both are PEM files made together"
        ) from None
    except OSError as exc:  # the files changed since they were read
        raise StartupError(
            f"the TLS certificate {cert} and key {key} cannot be read "
            f"({exc.strerror or exc}); check --tls-cert and --tls-key"
        ) from None
    return context


def _encrypted(key: Path) -> str:
    return (
        f"the TLS key file {key} is encrypted with a passphrase, which objstore does not "
        f"support; decrypt it once (openssl pkey -in {key} -out key.pem) and give that file"
    )
