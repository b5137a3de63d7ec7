"""The admission procedure end to end on the real Dovecot, the SMTP sink and the local IANA servers:
request -> approval requests to the IANA contacts -> a reply -> the Mailman command and the notices."""

from __future__ import annotations

import email

import pytest

from secirbot.replies import REPLY_MARKER
from secirbot.reports import show_request
from tests.clients import CLIENTS, client_reply
from tests.flow import (
    ADMIN_FROM,
    COMMAND_ADDRESS,
    NL_ADMIN,
    NL_TECH,
    REQUESTER,
    TECH_FROM,
    assert_undecided,
    audit_actions,
    body,
    by_rcpt,
    flat,
    one,
    open_request,
    request,
    subject,
    summary,
)
from tests.harness import BOT, LIST, SECRETARIAT, World, new_message, reply_to


def test_approve_by_mail_subscribes_with_a_mailman3_command(world: World) -> None:
    world.request()
    report = world.run_once()
    assert report.processed == 1 and report.failed == 0
    sent = world.sent()
    approvals = world.approval_requests(sent)
    assert sorted(approvals) == ["admin@sidn.nl", "tech@sidn.nl"]
    tokens = {m.message["Reply-To"] for m in approvals.values()}
    assert len(tokens) == 2  # each approver its own reply address
    assert [m.rcpt_tos for m in world.sent_to(SECRETARIAT, sent)] == [[SECRETARIAT]]
    copy = world.sent_to(SECRETARIAT, sent)[0].message
    assert copy["Reply-To"] is None and "+" not in copy.get_content().split("secirbot show")[0].split("@")[0]
    ack = world.sent_to("jan@registry.example", sent)[0].message
    assert "#1" in ack["Subject"] and "confirm" in ack.get_content()

    world.deliver(reply_to(approvals["admin@sidn.nl"], "Roelof Meijer <admin@sidn.nl>", "APPROVE"))
    world.clock.advance(hours=2)
    world.run_once()
    sent = world.sent()
    command = world.sent_to("secir-request@lists.example.org", sent)
    assert len(command) == 1
    assert command[0].mail_from == BOT
    assert command[0].message.get_content().splitlines()[0] == "join address=jan@registry.example digest=no"
    assert command[0].message["Precedence"] is None
    assert "Approved" in world.sent_to("jan@registry.example", sent)[0].message["Subject"]
    assert "APPROVE" in world.sent_to(SECRETARIAT, sent)[0].message["Subject"]
    assert "admin@sidn.nl" in world.sent_to("tech@sidn.nl", sent)[0].message.get_content()

    data = show_request(world.bot().store, 1)
    assert data is not None
    assert data["state"] == "approved" and data["decided_by"] == "admin@sidn.nl"
    decided = [t for t in data["timeline"] if t["action"] == "request-decided"]
    assert decided[0]["details"]["snapshot_id"] == data["snapshot_id"]
    assert "From: Roelof Meijer <admin@sidn.nl>" in decided[0]["details"]["headers"]
    assert LIST in command[0].message.get_content() or command[0].rcpt_tos == ["secir-request@lists.example.org"]
    assert sorted(world.mailbox.uids("Processed")) == [1, 2] and world.mailbox.uids("INBOX") == []


# --- replies as real clients write them ----------------------------------------------------------------

REASON = "Sie ist seit Mai nicht mehr bei uns tätig."  # ISO-8859-1 can carry it; US-ASCII cannot


