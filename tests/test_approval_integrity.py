"""An approval counts for exactly the request it answers, and only while the requester still wants it.

End to end on the real mailbox: a signed approval re-aimed at another request by an added header, a reply
in one request's thread carrying another request's token, the requester's WITHDRAW, and the bot staying
silent (and not crying forgery) where mail is no decision. Each attack leaves the request undecided with no
Mailman command; each genuine path beside it still decides.
"""

from __future__ import annotations

import email
import email.policy
import time
from email.message import EmailMessage

import dkim

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
    one,
    open_request,
    request,
    subject,
    summary,
)
from tests.harness import SECRETARIAT, World
from tests.test_forgery import OUR_ID, REJECTED, SELECTOR, dkim_key, serve_key, with_headers

__all__ = ["dkim_key"]  # the module-scoped key fixture, shared with test_forgery

ANN = "ann@registry.example"


def two_requests(world: World) -> tuple[dict[str, EmailMessage], dict[str, EmailMessage]]:
    """Requests #1 (jan) and #2 (ann), both for .nl: admin@sidn.nl holds an approval mail of each."""
    first = open_request(world)
    second = open_request(world, sender=f"Ann <{ANN}>")
    return ({a: c.message for a, c in first.approvals.items()}, {a: c.message for a, c in second.approvals.items()})


def sign(raw: bytes, private: bytes, headers: tuple[bytes, ...] = (b"from", b"to", b"subject", b"date")) -> bytes:
    return dkim.sign(raw, SELECTOR, b"sidn.nl", private, include_headers=list(headers)) + raw


def assert_request_undecided(world: World, sent: list, request_id: int) -> None:
    data = request(world, request_id)
    assert data["state"] == "pending" and data["decided_by"] is None, (request_id, data["state"])
    commands = [body_of(m) for m in by_rcpt(sent).get(COMMAND_ADDRESS, [])]
    assert not [c for c in commands if f"address={data['requester']} " in c], commands


# --- a signed approval re-aimed by a header the signature does not cover -----------------------------------


def test_a_to_prepended_to_a_signed_approval_does_not_re_aim_it(world: World, dkim_key: tuple[bytes, bytes]) -> None:
    private, record = dkim_key
    world.rules["authentication"] = {"authserv_id": OUR_ID, "require": "dkim"}
    first, second = two_requests(world)
    world.bot().dnsfunc = serve_key(record)
    genuine = sign(client_reply("apple-mail", first[NL_ADMIN], ADMIN_FROM, "APPROVE"), private)
    leaked = str(second[NL_ADMIN]["Reply-To"])  # request #2's token, leaked
    world.deliver(with_headers(genuine, f"To: {leaked}"))
    world.run_once()
    sent = world.sent()
    assert_request_undecided(world, sent, 1)
    assert_request_undecided(world, sent, 2)
    assert summary(sent) == [(NL_ADMIN, "Your answer could not be accepted")]
    assert "it names more than one reply address, or the same header twice" in flat(sent[0])


def test_a_delivered_to_added_by_the_sender_is_not_read(world: World, dkim_key: tuple[bytes, bytes]) -> None:
    private, record = dkim_key
    world.rules["authentication"] = {"authserv_id": OUR_ID, "require": "dkim"}
    first, second = two_requests(world)
    world.bot().dnsfunc = serve_key(record)
    genuine = sign(client_reply("apple-mail", first[NL_ADMIN], ADMIN_FROM, "APPROVE"), private)
    leaked = str(second[NL_ADMIN]["Reply-To"])
    world.deliver(with_headers(genuine, f"Delivered-To: {leaked}", f"X-Original-To: {leaked}"))
    world.run_once()
    sent = world.sent()
    assert_request_undecided(world, sent, 2)  # the leaked token was never read
    assert request(world, 1)["state"] == "approved"  # the signed To named #1: that is what admin approved


