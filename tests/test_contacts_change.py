"""IANA changes a ccTLD's contacts: a real change taken from the whois history of .jo (tests/data/history).

Between the archived answers of 2023-08-07 and 2024-11-22 both approver addresses of .jo changed. The local
whois server first serves the older answer, then the newer one; the daily re-check of IANA contacts must
re-send open requests to the new contacts (the old contacts' reply addresses stop deciding) and tell the
Secretariat which members were approved by contacts IANA no longer lists.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.flow import COMMAND_ADDRESS, body, by_rcpt, flat, one, open_request, request, subject, summary
from tests.harness import SECRETARIAT, World, reply_to

HISTORY = Path(__file__).resolve().parent / "data" / "history"
BEFORE = (HISTORY / "whois-jo-2023-08-07_b8ee37e674.txt").read_bytes()
AFTER = (HISTORY / "whois-jo-2024-11-22_b2cabcb1f1.txt").read_bytes()

OLD_ADMIN, OLD_TECH = "nabil.abusall@modee.gov.jo", "dns@modee.gov.jo"
NEW_ADMIN, NEW_TECH = "AdminCCtld@modee.gov.jo", "TechCCtld@modee.gov.jo"  # as IANA writes them
REQUESTER = "ahmad@registry.example"
APPROVAL = f"Approval needed: {REQUESTER} asks to join the ccTLD security list for .jo [#1]"
CHANGED = "IANA contacts of .jo changed"


@pytest.fixture
def jo(world: World) -> Iterator[World]:
    """The world with IANA's whois answering the 2023 record of .jo (put back afterwards: the server is
    shared by the whole session)."""
    original = world.whois.answers["jo"]
    world.rules["digest"] = {"enabled": False}
    world.whois.answers["jo"] = BEFORE
    try:
        yield world
    finally:
        world.whois.answers["jo"] = original


def iana_changes(world: World) -> None:
    world.whois.answers["jo"] = AFTER


def run_at(world: World, **delta: float) -> list:
    world.clock.advance(**delta)
    world.restart()
    world.run_once()
    return world.sent()


def ask_jo(world: World, sender: str = f"Ahmad Saleh <{REQUESTER}>") -> dict:
    opened = open_request(
        world,
        sender=sender,
        subject_line="subscribe .jo",
        text="Name: Ahmad Saleh\nRole: CERT\nI handle abuse and incidents for .jo.\n",
    )
    return opened.approvals


def test_the_history_files_really_differ_in_both_approver_addresses() -> None:
    assert f"e-mail:       {OLD_ADMIN}".encode() in BEFORE and f"e-mail:       {OLD_TECH}".encode() in BEFORE
    assert f"e-mail:       {NEW_ADMIN}".encode() in AFTER and f"e-mail:       {NEW_TECH}".encode() in AFTER
    assert OLD_ADMIN.encode() not in AFTER and OLD_TECH.encode() not in AFTER


def test_an_open_request_is_sent_again_to_the_new_contacts_and_the_old_ones_no_longer_decide(jo: World) -> None:
    world = jo
    old = ask_jo(world)
    assert sorted(old) == [OLD_TECH, OLD_ADMIN]
    iana_changes(world)

    assert run_at(world, hours=23) == []  # the re-check is daily
    sent = run_at(world, hours=1, minutes=1)
    assert summary(sent) == sorted(
        [(NEW_ADMIN.lower(), APPROVAL), (NEW_TECH.lower(), APPROVAL), (SECRETARIAT, CHANGED)]
    )
    new = world.approval_requests(sent)
    assert "lists AdminCCtld@modee.gov.jo as the administrative contact of .jo" in flat(new[NEW_ADMIN.lower()])
    report = flat(one(sent, SECRETARIAT))
    assert f"- {NEW_ADMIN} (administrative)" in report and f"- {NEW_TECH} (technical)" in report
    assert f"#1 {REQUESTER}: no longer asked: {OLD_ADMIN}, {OLD_TECH}; now asked: {NEW_ADMIN}, {NEW_TECH}" in report
    assert {a["email"]: a["state"] for a in request(world)["approvers"]} == {
        OLD_ADMIN: "closed",
        OLD_TECH: "closed",
        NEW_ADMIN: "asked",
        NEW_TECH: "asked",
    }
    assert run_at(world, days=1) == []  # nothing changed since: no news

    # The old administrative contact answers its (still perfectly formed) approval request: it does not count.
    world.deliver(reply_to(old[OLD_ADMIN], f"Eng. Nabil Abu-Sall <{OLD_ADMIN}>", "APPROVE"))
    sent = run_at(world, minutes=5)
    assert summary(sent) == [(OLD_ADMIN, "Your answer could not be accepted")]
    assert request(world)["state"] == "pending" and COMMAND_ADDRESS not in by_rcpt(sent)

    # The reminders go to the new contacts only, counted from when they were asked.
    sent = run_at(world, days=2)  # 4 days + 6 minutes after the request
    assert sorted(by_rcpt(sent)) == [NEW_ADMIN.lower(), NEW_TECH.lower()]
    assert all(subject(m).startswith("Reminder: ") for m in sent)

    # The new administrative contact decides.
    world.deliver(reply_to(new[NEW_ADMIN.lower()], f"Jordan Domains Registry Admin <{NEW_ADMIN}>", "APPROVE"))
    sent = run_at(world, minutes=5)
    assert COMMAND_ADDRESS in by_rcpt(sent)
    data = request(world)
    assert (data["state"], data["decided_by"]) == ("approved", NEW_ADMIN)
    assert (
        data["snapshot"] is not None
        and "2024-03-04"
        in world.bot().store.one("SELECT raw FROM iana_snapshots WHERE id = ?", (data["snapshot_id"],))["raw"]
    )


def test_the_secretariat_learns_which_members_were_approved_by_contacts_no_longer_listed(jo: World) -> None:
    world = jo
    old = ask_jo(world)
    world.deliver(reply_to(old[OLD_ADMIN], f"Eng. Nabil Abu-Sall <{OLD_ADMIN}>", "APPROVE"))
    world.run_once()
    assert request(world)["state"] == "approved"
    # Two more requests: a .nl member (whose contacts stay the same) and a denied .fi request.
    world.request(sender="Jan Jansen <jan@registry.example>", subject="subscribe .nl")
    world.request(sender="Mikko <mikko@registry.example>", subject="subscribe .fi")
    world.run_once()
    approvals = world.approval_requests(world.sent())
    world.deliver(reply_to(approvals["admin@sidn.nl"], "Roelof Meijer <admin@sidn.nl>", "APPROVE"))
    fi_admin = next(a for a in approvals if a.endswith(".fi"))
    world.deliver(reply_to(approvals[fi_admin], f"FI <{fi_admin}>", "DENY\nNot one of ours."))
    world.run_once()
    assert [request(world, i)["state"] for i in (1, 2, 3)] == ["approved", "approved", "denied"]
    world.sent()
    iana_changes(world)
    world.whois.reset()  # count the re-check's queries only
    world.whois.answers["jo"] = AFTER

    sent = run_at(world, days=1, minutes=1)
    assert summary(sent) == [(SECRETARIAT, CHANGED)]
    text = body(one(sent, SECRETARIAT))
    assert "These members were approved by contacts that IANA no longer lists for .jo" in text
    assert f"  - {REQUESTER} (request #1), approved by {OLD_ADMIN} on" in text
    assert "jan@registry.example" not in text  # .nl's contacts did not change
    # Only ccTLDs with members or open requests are asked again; a denied .fi request is not a member.
    assert (world.whois.counts["jo"], world.whois.counts["nl"], world.whois.counts["fi"]) == (1, 1, 0)

    assert run_at(world, days=1) == []  # told once, not every day
    member = request(world, 1)
    assert (member["state"], member["decided_by"]) == ("approved", OLD_ADMIN)  # the record of who vouched stays


def test_iana_unreachable_at_the_recheck_is_not_taken_for_contacts_removed(jo: World) -> None:
    world = jo
    old = ask_jo(world)
    world.whois.modes["jo"] = "empty"  # whois closes at once ...
    world.rdap.modes["jo"] = "500"  # ... and RDAP fails
    assert run_at(world, days=1, minutes=1) == []  # no news is not "nobody is listed"
    assert world.whois.counts["jo"] >= 2  # (it did ask)
    assert {a["state"] for a in request(world)["approvers"]} == {"asked"}
    world.whois.modes.clear()
    world.rdap.modes.clear()
    world.deliver(reply_to(old[OLD_ADMIN], f"Eng. Nabil Abu-Sall <{OLD_ADMIN}>", "APPROVE"))
    sent = run_at(world, minutes=5)
    assert COMMAND_ADDRESS in by_rcpt(sent) and request(world)["decided_by"] == OLD_ADMIN


def test_a_request_escalated_to_the_technical_contact_goes_to_the_new_technical_contact(jo: World) -> None:
    world = jo
    world.rules["approvers"] = {"roles": ["administrative", "technical"], "ask_first": ["administrative"]}
    world.rules["reminders"] = {"max": 0}
    assert sorted(ask_jo(world)) == [OLD_ADMIN]
    sent = run_at(world, days=7, minutes=1)  # a week of silence: technical asked
    assert sorted(world.approval_requests(sent)) == [OLD_TECH]
    iana_changes(world)
    sent = run_at(world, days=1)  # the next daily re-check
    assert subject(one(sent, SECRETARIAT)) == CHANGED
    # Both roles had the request before IANA changed them; both new contacts must have it now (else the
    # new technical contact is asked only at the next escalation, i.e. at expiry: never).
    assert sorted(world.approval_requests(sent)) == [NEW_ADMIN.lower(), NEW_TECH.lower()]
