"""`scripts/setup` says what it does as it goes. Run for real on a copy of the repository's setup files whose
venvs already exist (a venv of its own, and the Mailman venv the tests use, only looked at), so that what it
prints for each step can be read without a minute of installing."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import REPO

MAILMAN_VENV = Path(os.environ.get("SECIRBOT_TEST_MAILMAN_VENV", REPO / ".mailman-venv"))


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    if not (shutil.which("dovecot") or Path("/usr/sbin/dovecot").exists()) or not shutil.which("openssl"):
        pytest.skip("a Debian package is missing: as root, the script would install it")
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "setup", repo / "scripts" / "setup")
    shutil.copy2(REPO / "pyproject.toml", repo / "pyproject.toml")
    # A real venv, but without pip: should the script try to install anything, it fails loudly.
    subprocess.run(["python3", "-m", "venv", "--without-pip", str(repo / ".venv")], check=True, timeout=60)
    if not (MAILMAN_VENV / "bin" / "mailman").exists():
        pytest.skip(f"no Mailman venv at {MAILMAN_VENV} (scripts/setup makes it)")
    (repo / ".mailman-venv").symlink_to(MAILMAN_VENV)
    return repo


def run_setup(repo: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECIRBOT_", "VIRTUAL_ENV", "PYTHON"))}
    return subprocess.run(
        ["bash", str(repo / "scripts" / "setup")], cwd="/", env=env, capture_output=True, text=True, timeout=120
    )


def test_every_step_is_announced_and_what_exists_is_skipped(copy: Path) -> None:
    digest = hashlib.sha256((copy / "pyproject.toml").read_bytes()).hexdigest()
    (copy / ".venv" / ".secirbot-setup").write_text(digest + "\n")
    done = run_setup(copy)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines == [
        "setup: checking Debian packages: dovecot-imapd, openssl, python3-venv",
        "setup:   all present",
        "setup: .venv exists: keeping it",
        "setup: secirbot is installed in .venv from this pyproject.toml: skipping"
        " (delete .venv/.secirbot-setup to force)",
        "setup: .mailman-venv has Mailman 3: skipping",
        "setup: done: .venv (secirbot), .mailman-venv (Mailman 3 for the tests); try .venv/bin/secirbot demo",
    ]
    assert done.stderr == ""


def test_a_changed_pyproject_installs_again_and_a_failing_step_is_named(copy: Path) -> None:
    (copy / ".venv" / ".secirbot-setup").write_text("0" * 64 + "\n")  # installed from another pyproject.toml
    done = run_setup(copy)
    assert done.returncode != 0
    assert "setup: installing secirbot and its test tools into .venv (about a minute)" in done.stdout
    assert "No module named pip" in done.stderr  # pip's own error is not hidden, only its progress
    assert done.stderr.rstrip().endswith(
        "setup: FAILED while installing secirbot and its test tools into .venv (about a minute)"
    )
    assert (copy / ".venv" / ".secirbot-setup").read_text() == "0" * 64 + "\n"  # not marked installed
    assert "Mailman" not in done.stdout  # stopped at the failed step