def test_with_an_envelope_header_only_our_servers_top_copy_counts(world: World, dkim_key: tuple[bytes, bytes]) -> None:
    private, record = dkim_key
    world.rules["authentication"] = {"authserv_id": OUR_ID, "require": "dkim"}
    world.settings["imap.envelope_header"] = "X-Original-To"
    first, second = two_requests(world)
    world.bot().dnsfunc = serve_key(record)
    genuine = sign(client_reply("apple-mail", first[NL_ADMIN], ADMIN_FROM, "APPROVE"), private)
    leaked = str(second[NL_ADMIN]["Reply-To"])
    # The sender's own X-Original-To sits below the one our receiving server adds on top.
    attacked = with_headers(
        with_headers(genuine, f"X-Original-To: {leaked}"), f"X-Original-To: {first[NL_ADMIN]['Reply-To']}"
    )
    world.deliver(attacked)
    world.run_once()
    sent = world.sent()
    assert_request_undecided(world, sent, 2)
    assert request(world, 1)["state"] == "approved"


def test_under_dkim_the_to_that_carries_the_token_must_be_signed(world: World, dkim_key: tuple[bytes, bytes]) -> None:
    private, record = dkim_key
    world.rules["authentication"] = {"authserv_id": OUR_ID, "require": "dkim"}
    first, _ = two_requests(world)
    world.bot().dnsfunc = serve_key(record)
    unsigned_to = sign(
        client_reply("apple-mail", first[NL_ADMIN], ADMIN_FROM, "APPROVE"),
        private,
        headers=(b"from", b"subject", b"date"),
    )
    world.deliver(unsigned_to)
    world.run_once()
    sent = world.sent()
    assert_request_undecided(world, sent, 1)
    assert (SECRETARIAT, REJECTED.format(rule="dkim-required")) in summary(sent)
    checks = [t["details"]["checks"] for t in request(world, 1)["timeline"] if t["action"] == "reply-rejected"]
    assert checks[0]["dkim"] == "fail d=sidn.nl: To is not signed"


# --- a decision in the wrong thread -------------------------------------------------------------------------


def test_a_reply_in_one_requests_thread_with_anothers_token_asks_which_is_meant(world: World) -> None:
    first, second = two_requests(world)
    # admin answers request #1's mail, but the reply goes to request #2's address (a client's address book).
    reply = client_reply("gmail", first[NL_ADMIN], ADMIN_FROM, "APPROVE", to=str(second[NL_ADMIN]["Reply-To"]))
    world.deliver(reply)
    world.run_once()
    sent = world.sent()
    assert_request_undecided(world, sent, 1)
    assert_request_undecided(world, sent, 2)
    asked = one(sent, NL_ADMIN)
    assert subject(asked) == "Please answer APPROVE or DENY: ann@registry.example for .nl [#2]"
    assert "written in the conversation about request #1 (jan@registry.example for .nl)" in flat(asked)
    assert str(asked.message["Reply-To"]) == str(second[NL_ADMIN]["Reply-To"])
    # Answering that question (its thread is request #2's) decides #2, and only #2.
    world.deliver(client_reply("gmail", asked.message, ADMIN_FROM, "APPROVE"))
    world.run_once()
    sent = world.sent()
    assert (request(world, 2)["state"], request(world, 2)["decided_by"]) == ("approved", NL_ADMIN)
    assert request(world, 1)["state"] == "pending"
    assert body_of(one(sent, COMMAND_ADDRESS)).startswith(f"join address={ANN} ")


def body_of(captured: object) -> str:
    return str(captured.message.get_content())  # type: ignore[attr-defined]


# --- WITHDRAW --------------------------------------------------------------------------------------------


def acknowledgement(opened_sent: list) -> EmailMessage:
    return one(opened_sent, REQUESTER).message


