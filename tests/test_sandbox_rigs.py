"""Proof that the test rigs behave like the real servers they stand for (secirbot/sandbox)."""

from __future__ import annotations

import smtplib
import socket
import ssl
import time

import imapclient
import pytest

from secirbot.sandbox.dovecot import Dovecot, MailUser, PoolExhausted
from secirbot.sandbox.ports import free_port, free_ports
from secirbot.sandbox.procs import group_pids
from secirbot.sandbox.smtp_sink import SmtpSink


def raw_mail(subject: str, body: str = "hello") -> bytes:
    return (
        f"From: alice@example.org\r\nTo: join@lists.example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.org>\r\n\r\n{body}\r\n"
    ).encode()


def send(sink: SmtpSink, rcpts: list[str], data: bytes) -> dict:
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        return smtp.sendmail("bot@example.org", rcpts, data)


# -- ports -------------------------------------------------------------------------------------


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))


# -- Dovecot -----------------------------------------------------------------------------------


def test_append_returns_uid_and_messages_are_byte_identical(mailbox: MailUser) -> None:
    first, second = raw_mail("one"), raw_mail("two", "body with\r\n.leading dot")
    assert mailbox.append(first) == 1
    assert mailbox.append(second) == 2
    assert mailbox.messages() == [(1, first), (2, second)]
    # messages() peeks: nothing became \Seen behind the test's back.
    assert mailbox.flags() == {1: (), 2: ()}


def test_append_creates_folder_and_keeps_flags(mailbox: MailUser) -> None:
    uid = mailbox.append(raw_mail("done"), folder="Processed", flags=(imapclient.SEEN,))
    assert uid == 1
    assert set(mailbox.folders()) == {"INBOX", "Processed"}
    assert mailbox.flags("Processed") == {1: (imapclient.SEEN,)}
    assert mailbox.messages("INBOX") == []


def test_each_test_gets_a_fresh_mailbox(dovecot: Dovecot, mailbox: MailUser) -> None:
    other = dovecot.new_user()
    assert other.name != mailbox.name
    mailbox.append(raw_mail("mine"))
    assert other.messages() == []


def test_tls_login_verifies_against_ca_file(dovecot: Dovecot, mailbox: MailUser) -> None:
    client = mailbox.client(tls=True)
    try:
        assert client.has_capability("IDLE") and client.has_capability("MOVE")
        assert client.has_capability("UIDPLUS")
    finally:
        client.logout()
    # The certificate also names localhost.
    ctx = ssl.create_default_context(cafile=str(dovecot.ca_file))
    with imapclient.IMAPClient("localhost", port=dovecot.imaps_port, ssl=True, ssl_context=ctx) as c:
        c.login(mailbox.name, mailbox.password)
    # And verification is real: without the rig's CA the same server is refused.
    with pytest.raises(ssl.SSLCertVerificationError):
        imapclient.IMAPClient(
            dovecot.host, port=dovecot.imaps_port, ssl=True, ssl_context=ssl.create_default_context(), timeout=5
        )


def test_plain_port_offers_starttls(dovecot: Dovecot, mailbox: MailUser) -> None:
    client = imapclient.IMAPClient(dovecot.host, port=dovecot.imap_port, ssl=False, timeout=5)
    try:
        client.starttls(dovecot.ssl_context())
        client.login(mailbox.name, mailbox.password)
    finally:
        client.logout()


def test_idle_sees_new_mail_quickly(mailbox: MailUser) -> None:
    client = mailbox.client()
    try:
        client.select_folder("INBOX")
        client.idle()
        mailbox.append(raw_mail("pushed"))
        start = time.monotonic()
        responses = client.idle_check(timeout=5)
        client.idle_done()
    finally:
        client.logout()
    assert (1, b"EXISTS") in responses
    assert time.monotonic() - start < 3


def test_restart_keeps_ports_and_mail(dovecot: Dovecot, mailbox: MailUser) -> None:
    mailbox.append(raw_mail("survivor"))
    ports = dovecot.imap_port, dovecot.imaps_port
    dovecot.restart()
    assert (dovecot.imap_port, dovecot.imaps_port) == ports
    assert mailbox.messages() == [(1, raw_mail("survivor"))]


def test_kill_drops_connected_clients(dovecot: Dovecot, mailbox: MailUser) -> None:
    mailbox.append(raw_mail("before kill"))
    client = mailbox.client()
    client.select_folder("INBOX")
    try:
        dovecot.kill()
        assert not dovecot.running
        with pytest.raises((imapclient.exceptions.IMAPClientAbortError, OSError)):
            client.noop()
    finally:
        dovecot.start()
        client.shutdown()
    assert [uid for uid, _ in mailbox.messages()] == [1]


def test_change_uidvalidity_keeps_messages(mailbox: MailUser) -> None:
    mailbox.append(raw_mail("a"))
    before = mailbox.uidvalidity()
    selected = mailbox.client()
    selected.select_folder("INBOX")
    after = mailbox.change_uidvalidity()
    assert after != before and mailbox.uidvalidity() == after
    assert mailbox.messages() == [(1, raw_mail("a"))]
    # Dovecot ends a session whose selected folder changed UIDVALIDITY under it.
    with pytest.raises(imapclient.exceptions.IMAPClientAbortError):
        selected.noop()
    selected.shutdown()


