"""`secirbot demo` keeps its transcript and the bot's log apart: stdout is the transcript alone, the log
lines go to the file the transcript names. Run as a real process, as an operator starts it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers_intake import cli_env

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d.*\b(INFO|WARNING|ERROR|DEBUG)\b", re.M)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_transcript_has_stdout_to_itself_and_names_the_log_file(tmp_path: Path, log_format: str) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "secirbot", "--log-format", log_format, "demo"],
        cwd=cwd,
        env=cli_env(),  # not a TMPDIR of our own: Dovecot's socket paths must stay short
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # nothing on the terminal besides the transcript
    out = done.stdout
    assert out.lstrip().startswith("secirbot demo. ")
    assert not LOG_LINE.search(out), LOG_LINE.search(out)
    assert '"logger": "secirbot' not in out and "secirbot.pipeline" not in out
    assert "join address=mette.hansen@security.punktum.example" in out  # still the whole procedure

    named = re.findall(r"(/\S+\.log)\b", out)
    assert named and set(named) == {named[0]}, named  # one log file, named at the start and at the end
    log_file = Path(named[0])
    assert log_file.is_absolute() and log_file.exists()  # kept after the demo cleaned up its folder
    try:
        lines = log_file.read_text(encoding="utf-8").splitlines()
    finally:
        log_file.unlink()
    if log_format == "json":
        records = [json.loads(line) for line in lines]  # --log-format is honoured in the file
        messages = [r["message"] for r in records]
    else:
        assert all(LOG_LINE.match(line) for line in lines if not line.startswith((" ", "Traceback")))
        messages = lines
    assert any("request-opened" in m for m in messages)
    assert any("decided:approve" in m for m in messages)
    assert not list(cwd.iterdir())
