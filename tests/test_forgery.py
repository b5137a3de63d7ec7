"""Replies that must NOT decide: each leaves the request open and sends no Mailman command.

A forged or misread approval is the worst thing this bot can do. Every test here runs the whole bot (real
Dovecot, the SMTP sink, the IANA stand-ins) and checks what users see: the request is still pending in the
store, nothing went to secir-request@, nobody was told of a decision, and who got what instead. Each kind of
forgery has a control beside it - the same mail built the same way but genuine - that does decide, so a test
cannot pass merely because the mail was malformed.
"""

from __future__ import annotations

import base64
import email
import email.policy
import subprocess
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest

from secirbot.message import parse_mail
from secirbot.replies import Verdict, read_decision
from tests.clients import client_reply
from tests.flow import (
    ADMIN_FROM,
    COMMAND_ADDRESS,
    NL_ADMIN,
    NL_TECH,
    REQUESTER,
    assert_undecided,
    body,
    by_rcpt,
    flat,
    one,
    open_request,
    request,
    subject,
    summary,
)
from tests.harness import BOT, SECRETARIAT, World, new_message

MESSAGES = Path(__file__).parent / "messages"
OUR_ID = "mx.lists.example.org"  # the authserv-id tests/harness.py configures
NOT_ACCEPTED = "Your answer could not be accepted"
CLARIFY = "Please answer APPROVE or DENY: jan@registry.example for .nl [#1]"
REJECTED = "Rejected answer to request #1 (.nl): {rule}"


def decided_by_admin(world: World, sent: list) -> None:
    """The control outcome: admin@sidn.nl decided APPROVE and the Mailman command went out."""
    assert body(one(sent, COMMAND_ADDRESS)).splitlines()[0] == "join address=jan@registry.example digest=no"
    data = request(world)
    assert (data["state"], data["decided_by"]) == ("approved", NL_ADMIN)


def with_headers(raw: bytes, *headers: str) -> bytes:
    """Headers prepended, the first one top-most, as receiving servers add them."""
    return b"".join(f"{h}\r\n".encode() for h in headers) + raw


# --- no token, or not a reply to one --------------------------------------------------------------------


def test_control_genuine_reply_decides(world: World) -> None:
    opened = open_request(world)
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"))
    world.run_once()
    decided_by_admin(world, world.sent())


def test_approve_without_a_token_decides_nothing(world: World) -> None:
    open_request(world)
    world.deliver(new_message(ADMIN_FROM, BOT, "Request #1 for .nl", "APPROVE\n\nRoelof\n"))
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [(NL_ADMIN, "About join@lists.example.org: how to ask to join the ccTLD security list")]
    assert "We did not find a request in your message, so nothing was done with it." in flat(sent[0])
    assert_undecided(world, sent)


@pytest.mark.parametrize("how", ["in-reply-to-only", "client-replied-to-from"])
def test_reply_threaded_only_by_in_reply_to_and_references_decides_nothing(world: World, how: str) -> None:
    opened = open_request(world)
    approval = opened.approvals[NL_ADMIN].message
    if how == "in-reply-to-only":
        mail = new_message(
            ADMIN_FROM,
            BOT,
            "Approval for jan",
            "APPROVE\n",
            In_Reply_To=str(approval["Message-ID"]),
            References=str(approval["Message-ID"]),
        )
        world.deliver(mail)
    else:  # the client answered the From address instead of the Reply-To: a whole real reply, no token
        world.deliver(client_reply("gmail", approval, ADMIN_FROM, "APPROVE", to=BOT))
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [(NL_ADMIN, "About join@lists.example.org: how to ask to join the ccTLD security list")]
    assert (
        "Your message looks like an answer to one of our messages, but it did not reach us through the"
        " personal reply address of that message"
    ) in flat(sent[0])
    assert_undecided(world, sent)


# --- a valid token in the wrong hands ---------------------------------------------------------------------

FORWARDED = {  # who answers -> (who is told the answer did not count, the rule the Secretariat hears)
    # Of the contact's own organisation: judged as an answer on its behalf (delegation.py), unauthenticated.
    "colleague": ("Piet Colleague <colleague@sidn.nl>", "colleague@sidn.nl", "delegate-unauthenticated"),
    "requester-themselves": (f"Jan Jansen <{REQUESTER}>", REQUESTER, "from-mismatch"),
    "display-name-spoof": ('"admin@sidn.nl" <evil@evil.example>', "evil@evil.example", "from-mismatch"),
    # Several From addresses: nobody is answered (the first one may be the approver, who never wrote it).
    "two-addresses": ("admin@sidn.nl, evil@evil.example", None, "from-unreadable"),
}


