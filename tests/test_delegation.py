"""Delegated answers (secirbot/delegation.py), end to end on the real Dovecot, SMTP sink and IANA stand-ins:
a person behind the role contact admin@sidn.nl answers with its token from their own sidn.nl address.

The honest path (provisional APPROVE, then the window ends), an OBJECT, a contact's own answer in the
window, a delegated DENY; and each failing condition alone: no Cc, another organisation, unauthenticated,
a forged Authentication-Results, the requester as delegate, delegates switched off."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import dkim
import pytest

from secirbot.authenticity import SenderCheck
from secirbot.delegation import Qualification, conditions
from tests.clients import client_reply
from tests.flow import (
    ADMIN_FROM,
    COMMAND_ADDRESS,
    NL_ADMIN,
    NL_TECH,
    REQUESTER,
    assert_undecided,
    by_rcpt,
    flat,
    open_request,
    request,
    subject,
)
from tests.harness import SECRETARIAT, World, reply_to
from tests.test_forgery import OUR_ID, REJECTED, SELECTOR, dkim_key, serve_key, with_headers

__all__ = ["dkim_key"]  # the module-scoped key fixture, shared with test_forgery

MARC = "marc.person@sidn.nl"
MARC_FROM = f"Marc Person <{MARC}>"
NOTICE = f"Answered for {NL_ADMIN}: APPROVE {REQUESTER} for .nl [#1]"


def delegate_reply(
    approval: EmailMessage,
    private: bytes,
    *,
    sender: str = MARC_FROM,
    text: str = "APPROVE",
    cc: str | None = NL_ADMIN,
    domain: bytes = b"sidn.nl",
    signed: bool = True,
) -> bytes:
    """A reply to admin@sidn.nl's approval mail from someone else, with admin@ in Cc, DKIM-signed by `domain`."""
    msg = email.message_from_bytes(client_reply("gmail", approval, sender, text), policy=email.policy.default)
    if cc:
        msg["Cc"] = cc
    raw = msg.as_bytes(policy=email.policy.SMTP)
    if not signed:
        return raw
    headers = [b"from", b"to", b"cc", b"subject", b"date"] if cc else [b"from", b"to", b"subject", b"date"]
    return dkim.sign(raw, SELECTOR, domain, private, include_headers=headers) + raw


@pytest.fixture
def signed_world(world: World, dkim_key: tuple[bytes, bytes]) -> World:
    world.rules["approvers"] = {**world.rules["approvers"], "delegates": {"allow": True, "objection_window": "48h"}}
    world.bot().dnsfunc = serve_key(dkim_key[1])
    return world


def deliver_and_run(world: World, raw: bytes) -> list:
    world.deliver(raw)
    world.run_once()
    return world.sent()


def notices(sent: list) -> dict[str, list[str]]:
    return {rcpt: [subject(m) for m in mails] for rcpt, mails in by_rcpt(sent).items()}


# --- the honest path ------------------------------------------------------------------------------------


def test_delegated_approve_waits_for_the_window_then_decides(
    signed_world: World, dkim_key: tuple[bytes, bytes]
) -> None:
    world = signed_world
    opened = open_request(world)
    sent = deliver_and_run(world, delegate_reply(opened.approvals[NL_ADMIN].message, dkim_key[0]))
    assert_undecided(world, sent)
    assert notices(sent) == {NL_ADMIN: [NOTICE], NL_TECH: [NOTICE], MARC: [NOTICE], SECRETARIAT: [NOTICE]}
    to_tech = by_rcpt(sent)[NL_TECH][0]
    assert f"{MARC} answered APPROVE for request #1 on behalf of {NL_ADMIN}" in flat(to_tech)
    assert "unless someone answers OBJECT before then" in flat(to_tech)
    assert to_tech.message["Reply-To"] and "+" in str(to_tech.message["Reply-To"])  # a token to OBJECT with
    assert by_rcpt(sent)[SECRETARIAT][0].message["Reply-To"] is None
    timeline = request(world)["timeline"]
    [answer] = [t for t in timeline if t["action"] == "delegated-answer"]
    assert (answer["details"]["delegated_by"], answer["details"]["delegated_for"]) == (MARC, NL_ADMIN)
    assert "pass" in answer["details"]["checks"]["dkim"]

    world.clock.advance(hours=47)
    world.run_once()
    assert request(world)["state"] == "pending" and world.sent() == []
    world.clock.advance(hours=2)
    world.run_once()
    sent = world.sent()
    data = request(world)
    assert (data["state"], data["decided_by"], data["decided_via"]) == ("approved", MARC, f"delegated for {NL_ADMIN}")
    assert COMMAND_ADDRESS in by_rcpt(sent)  # the Mailman subscription went out
    assert any(subject(m).startswith("Approved:") for m in by_rcpt(sent)[REQUESTER])
    # "Your answer is recorded" goes to the person who answered; the contact hears of it like the others.
    assert [subject(m) for m in by_rcpt(sent)[MARC]] == [f"Recorded: your APPROVE for {REQUESTER} (.nl) [#1]"]
    assert [subject(m) for m in by_rcpt(sent)[NL_ADMIN]] == [f"Decided: {REQUESTER} for .nl [#1]"]
    assert [subject(m) for m in by_rcpt(sent)[NL_TECH]] == [f"Decided: {REQUESTER} for .nl [#1]"]


