"""`secirbot explain FILE.eml`: what the bot would do with one mail, without doing any of it.

A dry run through the very code that handles mail (pipeline.process, then the request's first IANA lookup)
against an in-memory copy of the store, with the configured rules and templates: nothing is written to the
real store, no mail is sent (the outbox of the copy is only read), no IMAP folder is touched. What the
copy's outbox and audit hold afterwards is exactly what the real run would have queued and recorded.
"""

from __future__ import annotations

import email
import email.policy
import json
import sqlite3
from pathlib import Path
from typing import Any, TextIO

from . import workflow
from .classify import classify
from .config import Config
from .iana.names import parse_tld
from .message import UnparseableMail, parse_mail
from .newtext import new_text
from .pipeline import Origin, process
from .rules import Rules
from .store import SCHEMA_VERSION, Store, StoreError
from .tokens import reply_token
from .wiring import build

EXPLAIN_FOLDER = "(explain)"


def _copy_of_store(config: Config) -> tuple[Store, str]:
    """An in-memory copy of the store (or an empty one), and a note saying which."""
    copy = Store(":memory:")
    path = config.store.path
    if not path.exists():
        return copy, f"no store at {path} yet: judged as on the first day"
    try:
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            source.backup(copy.conn)
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the store {path}: {exc}") from exc
    version = copy.conn.execute("PRAGMA user_version").fetchone()[0]
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"the store {path} has schema version {version}, this secirbot {SCHEMA_VERSION}: "
            "run `secirbot run --once` to bring it up to date first"
        )
    return copy, f"a copy of {path}"


def explain(config: Config, rules: Rules, raw: bytes, *, lookup: bool = True) -> dict[str, Any]:
    """What happens to `raw`: classification, the sender's new text, the checks, the state changes and the
    mail that would go out. `lookup=False` stops before asking IANA (the request then stays 'resolving')."""
    store, store_note = _copy_of_store(config)
    # Nothing here calls the outbox's deliver(): what it queues lives in the copy, dropped at the end.
    bot = build(config, rules, store=store)
    result: dict[str, Any] = {"store": store_note}
    try:
        mail = parse_mail(raw)
    except UnparseableMail as exc:
        mail = None
        result["unreadable"] = str(exc)
    if mail is not None:
        cls = classify(mail, bot_address=bot.bot_address, list_address=config.mailman.list)
        token = reply_token(mail, bot.bot_address, config.imap.envelope_header)
        result.update(
            {
                "from": mail.from_addr or f"(none: {mail.from_problem})",
                "subject": mail.subject,
                "taken_for": {"kind": cls.kind.value, "rule": cls.detail, "signals": list(cls.signals)},
                "new_text": new_text(mail)[:2000],
                "token": (
                    {"header": token.header, "trusted_header": token.trusted_header}
                    if token.token
                    else {"problem": token.problem}
                    if token.problem
                    else None
                ),
            }
        )
    last_outbox = store.count("SELECT COALESCE(MAX(id), 0) FROM outbox")
    last_audit = store.count("SELECT COALESCE(MAX(id), 0) FROM audit")
    last_request = bot.ledger.newest_request_id()
    filed = process(bot, Origin(EXPLAIN_FOLDER, 0, 0), raw, headers_only=len(raw) > config.imap.max_message_size)
    row = store.one(
        "SELECT id, kind, detail, outcome, reason, request_id FROM messages WHERE folder = ?", (EXPLAIN_FOLDER,)
    )
    result["outcome"] = {
        "filed_in": config.imap.failed_folder if filed == "failed" else config.imap.processed_folder,
        "detail": row["detail"] if row else None,
        "reason": row["reason"] if row else None,
        "request_id": row["request_id"] if row else None,
    }
    opened = bot.ledger.first_request_after(last_request)
    if opened is not None and lookup:
        resolution = bot.iana.resolve(parse_tld(opened.cctld), fresh=True)
        with store.transaction():
            workflow.first_lookup(bot, bot.ledger.request(opened.id), resolution)
        result["iana"] = {
            "source": resolution.source,
            "problem": (f"{resolution.problem.kind}: {resolution.problem.detail}" if resolution.problem else None),
        }
    if opened is not None:
        current = bot.ledger.request(opened.id)
        result["request"] = {
            "id": current.id,
            "cctld": current.cctld,
            "state": str(current.state),
            "asked": [{"email": a.email, "roles": a.roles} for a in bot.ledger.approvers(current.id)],
        }
    result["audit"] = [
        {"action": a["action"], **json.loads(a["details"])}
        for a in store.all("SELECT action, details FROM audit WHERE id > ? ORDER BY id", (last_audit,))
        if a["action"] not in ("mail-queued", "message-processed")
    ]
    result["mail"] = [
        _mail_summary(r)
        for r in store.all("SELECT purpose, recipients, payload FROM outbox WHERE id > ? ORDER BY id", (last_outbox,))
    ]
    store.close()
    return result