@pytest.mark.parametrize("verdict", ["APPROVE", "DENY"])
@pytest.mark.parametrize("client", list(CLIENTS))
def test_reply_from_a_real_client_decides(world: World, client: str, verdict: str) -> None:
    opened = open_request(world)
    assert sorted(opened.approvals) == [NL_ADMIN, NL_TECH]
    text = "APPROVE" if verdict == "APPROVE" else f"DENY\n{REASON}"
    world.deliver(client_reply(client, opened.approvals[NL_ADMIN].message, ADMIN_FROM, text))
    world.clock.advance(hours=2)
    world.run_once()
    sent = world.sent()

    if verdict == "APPROVE":
        assert summary(sent) == sorted(
            [
                (COMMAND_ADDRESS, ""),
                (REQUESTER, "Approved: your request to join the ccTLD security list for .nl [#1]"),
                (SECRETARIAT, "APPROVE: jan@registry.example for .nl [#1]"),
                (NL_TECH, "Decided: jan@registry.example for .nl [#1]"),
                (NL_ADMIN, "Recorded: your APPROVE for jan@registry.example (.nl) [#1]"),
            ]
        )
        command = one(sent, COMMAND_ADDRESS)
        assert body(command).splitlines() == ["join address=jan@registry.example digest=no", "end"]
        assert "was approved by admin@sidn.nl on 2026-11-26 11:00 UTC" in flat(one(sent, REQUESTER))
    else:
        assert summary(sent) == sorted(
            [
                (REQUESTER, "Not approved: your request to join the ccTLD security list for .nl [#1]"),
                (SECRETARIAT, "DENY: jan@registry.example for .nl [#1]"),
                (NL_TECH, "Decided: jan@registry.example for .nl [#1]"),
                (NL_ADMIN, "Recorded: your DENY for jan@registry.example (.nl) [#1]"),
            ]
        )
        # The approver's reason goes to the Secretariat, decoded, and not to the requester (default rules).
        assert f"  | {REASON}" in body(one(sent, SECRETARIAT)).splitlines()
        assert "tätig" not in body(one(sent, REQUESTER))
    assert f"has been decided: {verdict} by admin@sidn.nl on 2026-11-26 11:00 UTC" in flat(one(sent, NL_TECH))
    secretariat = flat(one(sent, SECRETARIAT))
    assert f"Decision: {verdict} By: admin@sidn.nl (mail)" in secretariat
    data = request(world)
    assert (data["state"], data["decision"], data["decided_by"], data["decided_via"]) == (
        "approved" if verdict == "APPROVE" else "denied",
        verdict,
        NL_ADMIN,
        "mail",
    )
    # The reason is the text below DENY up to the quote (a client's sign-off included), never the quote.
    if verdict == "APPROVE":
        assert data["decision_reason"] is None
    else:
        assert data["decision_reason"].splitlines()[0] == REASON
        assert "APPROVE" not in data["decision_reason"] and REPLY_MARKER not in data["decision_reason"]
    assert data["decided_at"] == "2026-11-26T11:00:00Z"
    assert [a["state"] for a in data["approvers"]] == ["used", "closed"]


@pytest.mark.parametrize(
    "dialect, list_address, command_address, line",
    [
        ("mailman2", LIST, "secir-request@lists.example.org", "subscribe address=jan@registry.example nodigest"),
        (
            "mailman2",
            "cc-sec@lists.nic.example",
            "cc-sec-request@lists.nic.example",
            "subscribe address=jan@registry.example nodigest",
        ),
        (
            "mailman3",
            "cc-sec@lists.nic.example",
            "cc-sec-request@lists.nic.example",
            "join address=jan@registry.example digest=no",
        ),
    ],
)
def test_mailman_command_mail_in_each_dialect(
    world: World, dialect: str, list_address: str, command_address: str, line: str
) -> None:
    world.settings.update({"mailman.dialect": dialect, "mailman.list": list_address})
    opened = open_request(world)
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"))
    world.run_once()
    sent = world.sent()
    commands = [c for c in sent if c.rcpt_tos == [command_address]]
    assert len(commands) == 1
    command = commands[0]
    msg = command.message
    assert command.mail_from == BOT and msg["From"] == BOT and msg["To"] == command_address
    assert msg["Subject"] is None  # Mailman reads the Subject as a command line too
    assert msg["Precedence"] is None  # Mailman drops mail with Precedence: bulk/list/junk silently
    assert msg.get_content_type() == "text/plain"
    assert body(command).splitlines() == [line, "end"]
    # Nothing else went to the list or to any of its addresses.
    list_domain = list_address.split("@")[1]
    assert [c.rcpt_tos for c in sent if c.rcpt_tos[0].endswith("@" + list_domain)] == [[command_address]]
    assert list_address in flat(one(sent, REQUESTER))
    assert request(world)["mailman_status"] == "queued"