@pytest.mark.parametrize("who", list(FORWARDED))
def test_valid_token_from_another_address_decides_nothing(world: World, who: str) -> None:
    # The approval mail was forwarded (a redirect keeps its Reply-To); someone else answers it.
    sender, told, rule = FORWARDED[who]
    opened = open_request(world)
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, sender, "APPROVE"))
    world.run_once()
    sent = world.sent()
    assert_undecided(world, sent)
    if told is None:
        assert summary(sent) == [(SECRETARIAT, REJECTED.format(rule=rule))]
    else:
        assert summary(sent) == sorted([(told, NOT_ACCEPTED), (SECRETARIAT, REJECTED.format(rule=rule))])
        said = (
            "counts only when every condition of an answer on a contact's behalf holds"
            if rule.startswith("delegate-")
            else "an approval request can only be answered from the address it was sent to"
        )
        assert said in flat(one(sent, told))
    report = flat(one(sent, SECRETARIAT))
    assert "An answer to the approval request sent to admin@sidn.nl did not count." in report
    assert "The request is still pending." in report
    rejected = [t for t in request(world)["timeline"] if t["action"] == "reply-rejected"]
    assert [(t["details"]["rule"], t["details"]["first_line"]) for t in rejected] == [(rule, "APPROVE")]


def test_token_of_another_request_decides_neither(world: World) -> None:
    first = open_request(world, sender="Ivan <ivan@registry.example>", subject_line="subscribe .mx")
    second = open_request(world)  # request #2: jan for .nl
    assert sorted(first.approvals) == ["adm-iana@nic.mx", "tech-iana@nic.mx"]
    # admin@sidn.nl answers request #2's mail, but to the reply address of request #1's approver.
    world.deliver(
        client_reply(
            "gmail",
            second.approvals[NL_ADMIN].message,
            ADMIN_FROM,
            "APPROVE",
            to=first.token_address("adm-iana@nic.mx"),
        )
    )
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [
        (NL_ADMIN, NOT_ACCEPTED),
        (SECRETARIAT, "Rejected answer to request #1 (.mx): from-mismatch"),
    ]
    assert_undecided(world, sent, request_id=1)
    assert_undecided(world, sent, request_id=2)


