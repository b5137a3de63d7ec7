"""The admission procedure end to end on the real Dovecot, the SMTP sink and the local IANA servers:
request -> approval requests to the IANA contacts -> a reply -> the Mailman command and the notices."""

from __future__ import annotations

from secirbot.reports import show_request
from tests.harness import BOT, LIST, SECRETARIAT, World, reply_to


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