def _mail_summary(row: sqlite3.Row) -> dict[str, Any]:
    msg = email.message_from_bytes(bytes(row["payload"]), policy=email.policy.default)
    return {
        "to": json.loads(row["recipients"]),
        "purpose": row["purpose"],
        "subject": " ".join(str(msg["Subject"] or "").split()),
    }


def format_explanation(result: dict[str, Any], out: TextIO) -> None:
    """The dry run for a person: what the mail is taken for, what was read, what would happen."""

    def line(label: str, value: object) -> None:
        print(f"{label + ':':<13}{value}", file=out)

    line("store", result["store"])
    if "unreadable" in result:
        line("unreadable", result["unreadable"])
    else:
        taken = result["taken_for"]
        line("from", result["from"])
        line("subject", result["subject"])
        line(
            "taken for",
            f"{taken['kind']} ({taken['rule']})"
            + (f"; signals: {', '.join(taken['signals'])}" if taken["signals"] else ""),
        )
        if result.get("token"):
            token = result["token"]
            line(
                "token",
                f"read from {token['header']}" + (" (our server's header)" if token.get("trusted_header") else "")
                if "header" in token
                else f"not taken: {token['problem']}",
            )
        text = result["new_text"].splitlines() or ["(nothing)"]
        line("new text", "| " + text[0])
        for more in text[1:12]:
            print(f"{'':<13}| {more}", file=out)
    outcome = result["outcome"]
    line(
        "outcome",
        f"{outcome['detail'] or 'quarantined'}; filed in {outcome['filed_in']}"
        + (f" ({outcome['reason']})" if outcome["reason"] else ""),
    )
    if "iana" in result:
        iana = result["iana"]
        line("IANA", f"{iana['source'] or '?'}" + (f": {iana['problem']}" if iana["problem"] else ": answered"))
    if "request" in result:
        request = result["request"]
        asked = ", ".join(f"{a['email']} ({a['roles']})" for a in request["asked"]) or "nobody yet"
        line("request", f"#{request['id']} for .{request['cctld']} would be {request['state']}; asked: {asked}")
    for entry in result["audit"]:
        details = {k: v for k, v in entry.items() if k != "action" and v not in (None, "", [], {})}
        line("check", f"{entry['action']}: " + "; ".join(f"{k}={_short(v)}" for k, v in details.items()))
    if not result["mail"]:
        line("mail", "none would be sent")
    for mail in result["mail"]:
        line("mail", f"to {', '.join(mail['to'])}: {mail['subject']}")


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 160 else text[:159] + "…"


def explain_command(
    config: Config, rules: Rules, file: Path, *, as_json: bool, lookup: bool, out: TextIO, err: TextIO
) -> int:
    try:
        raw = file.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {file}: {exc.strerror or exc}", file=err)
        return 1
    result = explain(config, rules, raw, lookup=lookup)
    if as_json:
        json.dump(result, out, ensure_ascii=False, indent=2, default=str)
        print(file=out)
    else:
        format_explanation(result, out)
    return 0