def test_token_reused_for_a_new_request_decides_nothing(world: World) -> None:
    opened = open_request(world)
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "DENY\nNot ours."))
    world.run_once()
    world.sent()
    assert request(world, 1)["state"] == "denied"
    # Jan asks again; admin@sidn.nl's old approval mail (request #1) is answered APPROVE, by mistake or not.
    world.clock.advance(days=2)
    again = open_request(world)
    assert sorted(again.approvals) == [NL_ADMIN, NL_TECH]
    world.deliver(client_reply("outlook", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"))
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [(NL_ADMIN, "Already decided: jan@registry.example for .nl [#1]")]
    assert "was already decided: DENY by admin@sidn.nl on 2026-11-26 09:00 UTC" in flat(sent[0])
    assert_undecided(world, sent, request_id=2)
    assert request(world, 1)["state"] == "denied"


@pytest.mark.parametrize("late, rule", [({"days": 14}, "token-expired"), ({"days": 15}, "request-expired")])
def test_expired_token_decides_nothing(world: World, late: dict[str, int], rule: str) -> None:
    opened = open_request(world)
    if rule == "request-expired":
        world.clock.advance(**late)
        world.run_once()  # the bot notices the expiry before the answer arrives
        assert sorted(s for _, s in summary(world.sent()) if s.startswith("Expired")) == [
            "Expired: request #1, jan@registry.example for .nl",
            "Expired: your request to join the ccTLD security list for .nl [#1]",
        ]
    else:
        world.clock.advance(**late)  # the answer arrives at the very second the request expires
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"))
    world.run_once()
    sent = world.sent()
    told = one(sent, NL_ADMIN)
    assert subject(told) == NOT_ACCEPTED
    assert "the request it answers has expired." in flat(told)
    assert COMMAND_ADDRESS not in by_rcpt(sent)
    data = request(world)
    assert (data["state"], data["decision"], data["decided_by"], data["mailman_status"]) == (
        "expired",
        None,
        None,
        None,
    )
    rejected = [t["details"]["rule"] for t in data["timeline"] if t["action"] == "reply-rejected"]
    assert rejected == [rule]


# --- Authentication-Results ---------------------------------------------------------------------------------


@pytest.mark.parametrize("require", ["none", "dmarc"])
def test_trusted_dmarc_fail_decides_nothing(world: World, require: str) -> None:
    world.rules["authentication"] = {"authserv_id": OUR_ID, "require": require}
    opened = open_request(world)
    raw = with_headers(
        client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"),
        f"Authentication-Results: {OUR_ID}; spf=pass smtp.mailfrom=sidn.nl;"
        " dkim=pass header.d=sidn.nl; dmarc=fail (p=reject) header.from=sidn.nl",
    )
    world.deliver(raw)
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [(NL_ADMIN, NOT_ACCEPTED), (SECRETARIAT, REJECTED.format(rule="dmarc-fail"))]
    assert_undecided(world, sent)
    checks = [t["details"]["checks"] for t in request(world)["timeline"] if t["action"] == "reply-rejected"]
    assert checks == [{"from": "matches", "authres": "dmarc=fail header.from=sidn.nl"}]


def test_control_trusted_dmarc_pass_decides_when_dmarc_is_required(world: World) -> None:
    # The token is read from the envelope recipient our own server records (imap.envelope_header).
    world.rules["authentication"] = {"authserv_id": OUR_ID, "require": "dmarc"}
    world.settings["imap.envelope_header"] = "Delivered-To"
    opened = open_request(world)
    token_address = opened.token_address(NL_ADMIN)
    world.deliver(
        with_headers(
            client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"),
            f"Delivered-To: {token_address}",
            f"Authentication-Results: {OUR_ID}; dmarc=pass header.from=sidn.nl",
        )
    )
    world.run_once()
    decided_by_admin(world, world.sent())


def test_trusted_dmarc_pass_does_not_vouch_for_a_token_in_an_unsigned_to(world: World) -> None:
    # DMARC may pass on a DKIM signature that does not cover To: the To could have been re-aimed.
    world.rules["authentication"] = {"authserv_id": OUR_ID, "require": "dmarc"}
    opened = open_request(world)
    world.deliver(
        with_headers(
            client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"),
            f"Authentication-Results: {OUR_ID}; dmarc=pass header.from=sidn.nl",
        )
    )
    world.run_once()
    sent = world.sent()
    assert_undecided(world, sent)
    assert (SECRETARIAT, REJECTED.format(rule="token-header-unsigned")) in summary(sent)


@pytest.mark.parametrize(
    "top, require, rule",
    [
        (f"{OUR_ID}; dmarc=fail header.from=sidn.nl", "none", "dmarc-fail"),  # a lower pass cannot override a fail
        (f"{OUR_ID}; spf=pass smtp.mailfrom=sidn.nl", "dmarc", "dmarc-required"),  # nor add a pass never written
        (f"{OUR_ID}; dmarc=none header.from=sidn.nl", "dmarc", "dmarc-required"),
    ],
)
def test_second_authentication_results_claiming_our_id_below_the_top_one_is_ignored(
    world: World, top: str, require: str, rule: str
) -> None:
    world.rules["authentication"] = {"authserv_id": OUR_ID, "require": require}
    opened = open_request(world)
    forged = client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE")
    # The sender wrote this one into the message; our server added its own above it on arrival.
    forged = with_headers(
        forged, f"Authentication-Results: {OUR_ID}; dkim=pass header.d=sidn.nl; dmarc=pass header.from=sidn.nl"
    )
    world.deliver(with_headers(forged, f"Authentication-Results: {top}"))
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [(NL_ADMIN, NOT_ACCEPTED), (SECRETARIAT, REJECTED.format(rule=rule))]
    assert_undecided(world, sent)


# --- DKIM -----------------------------------------------------------------------------------------------------

SELECTOR = b"sel2026"


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """(PKCS#1 private key PEM, DNS TXT record) made by openssl (which CI installs for Dovecot anyway)."""
    folder = tmp_path_factory.mktemp("dkim")
    key = folder / "key.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    return key.read_bytes(), b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def serve_key(record: bytes, domain: str = "sidn.nl") -> Callable[[bytes], bytes]:
    name = SELECTOR + b"._domainkey." + domain.encode() + b"."
    return lambda qname: record if qname == name else b""


def sign(raw: bytes, private: bytes, *, length: bool = False) -> bytes:
    return (
        dkim.sign(
            raw,
            SELECTOR,
            b"sidn.nl",
            private,
            length=length,
            include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
        )
        + raw
    )


def empty_reply(to: str) -> bytes:
    """What admin@sidn.nl's client sent when they hit Send on an empty reply: a real Apple Mail message."""
    msg = email.message_from_bytes((MESSAGES / "reply-apple-mail-2.eml").read_bytes(), policy=email.policy.default)
    for name, value in (("From", ADMIN_FROM), ("To", to), ("Subject", "Re: Approval needed")):
        msg.replace_header(name, value)
    msg.set_content("\n", charset="us-ascii", cte="7bit")
    return msg.as_bytes(policy=email.policy.SMTP)


def test_dkim_l_tag_with_approve_appended_decides_nothing(world: World, dkim_key: tuple[bytes, bytes]) -> None:
    private, record = dkim_key
    world.rules["authentication"] = {"authserv_id": OUR_ID, "require": "dkim"}
    opened = open_request(world)
    world.bot().dnsfunc = serve_key(record)
    genuine = sign(empty_reply(opened.token_address(NL_ADMIN)), private, length=True)
    forged = genuine + b"APPROVE\r\n"
    # What makes this a forgery and not a malformed mail: the signature still verifies, the text says APPROVE.
    assert dkim.verify(forged, dnsfunc=lambda name, timeout=5: serve_key(record)(name))
    assert read_decision(parse_mail(forged)).verdict is Verdict.APPROVE
    world.deliver(forged)
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [(NL_ADMIN, NOT_ACCEPTED), (SECRETARIAT, REJECTED.format(rule="dkim-required"))]
    assert_undecided(world, sent)
    checks = [t["details"]["checks"] for t in request(world)["timeline"] if t["action"] == "reply-rejected"]
    assert checks[0]["dkim"] == "fail d=sidn.nl: l= limits the signed body, text may be appended"


def test_control_dkim_signed_approve_decides_when_dkim_is_required(world: World, dkim_key: tuple[bytes, bytes]) -> None:
    private, record = dkim_key
    world.rules["authentication"] = {"authserv_id": OUR_ID, "require": "dkim"}
    opened = open_request(world)
    world.bot().dnsfunc = serve_key(record)
    unsigned = client_reply("apple-mail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE")
    world.deliver(unsigned)
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [(NL_ADMIN, NOT_ACCEPTED), (SECRETARIAT, REJECTED.format(rule="dkim-required"))]
    assert_undecided(world, sent)
    world.clock.advance(days=1)  # past the once-a-day limit on "not accepted" answers
    world.deliver(sign(client_reply("apple-mail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"), private))
    world.run_once()
    decided_by_admin(world, world.sent())


# --- the words themselves -------------------------------------------------------------------------------------


@pytest.mark.parametrize("client", ["outlook", "gmail", "iphone-qp", "thunderbird-flowed", "html-only-outlook-com"])
def test_the_word_only_in_the_quoted_part_decides_nothing(world: World, client: str) -> None:
    # The requester wrote a bare APPROVE line into their own words; it is in every quoted approval mail.
    opened = open_request(world, text="Name: Jan Jansen\nAPPROVE\nI handle incidents.\n")
    approval = opened.approvals[NL_ADMIN].message
    assert "  | APPROVE (their words)" in str(approval.get_content()).splitlines()
    world.deliver(client_reply(client, approval, ADMIN_FROM, ""))
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [(NL_ADMIN, CLARIFY)]
    assert_undecided(world, sent)


@pytest.mark.parametrize("text", ["APPROVE DENY", "APPROVE or DENY", "APPROVE\nDENY", "DENY\n\nActually:\nAPPROVE"])
def test_both_words_decide_nothing(world: World, text: str) -> None:
    opened = open_request(world)
    world.deliver(client_reply("apple-mail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, text))
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [(NL_ADMIN, CLARIFY)]
    assert "We could not read a decision from it: your reply named both APPROVE and DENY." in flat(sent[0])
    assert_undecided(world, sent)


# --- machines answering ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sample", ["autoreply-rfc3834-auto-submitted-away.eml", "autoreply-exchange-automatic-reply-no-auto-submitted.eml"]
)
def test_out_of_office_from_the_approver_decides_nothing(world: World, sample: str) -> None:
    opened = open_request(world)
    approval = opened.approvals[NL_ADMIN].message
    msg = email.message_from_bytes((MESSAGES / sample).read_bytes(), policy=email.policy.default)
    msg.replace_header("From", ADMIN_FROM)
    msg.replace_header("To", opened.token_address(NL_ADMIN))
    msg["In-Reply-To"] = str(approval["Message-ID"])
    # Even an auto-responder whose text starts with a perfect first line never decides.
    msg.set_content("APPROVE\n\n" + str(msg.get_content()), charset="us-ascii")
    world.deliver(msg.as_bytes(policy=email.policy.SMTP))
    world.run_once()
    sent = world.sent()
    assert sent == []  # no answer to a machine; tech@sidn.nl can still be reached, so no escalation
    assert_undecided(world, sent)
    assert [(a["email"], a["state"]) for a in request(world)["approvers"]] == [(NL_ADMIN, "away"), (NL_TECH, "asked")]
    # The other approver's genuine answer still decides.
    world.deliver(client_reply("gmail", opened.approvals[NL_TECH].message, f"Marc <{NL_TECH}>", "APPROVE"))
    world.run_once()
    sent = world.sent()
    assert body(one(sent, COMMAND_ADDRESS)).splitlines()[0] == "join address=jan@registry.example digest=no"
    assert request(world)["decided_by"] == NL_TECH
