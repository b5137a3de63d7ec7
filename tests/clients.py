"""Replies to an approval request written the way real mail clients write them.

Each client starts from a real message in tests/messages (see README.md there) and keeps what that client
does: its MIME layout, charset and transfer encoding (ISO-8859-1, quoted-printable, format=flowed), where
it puts the replier's text, and how it quotes the original - Outlook's header block without '>', Gmail's
"On ... wrote:" with '>' lines and a gmail_quote blockquote, Apple Mail's quoted attribution, the iPhone's
"Sent from my iPhone", Thunderbird's bottom-posting, Outlook.com's HTML-only <hr id="stopSpelling">. The
quoted original is the real approval request the bot sent (with its marker, its APPROVE and DENY lines),
so a test also shows that what a client quotes never decides anything.

Only the decoded texts are edited; the stdlib re-encodes each part with the charset and transfer encoding
it had (falling back to UTF-8 only where the sample's charset cannot hold the text, as a client would).
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import html
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from tests.harness import BOT, START
from tests.mailedit import Edit, rewrite, swap

MESSAGES = Path(__file__).parent / "messages"
BOT_NAME = "ccTLD security list admission"


# client -> one line about what it shows
CLIENTS = {
    "outlook": "Outlook, ISO-8859-1 multipart: header block and original without '>' (top-posted)",
    "gmail": "Gmail web, multipart: 'On ... wrote:' + '>' lines, gmail_quote blockquote",
    "apple-mail": "Apple Mail, text/plain: '> On ..., wrote:' attribution inside the quote",
    "iphone-qp": "iPhone Mail, quoted-printable: 'Sent from my iPhone', attribution wrapped by QP",
    "iso-8859-1": "Apple Mail, text/plain; charset=iso-8859-1",
    "thunderbird-flowed": "Thunderbird, format=flowed, bottom-posted below the '>' quote",
    "html-only-outlook-com": "Outlook.com (Hotmail), text/html only: <hr id=stopSpelling> header block",
    "html-only-thunderbird": "Thunderbird, text/html only: moz-cite-prefix + blockquote",
}


def client_reply(
    client: str, original: EmailMessage, sender: str, text: str, *, to: str | None = None, date: str | None = None
) -> bytes:
    """`sender`'s reply to `original` (an approval request as the sink captured it), as `client` writes
    it, with `text` as the replier's own words. Sent to the original's Reply-To unless `to` is given."""
    builder = _BUILDERS[client]
    raw = builder(original, text)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    prefix = "RE: " if client.startswith(("outlook", "html-only-outlook")) else "Re: "
    headers = {
        "From": sender,
        "To": to or str(original["Reply-To"]),
        "Subject": prefix + str(original["Subject"]),
        "Date": date or email.utils.format_datetime(START),
        "Message-ID": email.utils.make_msgid(domain=sender.rsplit("@", 1)[1].rstrip(">")),
        "In-Reply-To": str(original["Message-ID"]),
        "References": str(original["Message-ID"]),
    }
    for name in (*headers, "Cc", "Sender", "Return-Path"):
        del msg[name]
    for name, value in headers.items():
        msg[name] = value
    return msg.as_bytes(policy=email.policy.SMTP)


def original_text(original: EmailMessage) -> str:
    return str(original.get_content()).rstrip("\n")


def quoted(text: str, mark: str = "> ") -> str:
    return "\n".join((mark + line).rstrip() for line in text.split("\n"))


def as_html(text: str) -> str:
    return html.escape(text).replace("\n", "<br>\n")


# --- the clients ---------------------------------------------------------------------------------------


def _outlook(original: EmailMessage, text: str) -> bytes:
    approver = ", ".join(original.get_all("To") or [])
    subject = str(original["Subject"])
    block = (
        f"From: {BOT_NAME} [mailto:{BOT}]\nSent: Thursday, November 26, 2026 10:00 AM\nTo: {approver}\n"
        f"Subject: {subject}"
    )
    body = original_text(original)
    plain = swap(
        ("Hello\n", f"{text}\n"),
        ("re:From: xxx@xxx\\.mailgun\\.org.*?Subject: The manager has commented on your Loop", block),
        ("re:Hi dan\\.le@example\\.com.*", f"{body}\n"),
    )
    html_block = (
        f"<b>From:</b> {BOT_NAME} [mailto:{BOT}] <br><b>Sent:</b> Thursday, November 26, 2026 10:00 AM"
        f"<br><b>To:</b> {html.escape(approver)}<br><b>Subject:</b> {html.escape(subject)}<o:p></o:p>"
    )
    html_edit = swap(
        ("Allo! Follow up MIME!", as_html(text)),
        ("re: xxx@xxx\\.mailgun\\.org \\[mailto:.*?your Loop<o:p></o:p>", " " + html_block),
        ('re:Hi <a href="mailto:dan\\.le@example\\.com">.*?Unsubscribe</a> ', as_html(body)),
    )
    return _rewrite("reply-outlook-iso8859-1.eml", plain, html_edit)


def _gmail(original: EmailMessage, text: str) -> bytes:
    attribution = f"On Thu, Nov 26, 2026 at 10:00 AM {BOT_NAME} <{BOT}> wrote:"
    body = original_text(original)
    plain = swap(
        ("Hello\n", f"{text}\n"),
        ("On Mon, Apr 2, 2012 at 6:26 PM, Megan One <xxx@gmail.com> wrote:", attribution),
        ("> Hi", quoted(body)),
    )
    html_attr = (
        f'On Thu, Nov 26, 2026 at 10:00 AM {BOT_NAME} <span dir="ltr">&lt;<a href="mailto:{BOT}">{BOT}'
        "</a>&gt;</span> wrote:"
    )
    html_edit = swap(
        ("Hello<br>", as_html(text) + "<br>"),
        ("re:On Mon, Apr 2, 2012 at 6:26 PM, Megan One <span.*?</span> wrote:", html_attr),
        ("\nHi\n", f"\n{as_html(body)}\n"),
    )
    return _rewrite("reply-gmail-web-multipart.eml", plain, html_edit)


def _apple_mail(original: EmailMessage, text: str) -> bytes:
    head = f"> On 26 Nov 2026, at 10:00, {BOT_NAME} <{BOT}> wrote:\n>\n"
    plain = swap(
        ("Hello\n", f"{text}\n"), ("re:> On 22 Aug 2015.*?> Hi there!", head + quoted(original_text(original)))
    )
    return _rewrite("reply-apple-mail-2.eml", plain)


def _iphone_qp(original: EmailMessage, text: str) -> bytes:
    plain = swap(
        ("Hello\n", f"{text}\n"),
        (
            "On Apr 3, 2012, at 4:19 PM, bob <bob@example.com> wrote:",
            f"On Nov 26, 2026, at 10:00 AM, {BOT_NAME} <{BOT}> wrote:",
        ),
        ("> Hi", quoted(original_text(original))),
    )
    return _rewrite("reply-iphone-quoted-printable.eml", plain)


def _iso_8859_1(original: EmailMessage, text: str) -> bytes:
    plain = swap(
        ("Hello\n", f"{text}\n"),
        ("On Apr 3, 2012, at 4:19 PM, bob wrote:", f"On Nov 26, 2026, at 10:00 AM, {BOT_NAME} wrote:"),
        ("> Hi", quoted(original_text(original))),
    )
    return _rewrite("reply-apple-mail-iso8859-1.eml", plain)


def _thunderbird_flowed(original: EmailMessage, text: str) -> bytes:
    # Bottom-posted: the attribution, the whole original quoted, then the replier's text.
    plain = swap(
        ("On 04/02/2012 06:26 PM, Megan One wrote:", f"On 26/11/2026 10:00, {BOT_NAME} wrote:"),
        ("re:> Hi \n", quoted(original_text(original)) + "\n"),
        ("\nHello", "\n" + text),
    )
    return _rewrite("reply-thunderbird-format-flowed.eml", plain)


def _html_only(sample: str, edits: Callable[[EmailMessage, str], Edit]) -> Callable[[EmailMessage, str], bytes]:
    def build(original: EmailMessage, text: str) -> bytes:
        source = (MESSAGES / sample).read_text(encoding="utf-8")
        msg = EmailMessage(policy=email.policy.default)
        msg["From"] = "placeholder@example.invalid"
        msg["MIME-Version"] = "1.0"
        msg.set_content(edits(original, text)(source), subtype="html", charset="utf-8", cte="quoted-printable")
        return msg.as_bytes()

    return build


def _outlook_com_edits(original: EmailMessage, text: str) -> Edit:
    header = (
        f"Date: Thu, 26 Nov 2026 10:00:00 +0000<br>Subject: {html.escape(str(original['Subject']))}<br>"
        f"From: {BOT}<br>To: {html.escape(str(original['To']))}"
    )
    return swap(
        ("Hi. I am fine.", as_html(text)),
        (
            "Date: Thu, 26 Jun 2014 13:53:45 +0400<br>Subject: Test message<br>From: abc@example.com<br>"
            "To: alex.l@example.com",
            header,
        ),
        ("re:Hello! How are you\\?.*?Sasha\\.", as_html(original_text(original))),
    )


def _thunderbird_html_edits(original: EmailMessage, text: str) -> Edit:
    return swap(
        ("Hi. I am fine.", as_html(text)),
        ("re:On 26\\.06\\.2014 14:41, Alexander L\\s+wrote:", f"On 26.11.2026 10:00, {BOT_NAME} wrote:"),
        ("re:Hello! How are you\\?.*?Sasha\\.", as_html(original_text(original))),
    )


_BUILDERS: dict[str, Callable[[EmailMessage, str], bytes]] = {
    "outlook": _outlook,
    "gmail": _gmail,
    "apple-mail": _apple_mail,
    "iphone-qp": _iphone_qp,
    "iso-8859-1": _iso_8859_1,
    "thunderbird-flowed": _thunderbird_flowed,
    "html-only-outlook-com": _html_only("html-reply-hotmail.html", _outlook_com_edits),
    "html-only-thunderbird": _html_only("html-reply-thunderbird.html", _thunderbird_html_edits),
}
assert set(_BUILDERS) == set(CLIENTS)


# --- editing a real message ----------------------------------------------------------------------------


def _rewrite(sample: str, plain: Edit | None = None, html_edit: Edit | None = None) -> bytes:
    return rewrite((MESSAGES / sample).read_bytes(), plain, html_edit)