def test_the_requester_withdraws_and_a_later_approval_counts_for_nothing(world: World) -> None:
    opened = open_request(world)
    ack = acknowledgement(opened.sent)
    assert "reply to this message with the single word WITHDRAW" in " ".join(str(ack.get_content()).split())
    world.deliver(client_reply("gmail", ack, f"Jan Jansen <{REQUESTER}>", "WITHDRAW"))
    world.run_once()
    sent = world.sent()
    assert request(world)["state"] == "withdrawn"
    assert summary(sent) == sorted(
        [
            (NL_ADMIN, "Withdrawn: jan@registry.example for .nl [#1]"),
            (NL_TECH, "Withdrawn: jan@registry.example for .nl [#1]"),
            (SECRETARIAT, "Withdrawn: jan@registry.example for .nl [#1]"),
            (REQUESTER, "Withdrawn: your request to join the ccTLD security list for .nl [#1]"),
        ]
    )
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"))
    world.run_once()
    sent = world.sent()
    assert request(world)["state"] == "withdrawn"
    assert COMMAND_ADDRESS not in by_rcpt(sent)
    assert summary(sent) == [(NL_ADMIN, "Your answer could not be accepted")]
    assert "no longer open for your answer" in flat(sent[0])


def test_withdraw_from_anyone_but_the_requester_withdraws_nothing(world: World) -> None:
    opened = open_request(world)
    ack = acknowledgement(opened.sent)
    world.deliver(client_reply("gmail", ack, "Mallory <mallory@registry.example>", "WITHDRAW"))
    world.run_once()
    sent = world.sent()
    assert request(world)["state"] == "pending"
    assert summary(sent) == [("mallory@registry.example", "Your answer could not be accepted")]


def test_an_approver_cannot_withdraw_and_a_requester_cannot_approve(world: World) -> None:
    opened = open_request(world)
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "WITHDRAW"))
    world.deliver(client_reply("gmail", acknowledgement(opened.sent), f"Jan <{REQUESTER}>", "APPROVE"))
    world.run_once()
    sent = world.sent()
    assert_undecided(world, sent)
    assert summary(sent) == sorted(
        [
            (NL_ADMIN, "Please answer APPROVE or DENY: jan@registry.example for .nl [#1]"),
            (REQUESTER, "Your answer could not be accepted"),
        ]
    )
    assert "the single word WITHDRAW on the first line" in flat(one(sent, REQUESTER))


# --- no alarm and no answer where nobody decided ------------------------------------------------------------


def test_a_colleagues_question_on_a_token_address_is_no_forgery_alert(world: World) -> None:
    opened = open_request(world)
    colleague = "Piet <piet@sidn.nl>"
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, colleague, "Who is this person?"))
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [("piet@sidn.nl", "Your answer could not be accepted")]  # no Secretariat alert
    assert_undecided(world, sent)
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, colleague, "APPROVE"))
    world.run_once()
    sent = world.sent()
    # A decision: alert. Piet is of the contact's organisation, so it is judged as an answer on the contact's
    # behalf (delegation.py), and refused as unauthenticated.
    assert summary(sent) == [(SECRETARIAT, REJECTED.format(rule="delegate-unauthenticated"))]
    assert_undecided(world, sent)


def test_no_clarification_to_an_approver_who_auto_replied(world: World) -> None:
    opened = open_request(world)
    approval = opened.approvals[NL_ADMIN].message
    away = email.message_from_bytes(
        client_reply("gmail", approval, ADMIN_FROM, "I am away until Monday."), policy=email.policy.default
    )
    away["Auto-Submitted"] = "auto-replied"
    world.deliver(away.as_bytes(policy=email.policy.SMTP))
    world.run_once()
    assert [subject(m) for m in world.sent()] == []
    world.deliver(client_reply("gmail", approval, ADMIN_FROM, "ok"))
    world.run_once()
    sent = world.sent()
    assert sent == []  # an address that auto-replied lately gets no mail that could start a loop
    assert_undecided(world, sent)
    suppressed = [t for t in request(world)["timeline"] if t["action"] == "reply-suppressed"]
    assert suppressed and suppressed[0]["details"]["why"] == "auto-replied or bounced in the last 30 days"