def test_an_objection_in_the_window_cancels_it_and_only_a_direct_answer_decides(
    signed_world: World, dkim_key: tuple[bytes, bytes]
) -> None:
    world = signed_world
    opened = open_request(world)
    sent = deliver_and_run(world, delegate_reply(opened.approvals[NL_ADMIN].message, dkim_key[0]))
    to_tech = by_rcpt(sent)[NL_TECH][0]
    sent = deliver_and_run(world, reply_to(to_tech, "Marc Groeneweg <tech@sidn.nl>", "OBJECT"))
    objection = f"Objection: the answer for {NL_ADMIN} does not count [#1]"
    assert notices(sent) == {NL_ADMIN: [objection], NL_TECH: [objection], MARC: [objection], SECRETARIAT: [objection]}
    assert f"{NL_TECH} answered OBJECT to the APPROVE that {MARC} gave" in flat(by_rcpt(sent)[SECRETARIAT][0])
    world.clock.advance(hours=49)
    world.run_once()
    assert_undecided(world, world.sent())
    # Marc tries again: refused now, with the reason.
    sent = deliver_and_run(world, delegate_reply(opened.approvals[NL_ADMIN].message, dkim_key[0]))
    assert_undecided(world, sent)
    assert "only an IANA contact's own answer, or the Secretariat, decides it now" in flat(by_rcpt(sent)[MARC][0])
    # The contact's own answer decides.
    deliver_and_run(world, reply_to(opened.approvals[NL_ADMIN], ADMIN_FROM, "APPROVE"))
    assert (request(world)["state"], request(world)["decided_by"]) == ("approved", NL_ADMIN)


def test_a_contacts_own_answer_in_the_window_decides_at_once(
    signed_world: World, dkim_key: tuple[bytes, bytes]
) -> None:
    world = signed_world
    opened = open_request(world)
    sent = deliver_and_run(world, delegate_reply(opened.approvals[NL_ADMIN].message, dkim_key[0]))
    sent = deliver_and_run(world, reply_to(by_rcpt(sent)[NL_ADMIN][0], ADMIN_FROM, "DENY\nnot one of ours"))
    assert (request(world)["state"], request(world)["decided_by"]) == ("denied", NL_ADMIN)
    world.clock.advance(hours=49)
    world.run_once()
    assert world.sent() == [] and request(world)["state"] == "denied"  # the window ended on nothing
    state = world.bot().store.one("SELECT state FROM delegations")["state"]
    assert state == "superseded"


def test_a_delegated_deny_takes_effect_at_once(signed_world: World, dkim_key: tuple[bytes, bytes]) -> None:
    world = signed_world
    opened = open_request(world)
    sent = deliver_and_run(
        world, delegate_reply(opened.approvals[NL_ADMIN].message, dkim_key[0], text="DENY\nhe left us in May")
    )
    data = request(world)
    assert (data["state"], data["decided_by"], data["decided_via"]) == ("denied", MARC, f"delegated for {NL_ADMIN}")
    [told] = by_rcpt(sent)[SECRETARIAT]
    assert subject(told) == f"DENY: {REQUESTER} for .nl [#1]"
    assert f"By: {MARC} (delegated for {NL_ADMIN})" in flat(told) and "Rule: delegated" in flat(told)
    assert COMMAND_ADDRESS not in by_rcpt(sent)


# --- each condition alone ---------------------------------------------------------------------------------


def refused(world: World, raw: bytes, told: str, rule: str) -> str:
    sent = deliver_and_run(world, raw)
    assert_undecided(world, sent)
    rejected = [t for t in request(world)["timeline"] if t["action"] == "reply-rejected"]
    assert [t["details"]["rule"] for t in rejected] == [rule]
    assert not world.bot().store.all("SELECT * FROM delegations")
    return flat(by_rcpt(sent)[told][0])


def test_without_the_contact_in_copy_it_does_not_count(signed_world: World, dkim_key: tuple[bytes, bytes]) -> None:
    opened = open_request(signed_world)
    raw = delegate_reply(opened.approvals[NL_ADMIN].message, dkim_key[0], cc=None)
    text = refused(signed_world, raw, MARC, "delegate-not-in-copy")
    assert f"{NL_ADMIN} must be in To or Cc" in text and f"with {NL_ADMIN} in Cc" in text