# --- who is asked -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "roles, ask_first, asked",
    [
        (["administrative", "technical"], ["administrative", "technical"], [NL_ADMIN, NL_TECH]),
        (["administrative"], ["administrative"], [NL_ADMIN]),
        (["technical"], ["technical"], [NL_TECH]),
        (["administrative", "technical"], ["administrative"], [NL_ADMIN]),
    ],
)
def test_exactly_the_iana_contacts_of_the_configured_roles_are_asked(
    world: World, roles: list[str], ask_first: list[str], asked: list[str]
) -> None:
    world.rules["approvers"] = {"roles": roles, "ask_first": ask_first}
    opened = open_request(world)
    assert sorted(opened.approvals) == asked
    approval_subject = "Approval needed: jan@registry.example asks to join the ccTLD security list for .nl [#1]"
    assert summary(opened.sent) == sorted(
        [
            *[(a, approval_subject) for a in asked],
            (SECRETARIAT, "New request #1: jan@registry.example for .nl"),
            (REQUESTER, "Your request to join the ccTLD security list for .nl [#1]"),
        ]
    )
    copy = body(one(opened.sent, SECRETARIAT))
    assert [ln.strip()[2:] for ln in copy.splitlines() if ln.startswith("  - ")] == asked
    assert [a["email"] for a in request(world)["approvers"]] == asked
    for address in asked:
        role = "administrative" if address == NL_ADMIN else "technical"
        assert f"lists {address} as the {role} contact of .nl" in flat(opened.approvals[address])


def test_a_contact_of_a_role_not_configured_cannot_decide(world: World) -> None:
    # Only administrative contacts decide: the technical contact has no token, and a mail from it to the
    # administrative contact's token address is somebody else's answer.
    world.rules["approvers"] = {"roles": ["administrative"], "ask_first": ["administrative"]}
    opened = open_request(world)
    world.deliver(client_reply("apple-mail", opened.approvals[NL_ADMIN].message, TECH_FROM, "APPROVE"))
    world.run_once()
    sent = world.sent()
    assert_undecided(world, sent)
    assert subject(one(sent, NL_TECH)) == "Your answer could not be accepted"
    assert REQUESTER not in by_rcpt(sent) and NL_ADMIN not in by_rcpt(sent)


@pytest.mark.parametrize("subject_line", ["Join .рф please", "subscribe XN--P1AI"])
def test_idn_cctld_end_to_end(world: World, subject_line: str) -> None:
    opened = open_request(world, sender="Ivan Petrov <ivan@cctld.example>", subject_line=subject_line)
    assert sorted(opened.approvals) == ["ru-adm@cctld.ru", "ru-tech@tcinet.ru"]
    approval = opened.approvals["ru-adm@cctld.ru"]
    assert subject(approval) == (
        "Approval needed: ivan@cctld.example asks to join the ccTLD security list for .рф (xn--p1ai) [#1]"
    )
    assert "as the administrative contact of .рф (xn--p1ai) (Coordination Center for TLD RU)" in flat(approval)
    world.deliver(client_reply("gmail", approval.message, "CC RU <ru-adm@cctld.ru>", "APPROVE"))
    world.run_once()
    sent = world.sent()
    assert body(one(sent, COMMAND_ADDRESS)).splitlines()[0] == "join address=ivan@cctld.example digest=no"
    assert subject(one(sent, "ivan@cctld.example")) == (
        "Approved: your request to join the ccTLD security list for .рф (xn--p1ai) [#1]"
    )
    assert subject(one(sent, "ru-tech@tcinet.ru")) == "Decided: ivan@cctld.example for .рф (xn--p1ai) [#1]"
    data = request(world)
    assert (data["cctld"], data["state"], data["decided_by"]) == ("xn--p1ai", "approved", "ru-adm@cctld.ru")


