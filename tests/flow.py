"""Helpers for the end-to-end tests: open a request, read what went out, check what must not happen.

Everything here reads what a user would see (the mails the SMTP sink captured, to whom, with what text)
or what the Secretariat would see (`secirbot show`, i.e. `reports.show_request`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from secirbot.reports import show_request
from secirbot.sandbox.smtp_sink import Captured
from tests.harness import BOT, World

COMMAND_ADDRESS = "secir-request@lists.example.org"
REQUESTER = "jan@registry.example"
NL_ADMIN = "admin@sidn.nl"
NL_TECH = "tech@sidn.nl"
ADMIN_FROM = f"Roelof Meijer <{NL_ADMIN}>"
TECH_FROM = f"Marc Groeneweg <{NL_TECH}>"


def body(captured: Captured) -> str:
    return str(captured.message.get_content())


def flat(captured: Captured) -> str:
    """The body with every run of whitespace as one space (templates wrap lines where they like)."""
    return " ".join(body(captured).split())


def subject(captured: Captured) -> str:
    return " ".join(str(captured.message["Subject"] or "").split())


def by_rcpt(sent: list[Captured]) -> dict[str, list[Captured]]:
    """recipient (lower-case) -> the mails it got; every mail the bot sends has exactly one recipient."""
    out: dict[str, list[Captured]] = defaultdict(list)
    for captured in sent:
        assert len(captured.rcpt_tos) == 1, (captured.rcpt_tos, subject(captured))
        assert captured.mail_from == BOT
        out[captured.rcpt_tos[0].lower()].append(captured)
    return dict(out)


def one(sent: list[Captured], address: str) -> Captured:
    """The one mail `address` got (fails if it got none or several)."""
    got = by_rcpt(sent).get(address.lower(), [])
    assert len(got) == 1, (address, [subject(m) for m in got])
    return got[0]


def summary(sent: list[Captured]) -> list[tuple[str, str]]:
    """(recipient, subject) of every mail, sorted: what a test compares as "exactly these mails"."""
    return sorted((c.rcpt_tos[0].lower(), subject(c)) for c in sent)


def request(world: World, request_id: int = 1) -> dict[str, Any]:
    data = show_request(world.bot().store, request_id)
    assert data is not None, f"no request {request_id}"
    return data


def audit_actions(world: World, request_id: int = 1) -> list[str]:
    return [t["action"] for t in request(world, request_id)["timeline"]]


@dataclass
class Opened:
    """A request that has been sent and processed: what went out for it."""

    sent: list[Captured]
    approvals: dict[str, Captured]  # approver address (lower-case) -> its approval request

    def token_address(self, approver: str) -> str:
        return str(self.approvals[approver.lower()].message["Reply-To"])


def open_request(
    world: World,
    sender: str = f"Jan Jansen <{REQUESTER}>",
    subject_line: str = "subscribe .nl",
    text: str = "Name: Jan Jansen\nRole: CSIRT lead\nI handle incidents for the registry.\n",
) -> Opened:
    world.request(sender=sender, subject=subject_line, body=text)
    report = world.run_once()
    assert (report.processed, report.failed) == (1, 0)
    sent = world.sent()
    return Opened(sent, world.approval_requests(sent))


def assert_undecided(world: World, sent: list[Captured], request_id: int = 1) -> None:
    """The request is still open, nobody is recorded as having decided, no Mailman command went out, and
    nobody was told of a decision."""
    data = request(world, request_id)
    assert data["state"] == "pending"
    assert (data["decision"], data["decided_by"], data["decided_at"], data["mailman_status"]) == (
        None,
        None,
        None,
        None,
    )
    assert all(a["state"] != "used" for a in data["approvers"])
    assert "request-decided" not in [t["action"] for t in data["timeline"]]
    assert COMMAND_ADDRESS not in by_rcpt(sent)
    outbox = world.bot().store.all(
        "SELECT purpose FROM outbox WHERE request_id = ? AND purpose IN"
        " ('mailman-command', 'mailman-subscribe', 'decision-requester',"
        " 'decision-secretariat', 'decision-approvers')",
        (request_id,),
    )
    assert [r["purpose"] for r in outbox] == []
    assert not [
        c for c in sent if subject(c).startswith(("Approved:", "Not approved:", "Decided:", "APPROVE:", "DENY:"))
    ]