def test_another_organisation_is_no_delegate(signed_world: World, dkim_key: tuple[bytes, bytes]) -> None:
    world = signed_world
    world.bot().dnsfunc = serve_key(dkim_key[1], "partner.example")
    opened = open_request(world)
    raw = delegate_reply(
        opened.approvals[NL_ADMIN].message, dkim_key[0], sender="Eve <eve@partner.example>", domain=b"partner.example"
    )
    sent = deliver_and_run(world, raw)
    assert_undecided(world, sent)
    assert sorted(notices(sent)) == sorted(["eve@partner.example", SECRETARIAT])
    assert REJECTED.format(rule="from-mismatch") in notices(sent)[SECRETARIAT]


def test_an_unauthenticated_delegate_does_not_count(signed_world: World, dkim_key: tuple[bytes, bytes]) -> None:
    opened = open_request(signed_world)
    raw = delegate_reply(opened.approvals[NL_ADMIN].message, dkim_key[0], signed=False)
    text = refused(signed_world, raw, MARC, "delegate-unauthenticated")
    assert "could not be authenticated" in text


def test_a_forged_authentication_results_does_not_make_a_delegate(
    signed_world: World, dkim_key: tuple[bytes, bytes]
) -> None:
    opened = open_request(signed_world)
    raw = delegate_reply(opened.approvals[NL_ADMIN].message, dkim_key[0], signed=False)
    forged = with_headers(
        raw, "Authentication-Results: mx.evil.example; dkim=pass header.d=sidn.nl; dmarc=pass header.from=sidn.nl"
    )
    refused(signed_world, forged, MARC, "delegate-unauthenticated")
    # Our own server's id, but below another header: only the top-most copy under our id is read, and a
    # dmarc=pass with the token in an unsigned To still needs DKIM over To.
    forged = with_headers(raw, f"Authentication-Results: {OUR_ID}; dmarc=pass header.from=sidn.nl")
    sent = deliver_and_run(signed_world, forged)
    assert_undecided(signed_world, sent)


def test_the_requester_cannot_be_a_delegate(signed_world: World, dkim_key: tuple[bytes, bytes]) -> None:
    world = signed_world
    opened = open_request(world, sender="Jan <jan@sidn.nl>")
    raw = delegate_reply(opened.approvals[NL_ADMIN].message, dkim_key[0], sender="Jan <jan@sidn.nl>")
    text = refused(world, raw, "jan@sidn.nl", "self-approval")
    assert "nobody can approve their own request" in text


def test_with_delegates_off_a_colleague_is_refused_as_before(world: World, dkim_key: tuple[bytes, bytes]) -> None:
    world.rules["approvers"] = {**world.rules["approvers"], "delegates": {"allow": False}}
    world.bot().dnsfunc = serve_key(dkim_key[1])
    opened = open_request(world)
    raw = delegate_reply(opened.approvals[NL_ADMIN].message, dkim_key[0])
    text = refused(world, raw, MARC, "from-mismatch")
    assert "can only be answered from the address it was sent to" in text


# --- the conditions, pure -----------------------------------------------------------------------------


def qualify(**changes: object) -> Qualification:
    given: dict = {
        "delegate": MARC,
        "contact": NL_ADMIN,
        "contacts": [NL_ADMIN, NL_TECH],
        "requester": REQUESTER,
        "authentication": SenderCheck(ok=True, failure=None),
        "copied": ["join+x@lists.example.org", NL_ADMIN],
        "objected_before": False,
    }
    given.update(changes)
    return conditions(**given)


def test_conditions_pure() -> None:
    assert qualify().ok
    assert qualify(delegate="m@mail.sidn.nl").ok  # a subdomain of the same organisation
    # The organisation of another IANA contact of the ccTLD counts too.
    other = qualify(
        contact="hostmaster@registry.nl",
        contacts=["hostmaster@registry.nl", "ops@sidn.nl"],
        copied=["hostmaster@registry.nl"],
    )
    assert other.ok
    assert qualify(delegate="m@sidn.nl.evil.example").rule == "delegate-org-domain"
    assert qualify(delegate="m@nl").rule == "delegate-org-domain"  # a public suffix is no organisation
    assert qualify(copied=["join+x@lists.example.org"]).rule == "delegate-not-in-copy"
    assert qualify(copied=["ADMIN@SIDN.NL"]).ok  # compared as addresses
    assert qualify(authentication=SenderCheck(ok=False, failure="no sig")).rule == "delegate-unauthenticated"
    assert qualify(delegate="jan@sidn.nl", requester="Jan@SIDN.nl").rule == "self-approval"
    assert qualify(objected_before=True).rule == "delegate-after-objection"


def test_show_says_who_answered_for_whom_and_how_they_were_authenticated(
    signed_world: World, dkim_key: tuple[bytes, bytes]
) -> None:
    from secirbot.reports import render_timeline, show_request

    world = signed_world
    opened = open_request(world)
    deliver_and_run(world, delegate_reply(opened.approvals[NL_ADMIN].message, dkim_key[0]))
    shown = render_timeline(show_request(world.bot().store, 1))
    line = next(ln for ln in shown.splitlines() if "answer on a contact's behalf" in ln)
    assert f"delegated by {MARC} for {NL_ADMIN} (authentication" in line and "dkim: " in line