def test_one_address_for_both_roles_gets_one_approval_request(world: World) -> None:
    opened = open_request(world, subject_line="subscribe .fi")
    fi = "firootadmin@traficom.fi"
    assert [c.rcpt_tos for c in opened.sent if c.message["Reply-To"] and c.rcpt_tos != [REQUESTER]] == [[fi]]
    assert list(opened.approvals) == [fi]
    assert f"lists {fi} as the administrative and technical contact of .fi" in flat(opened.approvals[fi])
    assert [(a["email"], a["roles"]) for a in request(world)["approvers"]] == [(fi, "administrative,technical")]
    copy = body(one(opened.sent, SECRETARIAT))
    assert [ln for ln in copy.splitlines() if ln.startswith("  - ")] == [f"  - {fi}"]
    world.deliver(client_reply("outlook", opened.approvals[fi].message, f"Domain Names <{fi}>", "APPROVE"))
    world.run_once()
    sent = world.sent()
    assert summary(sent) == sorted(
        [
            (COMMAND_ADDRESS, ""),
            (REQUESTER, "Approved: your request to join the ccTLD security list for .fi [#1]"),
            (SECRETARIAT, "APPROVE: jan@registry.example for .fi [#1]"),
            (fi, "Recorded: your APPROVE for jan@registry.example (.fi) [#1]"),
        ]
    )


def test_mixed_case_iana_address_is_written_as_iana_spells_it_and_answers_in_lower_case(world: World) -> None:
    opened = open_request(world, subject_line="subscribe .jo")
    admin, tech = "AdminCCtld@modee.gov.jo", "TechCCtld@modee.gov.jo"
    approvals = [c for c in opened.sent if c.message["Reply-To"] and c.rcpt_tos != [REQUESTER]]
    assert sorted(c.rcpt_tos[0] for c in approvals) == [admin, tech]  # IANA's spelling on the envelope
    assert sorted(str(c.message["To"]) for c in approvals) == [admin, tech]
    world.deliver(
        client_reply(
            "gmail", opened.approvals[admin.lower()].message, "Jordan Admin <admincctld@modee.gov.jo>", "APPROVE"
        )
    )
    world.run_once()
    sent = world.sent()
    assert body(one(sent, COMMAND_ADDRESS)).splitlines()[0] == "join address=jan@registry.example digest=no"
    told = one(sent, tech)
    assert told.rcpt_tos == [tech]
    data = request(world)
    assert (data["state"], data["decided_by"]) == ("approved", admin)
    assert f"By: {admin} (mail)" in flat(one(sent, SECRETARIAT))


# --- one decision, and answers that are no decision yet ---------------------------------------------------


def test_first_valid_decision_wins_and_later_replies_are_told_who_decided(world: World) -> None:
    opened = open_request(world)
    world.clock.advance(hours=2)
    # Both answer in the same minute: the first one processed decides.
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"))
    world.deliver(client_reply("outlook", opened.approvals[NL_TECH].message, TECH_FROM, "DENY\nUnknown to me."))
    world.run_once()
    sent = world.sent()
    assert len([c for c in sent if c.rcpt_tos == [COMMAND_ADDRESS]]) == 1
    tech_mails = sorted(subject(c) for c in by_rcpt(sent)[NL_TECH])
    assert tech_mails == [
        "Already decided: jan@registry.example for .nl [#1]",
        "Decided: jan@registry.example for .nl [#1]",
    ]
    already = next(c for c in by_rcpt(sent)[NL_TECH] if subject(c).startswith("Already"))
    assert "was already decided: APPROVE by admin@sidn.nl on 2026-11-26 11:00 UTC" in flat(already)
    assert "Your answer changes nothing" in flat(already)
    # A day later the decider answers again, changing their mind: nothing changes either.
    world.clock.advance(days=1)
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "DENY"))
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [(NL_ADMIN, "Already decided: jan@registry.example for .nl [#1]")]
    data = request(world)
    assert (data["state"], data["decision"], data["decided_by"]) == ("approved", "APPROVE", NL_ADMIN)
    assert audit_actions(world).count("request-decided") == 1
    assert audit_actions(world).count("reply-after-decision") == 2


