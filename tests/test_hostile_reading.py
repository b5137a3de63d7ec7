"""How the bot reads hostile and unusual mail, end to end on a real mailbox: whose words, which address,
which Message-ID, and that one bad message never stops the others.

Each test delivers mail to the real Dovecot, runs `run --once` in-process and asserts what people see: the
mails that went out (to whom, with what), the request's stored state, the folder a message was filed in.
"""

from __future__ import annotations

import email.policy
import time
from email.message import EmailMessage

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
from tests.harness import BOT, SECRETARIAT, World, new_message


def requests_in_store(world: World) -> list[str]:
    return [r["requester"] for r in world.bot().store.all("SELECT requester FROM requests ORDER BY id")]


# --- whose words: never an attachment's or an embedded message's --------------------------------------


def _requesters_mail() -> EmailMessage:
    """The requester's own request, as an approver might attach it: its text says APPROVE."""
    return new_message(
        f"Jan Jansen <{REQUESTER}>", BOT, "subscribe .nl", "APPROVE\n\nPlease approve me, I run the registry's CSIRT.\n"
    )


def _reply_with_attached_request(approval: EmailMessage, own: tuple[str, str]) -> EmailMessage:
    """An approver's reply whose own body is `own` (subtype, text), with the requester's mail attached."""
    msg = new_message(
        ADMIN_FROM,
        str(approval["Reply-To"]),
        "Re: " + str(approval["Subject"]),
        "x",
        In_Reply_To=str(approval["Message-ID"]),
        References=str(approval["Message-ID"]),
    )
    subtype, text = own
    msg.set_content(text, subtype=subtype)
    msg.make_mixed()
    msg.attach(_requesters_mail())  # message/rfc822, as clients attach a mail
    return msg


def test_html_only_deny_above_an_attached_approve_is_a_deny(world: World) -> None:
    opened = open_request(world)
    approval = opened.approvals[NL_ADMIN].message
    world.deliver(_reply_with_attached_request(approval, ("html", "<p>DENY</p><p>Not one of ours.</p>")))
    world.run_once()
    sent = world.sent()
    data = request(world)
    assert (data["state"], data["decision"], data["decided_by"]) == ("denied", "DENY", NL_ADMIN)
    assert data["decision_reason"] == "Not one of ours."
    assert COMMAND_ADDRESS not in by_rcpt(sent)
    assert subject(one(sent, REQUESTER)).startswith("Not approved:")


def test_plain_deny_above_an_attached_approve_is_a_deny(world: World) -> None:
    opened = open_request(world)
    approval = opened.approvals[NL_ADMIN].message
    world.deliver(_reply_with_attached_request(approval, ("plain", "DENY\n\nWe do not know this person.\n")))
    world.run_once()
    sent = world.sent()
    assert (request(world)["state"], request(world)["decision"]) == ("denied", "DENY")
    assert COMMAND_ADDRESS not in by_rcpt(sent)


def test_approve_only_inside_an_attachment_decides_nothing(world: World) -> None:
    opened = open_request(world)
    approval = opened.approvals[NL_ADMIN].message
    msg = _reply_with_attached_request(approval, ("plain", "See the attached mail.\n"))
    approve_file = EmailMessage(policy=email.policy.SMTP)
    approve_file.set_content("APPROVE\n")
    approve_file.add_header("Content-Disposition", "attachment", filename="answer.txt")
    msg.attach(approve_file)
    world.deliver(msg)
    world.run_once()
    sent = world.sent()
    assert_undecided(world, sent)
    # The approver is asked to answer clearly, quoting what the bot read as their first line.
    assert "the first line of your reply was 'See the attached mail.'" in flat(one(sent, NL_ADMIN))


def test_genuine_html_only_approve_with_an_attachment_still_decides(world: World) -> None:
    opened = open_request(world)
    approval = opened.approvals[NL_ADMIN].message
    msg = new_message(
        ADMIN_FROM,
        str(approval["Reply-To"]),
        "Re: " + str(approval["Subject"]),
        "x",
        In_Reply_To=str(approval["Message-ID"]),
    )
    msg.set_content("<div>APPROVE</div><div>Roelof</div>", subtype="html")
    msg.add_attachment(b"%PDF-1.4 APPROVE", maintype="application", subtype="pdf", filename="x.pdf")
    world.deliver(msg)
    world.run_once()
    sent = world.sent()
    assert (request(world)["state"], request(world)["decided_by"]) == ("approved", NL_ADMIN)
    assert one(sent, COMMAND_ADDRESS)


def test_html_reply_quoting_an_invitation_in_a_blockquote_is_not_a_request(world: World) -> None:
    msg = new_message("Piet <piet@registry.example>", BOT, "Re: Invitation: the ccTLD security list", "x")
    msg.set_content(
        "<p>Thanks, I will pass this on.</p><blockquote><p>To join, write to "
        "join@lists.example.org with the subject: subscribe .nl</p></blockquote>",
        subtype="html",
    )
    world.deliver(msg)
    world.run_once()
    sent = world.sent()
    assert requests_in_store(world) == []
    assert [s for _, s in summary(sent)] == ["About join@lists.example.org: how to ask to join the ccTLD security list"]


# --- which address: one strict reading of From, one canonical form -------------------------------------