def test_reset_uids_renumbers_and_changes_uidvalidity(mailbox: MailUser) -> None:
    for subject in ("a", "b", "c"):
        mailbox.append(raw_mail(subject), folder="Processed")
    with mailbox.session() as c:
        c.select_folder("Processed")
        c.delete_messages([1, 2])
        c.expunge()
    # After a live change the per-user counter may hand out the very same value again.
    before = mailbox.change_uidvalidity("Processed")
    after = mailbox.reset_uids("Processed")
    assert after != before
    assert mailbox.messages("Processed") == [(1, raw_mail("c"))]


def test_recreate_folder_empties_it_with_new_uidvalidity(mailbox: MailUser) -> None:
    mailbox.append(raw_mail("old"), folder="Failed")
    before = mailbox.uidvalidity("Failed")
    assert mailbox.recreate_folder("Failed") != before
    assert mailbox.messages("Failed") == []
    with pytest.raises(ValueError):
        mailbox.recreate_folder("INBOX")


def test_pool_exhaustion_and_close_leave_nothing_behind() -> None:
    with Dovecot(pool_size=1) as server:
        user = server.new_user()
        with pytest.raises(PoolExhausted, match="pool_size"):
            server.new_user()
        # A logged-in session with a selected folder outlives a master-only SIGTERM.
        client = user.client()
        client.select_folder("INBOX")
        assert server._proc is not None
        pgid, root = server._proc.pid, server.root
    assert not group_pids(pgid)
    assert not root.exists()
    client.shutdown()


# -- SMTP sink ---------------------------------------------------------------------------------


def test_sink_captures_envelope_and_message(smtp_sink: SmtpSink) -> None:
    data = raw_mail("captured", "line\r\n.dotted line")
    assert send(smtp_sink, ["Join@Lists.Example.org", "x@example.net"], data) == {}
    (got,) = smtp_sink.wait_for(1)
    assert got.mail_from == "bot@example.org"
    assert got.rcpt_tos == ["Join@Lists.Example.org", "x@example.net"]
    assert got.data == data
    assert got.message["Subject"] == "captured"
    assert got.message.get_content() == "line\n.dotted line\n"
    assert not got.tls and got.login is None
    smtp_sink.clear()
    assert smtp_sink.messages == []


def test_sink_fail_next_then_accepts(smtp_sink: SmtpSink) -> None:
    smtp_sink.fail_next(2)
    for _ in range(2):
        with pytest.raises(smtplib.SMTPDataError) as err:
            send(smtp_sink, ["a@example.org"], raw_mail("retry"))
        assert err.value.smtp_code == 451
    send(smtp_sink, ["a@example.org"], raw_mail("retry"))
    assert len(smtp_sink.wait_for(1)) == 1
    assert smtp_sink.attempts == 3


def test_sink_rejects_recipient_case_insensitively(smtp_sink: SmtpSink) -> None:
    smtp_sink.reject_recipient("Gone@Example.org")
    refused = send(smtp_sink, ["gone@example.ORG", "ok@example.org"], raw_mail("partial"))
    assert refused == {"gone@example.ORG": (550, b"5.1.1 no such user")}
    assert smtp_sink.wait_for(1)[0].rcpt_tos == ["ok@example.org"]
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(smtp_sink, ["GONE@example.org"], raw_mail("none"))
    smtp_sink.reset_failures()
    send(smtp_sink, ["gone@example.org"], raw_mail("back"))
    assert len(smtp_sink.wait_for(2)) == 2


def test_sink_drops_connection_at_data(smtp_sink: SmtpSink) -> None:
    smtp_sink.drop_connections(1)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(smtp_sink, ["a@example.org"], raw_mail("dropped"))
    send(smtp_sink, ["a@example.org"], raw_mail("second try"))
    assert [c.message["Subject"] for c in smtp_sink.wait_for(1)] == ["second try"]


def test_sink_wait_for_reports_what_arrived(smtp_sink: SmtpSink) -> None:
    send(smtp_sink, ["a@example.org"], raw_mail("only one"))
    with pytest.raises(AssertionError, match=r"got 1.*only one"):
        smtp_sink.wait_for(2, timeout=0.2)


def test_sink_stop_refuses_and_start_comes_back_on_same_port(smtp_sink: SmtpSink) -> None:
    port = smtp_sink.port
    smtp_sink.stop()
    with pytest.raises(ConnectionRefusedError):
        send(smtp_sink, ["a@example.org"], raw_mail("refused"))
    smtp_sink.start()
    assert smtp_sink.port == port
    send(smtp_sink, ["a@example.org"], raw_mail("back"))
    assert len(smtp_sink.wait_for(1)) == 1


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_sink_tls_and_auth(dovecot: Dovecot, security: str) -> None:
    certs = dovecot.certs  # valid for 127.0.0.1; the sink may reuse them
    with SmtpSink(
        security=security,
        tls_cert=certs.cert_file,
        tls_key=certs.key_file,  # type: ignore[arg-type]
        credentials=("bot", "s3cret"),
    ) as sink:
        ctx = ssl.create_default_context(cafile=str(dovecot.ca_file))
        if security == "tls":
            smtp = smtplib.SMTP_SSL(sink.host, sink.port, context=ctx, timeout=5)
        else:
            smtp = smtplib.SMTP(sink.host, sink.port, timeout=5)
            smtp.starttls(context=ctx)
        with smtp:
            with pytest.raises(smtplib.SMTPSenderRefused):
                smtp.sendmail("bot@example.org", ["a@example.org"], raw_mail("no auth"))
            smtp.login("bot", "s3cret")
            smtp.sendmail("bot@example.org", ["a@example.org"], raw_mail("secure"))
        (got,) = sink.wait_for(1)
    assert got.tls and got.login == "bot"
