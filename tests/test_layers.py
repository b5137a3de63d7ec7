"""The import graph of secirbot/ has no circle, counting imports made only for type checking; the request
tables are read and written by the ledger alone; the request's state machine does no I/O."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.harness import REPO

PACKAGE = REPO / "secirbot"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
            for candidate in (target, *(f"{target}.{a.name}" for a in node.names)):
                if candidate in known and candidate != name:
                    out.add(candidate)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_even_for_type_checking() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_only_the_ledger_touches_the_request_tables() -> None:
    sql = re.compile(r"\b(FROM|UPDATE|INTO|JOIN)\s+(requests|approvers|tokens|requester_tokens)\b")
    owners = {"secirbot/ledger.py", "secirbot/store.py"}  # store: the schema and its migrations
    offenders = [
        str(path.relative_to(REPO))
        for path in PACKAGE.rglob("*.py")
        if str(path.relative_to(REPO)) not in owners and sql.search(path.read_text())
    ]
    assert offenders == []


def test_the_state_machine_imports_no_io() -> None:
    modules = _modules()
    direct = _imports("secirbot.lifecycle", modules["secirbot.lifecycle"], set(modules))
    assert not direct & {"secirbot.store", "secirbot.outbox", "secirbot.mailbox", "secirbot.workflow", "secirbot.bot"}
    text = modules["secirbot.lifecycle"].read_text()
    assert not re.search(r"^\s*import (sqlite3|smtplib|socket|requests)\b", text, re.M)
