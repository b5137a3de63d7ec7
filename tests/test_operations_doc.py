"""docs/operations.md tells operators what to type: every `secirbot` command line in it must be one the CLI
accepts (the command exists, each option belongs to it), and every file or key it names must be there."""

from __future__ import annotations

import argparse
import re
import shlex

from secirbot.cli import build_parser
from tests.harness import REPO

DOC = REPO / "docs" / "operations.md"


def code_fragments(text: str) -> list[str]:
    """Inline `code` spans and the lines of indented code blocks, a continued line joined to the next."""
    blocks = "\n".join(line[4:] for line in text.splitlines() if line.startswith(("    ", "       ")))
    joined = blocks.replace("\\\n", " ")
    inline = re.findall(r"`([^`\n]+)`", text)
    return [line.strip() for line in joined.splitlines() if line.strip()] + inline


def subcommands() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, dict(action.choices)


def invocations(fragment: str) -> list[list[str]]:
    """Each `secirbot [global options] COMMAND ...` in a shell fragment, up to the next shell operator."""
    try:
        words = shlex.split(fragment.split("#", 1)[0])
    except ValueError:
        words = fragment.split()
    out = []
    for n, word in enumerate(words):
        if word != "secirbot":
            continue
        rest = []
        for token in words[n + 1 :]:
            if token in ("&&", "||", "|", ";") or token.endswith(";"):
                break
            rest.append(token)
        out.append(rest)
    return out


def test_every_secirbot_command_line_in_the_doc_is_accepted_by_the_cli() -> None:
    parser, commands = subcommands()
    global_options = set(parser._option_string_actions)
    checked = set()
    for fragment in code_fragments(DOC.read_text(encoding="utf-8")):
        for rest in invocations(fragment):
            if fragment.startswith("docker") and not (rest and rest[0] in commands):
                continue  # `--name secirbot`, `docker exec secirbot python ...`: the container, not the command
            while rest and rest[0].startswith("-"):
                assert rest[0] in global_options, f"{fragment!r}: no global option {rest[0]}"
                rest = rest[2:] if rest[0] in ("--config", "--log-format") else rest[1:]
            if not rest or rest[0] == "..." or rest[0].isupper():  # a placeholder: `secirbot COMMAND --help`
                continue
            command = rest[0]
            assert command in commands, f"{fragment!r}: secirbot has no command {command!r}"
            known = set(commands[command]._option_string_actions) | global_options
            for token in rest[1:]:
                if token.startswith("--"):
                    assert token.split("=", 1)[0] in known, f"{fragment!r}: {command} has no option {token}"
            checked.add(command)
    # The doc covers the whole operator's path, not just a command or two.
    assert {"check", "run", "init", "export", "requests", "show", "approve", "deny", "report"} <= checked


def test_the_files_and_keys_the_doc_names_exist() -> None:
    text = DOC.read_text(encoding="utf-8")
    dockerfile = (REPO / "Dockerfile").read_text()
    for variable in ("SECIRBOT_CONFIG", "SECIRBOT_RULES", "SECIRBOT_TEMPLATES", "SECIRBOT_STORE_PATH"):
        assert variable in text and variable in dockerfile
    assert "HEALTHCHECK --interval=60s" in dockerfile and "every 60 s" in text
    assert "uid 10001" in text and "--uid 10001" in dockerfile
    readme = (REPO / "README.md").read_text()
    assert "(docs/operations.md)" in readme
    for column in re.findall(r"`(\w+)`", text[text.index("with the columns") : text.index("Without `--output`")]):
        if column not in ("mail", "cli", "member", "acknowledged", "conflict"):
            from secirbot.reports import EXPORT_FIELDS

            assert column in EXPORT_FIELDS, column
