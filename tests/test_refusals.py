"""Requests the rules turn away, and requests that must wait: what the requester is told, that nobody else is
mailed, that each refusal is said once a day, and that a request waiting for IANA is never lost.

End to end on the real Dovecot, the SMTP sink and the local IANA stand-ins (tests/harness.py).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from secirbot.reports import list_requests
from secirbot.sandbox.ports import free_port
from tests.clients import client_reply
from tests.flow import (
    ADMIN_FROM,
    COMMAND_ADDRESS,
    NL_ADMIN,
    NL_TECH,
    REQUESTER,
    audit_actions,
    body,
    by_rcpt,
    flat,
    one,
    open_request,
    request,
    summary,
)
from tests.harness import SECRETARIAT, START, World

HELLO = "Name: Jan Jansen\nI handle incidents for the registry.\n"


def refused_subject(cctld: str) -> str:
    return f"Your request to join the ccTLD security list for {cctld}"


def ask(world: World, sender: str = f"Jan Jansen <{REQUESTER}>", subject_line: str = "subscribe .nl") -> list:
    """Send one request, run the bot, return what went out."""
    world.request(sender=sender, subject=subject_line, body=HELLO)
    report = world.run_once()
    assert (report.processed, report.failed) == (1, 0)
    return world.sent()


def requests_in_store(world: World) -> list[tuple[int, str, str, str]]:
    return [(r["id"], r["state"], r["cctld"], r["requester"]) for r in list_requests(world.bot().store)]


def test_pilot_refusal_says_why_once_a_day_and_asks_nobody(world: World) -> None:
    sent = ask(world, subject_line="subscribe .dk")
    assert summary(sent) == [(REQUESTER, refused_subject(".dk"))]
    said = flat(sent[0])
    assert (
        "The list is running as a pilot, open only to the ccTLDs invited to it for now, and .dk is not among them yet."
    ) in said
    assert sent[0].message["In-Reply-To"] is not None  # an answer to their mail
    assert requests_in_store(world) == []
    assert world.whois.counts["dk"] == 0 and world.rdap.counts["dk"] == 0  # no IANA query for a refusal
    # The same request again the same day: refused again, but not answered again.
    world.clock.advance(hours=20)
    assert ask(world, subject_line="subscribe .dk") == []
    assert requests_in_store(world) == []
    # The next day it is answered again.
    world.clock.advance(hours=5)
    assert summary(ask(world, subject_line="subscribe .dk")) == [(REQUESTER, refused_subject(".dk"))]
    refused = world.bot().store.all("SELECT details FROM audit WHERE action = 'request-refused'")
    assert len(refused) == 3


def test_seat_cap_counts_members_and_open_requests(world: World) -> None:
    world.rules["requests"] = {**world.rules["requests"], "seats_per_cctld": 2}
    first = open_request(world, sender="Alice <alice@registry.example>")
    open_request(world, sender="Bob <bob@registry.example>")
    sent = ask(world, sender="Carol <carol@registry.example>")
    assert summary(sent) == [("carol@registry.example", refused_subject(".nl"))]
    assert "Each ccTLD may have at most 2 members (counting open requests), and .nl has reached that number." in flat(
        sent[0]
    )
    assert [r[3] for r in requests_in_store(world)] == ["alice@registry.example", "bob@registry.example"]
    # Alice is denied: her seat is free again, and Carol's next request is opened and sent to the approvers.
    world.deliver(client_reply("gmail", first.approvals[NL_ADMIN].message, ADMIN_FROM, "DENY"))
    world.run_once()
    world.sent()
    opened = open_request(world, sender="Carol <carol@registry.example>")
    assert sorted(opened.approvals) == [NL_ADMIN, NL_TECH]
    assert requests_in_store(world)[-1] == (3, "pending", "nl", "carol@registry.example")


def test_rate_limit_per_cctld(world: World) -> None:
    world.rules["requests"] = {**world.rules["requests"], "seats_per_cctld": 10, "max_per_cctld_per_hour": 2}
    open_request(world, sender="a@registry.example")
    world.clock.advance(minutes=20)
    open_request(world, sender="b@registry.example")
    world.clock.advance(minutes=20)
    sent = ask(world, sender="c@registry.example")
    assert summary(sent) == [("c@registry.example", refused_subject(".nl"))]
    assert "we accept only a few requests an hour, and we have reached that limit." in flat(sent[0])
    assert "Please send your request again in an hour." in flat(sent[0])
    # Another ccTLD is not limited by .nl's count.
    assert sorted(open_request(world, sender="d@registry.example", subject_line="subscribe .mx").approvals) == [
        "adm-iana@nic.mx",
        "tech-iana@nic.mx",
    ]
    # An hour after the first .nl request, c may ask again.
    world.clock.advance(minutes=21)
    assert sorted(open_request(world, sender="c@registry.example").approvals) == [NL_ADMIN, NL_TECH]
    assert [r[3] for r in requests_in_store(world)] == [
        "a@registry.example",
        "b@registry.example",
        "d@registry.example",
        "c@registry.example",
    ]


def test_rate_limit_over_all_cctlds(world: World) -> None:
    world.rules["requests"] = {**world.rules["requests"], "max_per_hour": 2}
    open_request(world, sender="a@registry.example")
    open_request(world, sender="b@registry.example", subject_line="subscribe .mx")
    sent = ask(world, sender="c@registry.example", subject_line="subscribe .jo")
    assert summary(sent) == [("c@registry.example", refused_subject(".jo"))]
    assert "Please send your request again in an hour." in flat(sent[0])
    assert world.whois.counts["jo"] == 0
    assert len(requests_in_store(world)) == 2


def test_already_a_member(world: World) -> None:
    opened = open_request(world)
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"))
    world.run_once()
    assert COMMAND_ADDRESS in by_rcpt(world.sent())
    # The same person, their address in other case, asks again (for another ccTLD even).
    sent = ask(world, sender="Jan <Jan@Registry.Example>", subject_line="subscribe .mx")
    assert summary(sent) == [("jan@registry.example", refused_subject(".mx"))]
    assert "Our records show that this address is already a member of the list, so nothing needs to be done." in flat(
        sent[0]
    )
    assert COMMAND_ADDRESS not in by_rcpt(sent)
    assert requests_in_store(world) == [(1, "approved", "nl", REQUESTER)]


def test_one_open_request_per_person(world: World) -> None:
    open_request(world)
    sent = ask(world, subject_line="subscribe .mx")
    assert summary(sent) == [(REQUESTER, refused_subject(".mx"))]
    assert "You already have an open request (#1); we are waiting for the ccTLD's contacts" in flat(sent[0])
    assert world.whois.counts["mx"] == 0
    assert ask(world) == []  # said once a day
    assert requests_in_store(world) == [(1, "pending", "nl", REQUESTER)]


@pytest.mark.parametrize(
    "subject_line, says",
    [
        ("subscribe .zz", "We could not find the ccTLD you work for in your message."),
        ("subscribe .com", "Your message names .com, which is not a delegated country-code top-level domain (ccTLD)."),
        ("subscribe .nl and .mx", "Your message names more than one ccTLD (mx, nl). A request is for one ccTLD only"),
        ("Please subscribe me", "We could not find the ccTLD you work for in your message."),
    ],
)
def test_unknown_cctld_is_explained_once(world: World, subject_line: str, says: str) -> None:
    sent = ask(world, subject_line=subject_line)
    assert summary(sent) == [(REQUESTER, "Your request to join the ccTLD security list: which ccTLD?")]
    assert says in flat(sent[0])
    assert "subscribe .nl" in body(sent[0])  # how to write it
    assert requests_in_store(world) == []
    assert sum(world.whois.counts.values()) == 0 and sum(world.rdap.counts.values()) == 0
    assert ask(world, subject_line=subject_line) == []


def test_cctld_iana_has_no_record_of_waits_and_nobody_is_asked(world: World) -> None:
    # bh: IANA's whois answers "0 objects" and RDAP 404: no record is not "nobody needs to approve".
    world.rules["pilot"]["cctlds"].append("bh")
    sent = ask(world, subject_line="subscribe .bh")
    assert sorted(r for r, _ in summary(sent)) == [REQUESTER, SECRETARIAT]
    assert not [c for c in sent if c.message["Reply-To"] and c.rcpt_tos != [REQUESTER]]  # no approver asked
    assert "not-found: whois.iana.org has no object for BH" in flat(one(sent, SECRETARIAT))
    assert "We could not look up the contacts of .bh in IANA's Root Zone Database" in flat(one(sent, REQUESTER))
    assert requests_in_store(world) == [(1, "resolving", "bh", REQUESTER)]
    assert request(world)["approvers"] == []


def unreachable(world: World, how: str) -> None:
    if how == "connection-refused":
        world.settings.update(
            {"iana.whois": f"127.0.0.1:{free_port()}", "iana.rdap": f"http://127.0.0.1:{free_port()}"}
        )
    else:  # whois closes at once, RDAP answers 500
        world.whois.modes["nl"] = "empty"
        world.rdap.modes["nl"] = "500"
    world.restart()


def reachable(world: World) -> None:
    world.settings.pop("iana.whois", None)
    world.settings.pop("iana.rdap", None)
    world.whois.modes.clear()
    world.rdap.modes.clear()
    world.restart()


@pytest.mark.parametrize("how", ["connection-refused", "server-errors"])
def test_iana_unreachable_request_waits_is_retried_and_nothing_is_lost(world: World, how: str) -> None:
    unreachable(world, how)
    sent = ask(world)
    assert summary(sent) == sorted(
        [
            (REQUESTER, "Your request to join the ccTLD security list for .nl [#1]"),
            (SECRETARIAT, "New request #1: jan@registry.example for .nl"),
        ]
    )
    told = flat(one(sent, REQUESTER))
    assert (
        "We could not look up the contacts of .nl in IANA's Root Zone Database just now. Your request is"
        " kept, and we will try again automatically; you do not need to write again."
    ) in told
    copy = flat(one(sent, SECRETARIAT))
    assert "Request: #1 (resolving)" in copy and "Approval requests went to" not in copy
    data = request(world)
    assert (data["state"], data["approvers"], data["next_lookup_at"]) == ("resolving", [], "2026-11-26T10:00:00Z")

    # Writing again does not lose or duplicate it.
    world.clock.advance(minutes=30)
    assert summary(ask(world)) == [(REQUESTER, refused_subject(".nl"))]
    assert len(requests_in_store(world)) == 1

    # Retried every hour while IANA stays away; the Secretariat is told once it has waited a day.
    for hours in (1, 12, 24, 25):
        world.clock.moment = START + timedelta(hours=hours, minutes=1)
        world.run_once()
        sent = world.sent()
        if hours < 24:
            assert sent == []
        elif hours == 24:
            assert summary(sent) == [(SECRETARIAT, "IANA lookup failing for .nl: request #1 is waiting")]
            assert "No approver has been asked yet, and none will be until IANA gives a usable record" in flat(sent[0])
        else:
            assert sent == []  # told once
    assert audit_actions(world).count("lookup-failed") == 5
    assert request(world)["state"] == "resolving"

    # IANA is back: the next retry asks the approvers, and the request goes on as if nothing happened.
    reachable(world)
    world.clock.advance(hours=1)
    world.run_once()
    sent = world.sent()
    approvals = world.approval_requests(sent)
    assert sorted(approvals) == [NL_ADMIN, NL_TECH]
    assert "Approval requests went to these IANA-listed contacts" in flat(one(sent, SECRETARIAT))
    assert request(world)["state"] == "pending"
    world.deliver(client_reply("outlook", approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"))
    world.run_once()
    assert body(one(world.sent(), COMMAND_ADDRESS)).splitlines()[0] == "join address=jan@registry.example digest=no"