@pytest.mark.parametrize(
    "client, text, why",
    [
        ("outlook", "approved?", "the first line of your reply was 'approved?'"),
        ("gmail", "", "your reply contained no new text above the quoted message"),
        ("iphone-qp", "Yes, approve.", "the first line of your reply was 'Yes, approve.'"),
    ],
)
def test_unclear_reply_gets_a_clarification_and_a_later_clear_reply_decides(
    world: World, client: str, text: str, why: str
) -> None:
    opened = open_request(world)
    reply = client_reply(client, opened.approvals[NL_ADMIN].message, ADMIN_FROM, text)
    world.deliver(reply)
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [(NL_ADMIN, "Please answer APPROVE or DENY: jan@registry.example for .nl [#1]")]
    clarify = sent[0].message
    assert clarify["Reply-To"] == opened.token_address(NL_ADMIN)  # the same personal reply address
    reply_id = email.message_from_bytes(reply)["Message-ID"]
    assert clarify["In-Reply-To"] == reply_id
    assert f"We could not read a decision from it: {why}." in flat(sent[0])
    assert "The request is still open." in flat(sent[0])
    assert_undecided(world, sent)
    assert [a["state"] for a in request(world)["approvers"]] == ["asked", "asked"]

    # The approver answers the clarification, as clients do, with a clear first line.
    world.clock.advance(hours=1)
    world.deliver(client_reply(client, clarify, ADMIN_FROM, "APPROVE"))
    world.run_once()
    sent = world.sent()
    assert body(one(sent, COMMAND_ADDRESS)).splitlines()[0] == "join address=jan@registry.example digest=no"
    assert request(world)["decided_by"] == NL_ADMIN


def test_requester_who_is_an_iana_contact_is_not_asked_to_approve_themselves(world: World) -> None:
    opened = open_request(world, sender=TECH_FROM)
    assert list(opened.approvals) == [NL_ADMIN]
    assert NL_TECH in by_rcpt(opened.sent)  # their acknowledgement, nothing more
    assert [subject(c) for c in by_rcpt(opened.sent)[NL_TECH]] == [
        "Your request to join the ccTLD security list for .nl [#1]"
    ]
    assert [a["email"] for a in request(world)["approvers"]] == [NL_ADMIN]


def test_requester_who_is_the_only_iana_contact_leaves_the_decision_to_the_secretariat(world: World) -> None:
    fi = "firootadmin@traficom.fi"
    opened = open_request(world, sender=f"Domain Names <{fi}>", subject_line="subscribe .fi")
    assert opened.approvals == {}
    copy = flat(one(opened.sent, SECRETARIAT))
    assert (
        "The requester is the only IANA contact of this ccTLD who may approve: nobody was asked. "
        "Decide with: secirbot approve 1 or secirbot deny 1 --reason ..."
    ) in copy
    data = request(world)
    assert (data["state"], data["approvers"]) == ("pending", [])


@pytest.mark.parametrize("tell", [False, True])
def test_deny_tells_requester_and_secretariat_and_the_reason_only_if_configured(world: World, tell: bool) -> None:
    world.rules["decisions"] = {"tell_requester_deny_reason": tell}
    opened = open_request(world)
    world.deliver(client_reply("iso-8859-1", opened.approvals[NL_TECH].message, TECH_FROM, f"DENY\n{REASON}"))
    world.run_once()
    sent = world.sent()
    assert COMMAND_ADDRESS not in by_rcpt(sent)
    requester_mail = body(one(sent, REQUESTER))
    assert "was not approved" in " ".join(requester_mail.split())
    assert (f"  | {REASON}" in requester_mail.splitlines()) is tell
    assert ("The reason given:" in requester_mail) is tell
    secretariat = one(sent, SECRETARIAT)
    assert subject(secretariat) == "DENY: jan@registry.example for .nl [#1]"
    assert f"  | {REASON}" in body(secretariat).splitlines()
    assert subject(one(sent, NL_ADMIN)) == "Decided: jan@registry.example for .nl [#1]"
    assert request(world)["state"] == "denied"