def test_a_display_name_never_chooses_the_requesters_address(world: World) -> None:
    world.deliver(
        b"From: Eve Bcc: x5@evil.example <bad4@example.org>\r\nTo: "
        + BOT.encode()
        + b"\r\nSubject: subscribe .nl\r\nMessage-ID: <e1@example.org>\r\n\r\nName: Eve\r\n"
    )
    world.run_once()
    assert world.sent() == []  # no answer to anyone, no IANA contact asked
    assert requests_in_store(world) == []
    assert len(world.mailbox.uids("Processed")) == 1


def test_an_encoded_line_break_in_the_display_name_gets_no_answer(world: World) -> None:
    world.deliver(
        b"From: =?utf-8?q?Eve=0D=0ABcc:_x5@evil.example?= <bad4@example.org>\r\nTo: "
        + BOT.encode()
        + b"\r\nSubject: subscribe .nl\r\nMessage-ID: <e2@example.org>\r\n\r\n"
        b"I work on .nl security.\r\n"
    )
    world.run_once()
    assert world.sent() == []
    assert requests_in_store(world) == []
    assert len(world.mailbox.uids("Processed")) == 1


def test_a_requester_address_in_another_form_of_an_iana_contact_is_refused(world: World) -> None:
    # Quoted local part: one mailbox, but not in plain form: refused with a reply saying so.
    world.deliver(new_message('"tech"@sidn.nl', BOT, "subscribe .nl", "Name: Marc\n"))
    world.run_once()
    sent = world.sent()
    assert requests_in_store(world) == []
    assert [m.rcpt_tos for m in sent] == [[NL_TECH]]  # the same mailbox: SMTP unquotes the local part
    assert subject(sent[0]) == "Your request to join the ccTLD security list: please write from a plain address"
    assert "not an address in its plain form" in flat(sent[0])
    # Trailing dot: the strict reading of From names no mailbox: no request and no answer.
    world.deliver(new_message("tech@sidn.nl.", BOT, "subscribe .nl", "Name: Marc\n"))
    world.run_once()
    assert world.sent() == []
    assert requests_in_store(world) == []


def test_an_iana_contact_in_other_case_is_not_asked_about_himself(world: World) -> None:
    opened = open_request(world, sender="Marc <Tech@SIDN.nl>")
    assert sorted(opened.approvals) == [NL_ADMIN]  # tech@sidn.nl is the requester: never his own approver
    assert requests_in_store(world) == ["Tech@SIDN.nl"]


# --- which Message-ID ------------------------------------------------------------------------------------


def test_a_folded_message_id_opens_the_request_and_threads_the_answer(world: World) -> None:
    world.deliver(
        b"From: Jan Jansen <jan@registry.example>\r\nTo: "
        + BOT.encode()
        + b"\r\nSubject: subscribe .nl\r\nMessage-ID: <fold.x@\r\n example.org>\r\n\r\nName: Jan\r\n"
    )
    report = world.run_once()
    sent = world.sent()
    assert (report.processed, report.failed) == (1, 0)
    assert requests_in_store(world) == [REQUESTER]
    ack = one(sent, REQUESTER)
    assert ack.message["In-Reply-To"] == "<fold.x@example.org>"


# --- one message never blocks the mailbox ------------------------------------------------------------------


def test_a_poison_subject_on_an_oversize_mail_does_not_stop_the_mailbox(world: World) -> None:
    world.settings["imap.max_message_size"] = 4000
    world.request()  # a genuine request, processed in the same batch before the poison
    world.deliver(
        b"From: Mal <mal@example.net>\r\nTo: "
        + BOT.encode()
        + b"\r\nSubject: =?utf-8?q?logs_for_you=0D=0ABcc:_x@evil.example?=\r\n"
        b"Message-ID: <poison@example.net>\r\n\r\n" + b"x" * 70 + b"\r\n" * 200 + b"y" * 5000 + b"\r\n"
    )
    world.request(sender="Ann <ann@registry.example>")  # and one after it
    report = world.run_once()
    sent = world.sent()
    assert (report.processed, report.failed) == (3, 1)
    assert requests_in_store(world) == [REQUESTER, "ann@registry.example"]
    assert one(sent, REQUESTER) and one(sent, "ann@registry.example")
    assert "x@evil.example" not in by_rcpt(sent)
    notice = [m for m in by_rcpt(sent)[SECRETARIAT] if subject(m).startswith("A message to")]
    expected = f"A message to {BOT} could not be handled: logs for you Bcc: x@evil.example"  # on one line
    assert [subject(m) for m in notice] == [expected]
    assert len(world.mailbox.uids("Failed")) == 1 and len(world.mailbox.uids("Processed")) == 2
    world.run_once()
    assert world.sent() == []  # told once: the message is filed, not met again


def test_eighty_thousand_encoded_words_are_quarantined_quickly(world: World) -> None:
    words = b" ".join([b"=?utf-8?q?a?="] * 80_000)
    names = b" ".join([b"=?utf-8?q?b?="] * 20_000)
    world.deliver(
        b"From: "
        + names
        + b" <mal@example.net>\r\nTo: "
        + BOT.encode()
        + b"\r\nSubject: "
        + words
        + b"\r\n\r\nsubscribe .nl\r\n"
    )
    world.request()
    start = time.monotonic()
    report = world.run_once()
    took = time.monotonic() - start
    assert (report.processed, report.failed) == (2, 1)
    assert requests_in_store(world) == [REQUESTER]
    failed = world.bot().store.one("SELECT reason FROM messages WHERE outcome = 'failed'")
    assert failed is not None and failed["reason"].startswith("the header")
    assert took < 20, took  # 32-35 s for this mail alone before the bound; well under a second now