def test_a_clarification_goes_once_per_request(world: World) -> None:
    opened = open_request(world)
    approval = opened.approvals[NL_ADMIN].message
    world.deliver(client_reply("gmail", approval, ADMIN_FROM, "ok"))
    world.run_once()
    assert summary(world.sent()) == [(NL_ADMIN, "Please answer APPROVE or DENY: jan@registry.example for .nl [#1]")]
    world.deliver(client_reply("gmail", approval, ADMIN_FROM, "fine by me"))
    world.run_once()
    assert world.sent() == []
    world.deliver(client_reply("gmail", approval, ADMIN_FROM, "APPROVE"))
    world.run_once()
    assert request(world)["state"] == "approved"


# --- a hanging IANA never holds up other mail --------------------------------------------------------------


def test_a_hanging_iana_does_not_delay_an_approval(world: World) -> None:
    from tests.helpers_intake import wait_until
    from tests.test_daemon import idle, running  # the in-process daemon rig

    opened = open_request(world)  # request #1 is pending, its approvers asked
    world.whois.modes["fi"] = "hang"  # IANA stops answering for .fi (whois, then RDAP)
    world.rdap.modes["fi"] = "hang"
    with running(world) as daemon:
        idle(daemon)
        world.request(sender="Ann <ann@registry.example>", subject="subscribe .fi")
        time.sleep(0.5)  # the .fi request is in, its lookup hanging
        start = time.monotonic()
        world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"))
        wait_until(
            lambda: any(c.rcpt_tos == [COMMAND_ADDRESS] for c in world.sink.messages),
            timeout=10,
            what="the Mailman command",
        )
        took = time.monotonic() - start
    assert request(world, 1)["state"] == "approved"
    # With iana.timeout_seconds 2, a lookup on the message path would hold the approval up by 4 s or more.
    assert took < 3.5, took
    assert request(world, 2)["state"] == "resolving"


# --- the rest of the attack matrix ------------------------------------------------------------------------


def test_a_look_alike_from_decides_nothing(world: World) -> None:
    opened = open_request(world)
    raw = client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE")
    # Cyrillic i in the domain, written raw (UTF-8) as an SMTPUTF8 client would send it
    lookalike = raw.replace(b"<admin@sidn.nl>", "<admin@s\u0456dn.nl>".encode(), 1)
    assert lookalike != raw
    world.deliver(lookalike)
    world.run_once()
    sent = world.sent()
    assert_undecided(world, sent)
    # Raw non-ASCII in an address is not read as any mailbox: refused, and reported as forgery-like.
    assert summary(sent) == [(SECRETARIAT, REJECTED.format(rule="from-unreadable"))]


def test_dkim_of_another_domain_decides_nothing(world: World, dkim_key: tuple[bytes, bytes]) -> None:
    # (A signature that does not cover From is refused too: tests/test_authenticity.py, as dkimpy will not
    # make one for an end-to-end test.)
    private, record = dkim_key
    world.rules["authentication"] = {"authserv_id": OUR_ID, "require": "dkim"}
    first, _ = two_requests(world)
    world.bot().dnsfunc = serve_key(record, domain="evil.example")
    reply = client_reply("apple-mail", first[NL_ADMIN], ADMIN_FROM, "APPROVE")
    world.deliver(dkim.sign(reply, SELECTOR, b"evil.example", private, include_headers=[b"from", b"to"]) + reply)
    world.run_once()
    sent = world.sent()
    assert_request_undecided(world, sent, 1)
    checks = [t["details"]["checks"]["dkim"] for t in request(world, 1)["timeline"] if t["action"] == "reply-rejected"]
    assert checks == ["fail d=evil.example: not aligned with sidn.nl"]


def test_template_syntax_in_a_requesters_words_is_relayed_as_text(world: World) -> None:
    opened = open_request(world, text="Name: {{ secretariat }}\nI am {% if true %}trusted{% endif %} {{ 7*7 }}.\n")
    approval = str(opened.approvals[NL_ADMIN].message.get_content())
    assert "  | I am {% if true %}trusted{% endif %} {{ 7*7 }}." in approval
    assert "49" not in approval
    assert all("\n" not in str(v) for m in opened.sent for v in m.message.values())