# --- what the mails say -------------------------------------------------------------------------------


def test_secretariat_copy_carries_no_usable_token(world: World) -> None:
    opened = open_request(world)
    copy = one(opened.sent, SECRETARIAT)
    assert copy.message["Reply-To"] is None
    assert b"join+" not in copy.data.lower()
    for approval in opened.approvals.values():
        token = str(approval.message["Reply-To"]).split("+", 1)[1].split("@")[0]
        assert token.encode() not in copy.data.lower()
    # Replying APPROVE to it, as a Secretary might, decides nothing: it gets the help text.
    world.deliver(
        new_message(
            f"Secretariat <{SECRETARIAT}>",
            str(copy.message["From"]),
            "Re: " + subject(copy),
            "APPROVE\n",
            In_Reply_To=str(copy.message["Message-ID"]),
        )
    )
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [(SECRETARIAT, "About join@lists.example.org: how to ask to join the ccTLD security list")]
    assert "did not reach us through the personal reply address" in flat(sent[0])
    assert_undecided(world, sent)


def test_approval_request_says_who_asks_what_for_and_how_to_answer(world: World) -> None:
    world.rules["requests"] = {**world.rules["requests"], "claim_max_chars": 200}
    words = (
        "Name: Jan Jansen\nRole: CSIRT lead\nAPPROVE\n  DENY.\n"
        + "I handle incidents for the registry and have done so for many years now. " * 5
        + "\nTAIL-NOT-RELAYED\n"
    )
    opened = open_request(world, text=words)
    approval = opened.approvals[NL_ADMIN]
    text = body(approval)
    lines = text.splitlines()
    assert lines[0] == REPLY_MARKER
    assert subject(approval) == (
        "Approval needed: jan@registry.example asks to join the ccTLD security list for .nl [#1]"
    )
    assert "Dear Roelof Meijer," in lines
    assert "  Address:  jan@registry.example" in lines and "  Name:     Jan Jansen" in lines
    said = flat(approval)
    assert "In their own words - NOT verified, exactly as they wrote it, shortened to 200 characters:" in said
    relayed = [ln for ln in lines if ln.startswith("  | ")]
    # Their words, every line marked, cut to claim_max_chars with a mark; a line that is only a decision
    # word is labelled as theirs; nothing of them outside the marked lines.
    expected = "\n".join(ln.rstrip() for ln in words.strip().splitlines())[:200].strip() + " [...]"
    expected = expected.replace("\nAPPROVE\n", "\nAPPROVE (their words)\n")
    expected = expected.replace("  DENY.\n", "  DENY. (their words)\n")
    assert "\n".join(ln[4:] for ln in relayed) == "\n".join(ln.rstrip() for ln in expected.splitlines())
    assert "TAIL-NOT-RELAYED" not in text
    assert not [ln for ln in lines if ln.strip() in ("APPROVE", "DENY.") and not ln.startswith("  | ")]
    assert "as a member for .nl" in said and "for .nl" in subject(approval)
    assert "It is an interim list" in said
    assert "HOW TO ANSWER: reply to this message and put one word on the first line of your reply:" in said
    assert "APPROVE if this person works on the security of .nl" in said
    assert "DENY if not (you may give a reason on the lines below the word)" in said
    assert "Please reply from admin@sidn.nl itself" in said
    assert "This request expires on 2026-12-10 09:00 UTC." in said
    assert approval.message["Reply-To"] == opened.token_address(NL_ADMIN)
    assert approval.message["Auto-Submitted"] == "auto-generated"
    # The Secretariat's copy relays the same marked words.
    assert [ln for ln in body(one(opened.sent, SECRETARIAT)).splitlines() if ln.startswith("  | ")] == relayed
