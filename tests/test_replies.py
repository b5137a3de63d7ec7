"""secirbot.replies against real replies: APPROVE/DENY put where each client puts the replier's text.

The samples in tests/messages are verbatim copies of real messages (origin and licence in
tests/messages/README.md). A test edits the *decoded* body parts and lets the stdlib email API re-encode
them as they were (quoted-printable, base64, ISO-8859-1, format=flowed), so the parser sees what that
client would have sent.
"""

from __future__ import annotations

import html
import re
import textwrap
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from secirbot.message import InboundMail, parse_mail
from secirbot.replies import (
    HTML_QUOTE_SEPARATOR,
    REPLY_MARKER,
    REQUESTER_WORDS,
    Verdict,
    decision_word,
    html_to_text,
    new_text,
    normalise,
    read_decision,
    reads_as_decision,
)
from tests.mailedit import rewrite, swap

MESSAGES = Path(__file__).parent / "messages"
NO_NEW_TEXT = "your reply contained no new text above the quoted message"
BOTH = "your reply named both APPROVE and DENY"


def sample_bytes(name: str) -> bytes:
    return (MESSAGES / name).read_bytes()


def sample_text(name: str) -> str:
    return (MESSAGES / name).read_text(encoding="utf-8")


def mail_with_body(body: str, subtype: str = "plain", params: dict[str, str] | None = None) -> InboundMail:
    msg = EmailMessage()
    msg["From"] = "Registry Admin <admin@nic.example>"
    msg["To"] = "join+abcdefghijklmnopqrstuvwxyz234567@lists.example.org"
    msg["Subject"] = "Re: [SECIR] Approval request for .example"
    msg.set_content(body, subtype=subtype, charset="utf-8", params=params or {})
    return parse_mail(msg.as_bytes())


# --- real clients, top-posted and bottom-posted --------------------------------------------------------


@dataclass(frozen=True)
class Client:
    file: str
    said: str  # the replier's own text in the real message, as new_text reads it
    new: tuple[str, str]  # (replier's text in text/plain, the same place with {} for ours)
    quote: tuple[str, str]  # (a line of the quoted original in text/plain, with {} for ours)
    html_new: tuple[str, str] | None = None
    html_quote: tuple[str, str] | None = None
    kept: str = ""  # the replier's own text we leave in place below ours (a sign-off)

    def reply(self, ours: str, in_quote: str) -> bytes:
        plain = swap((self.new[0], self.new[1].format(ours)), (self.quote[0], self.quote[1].format(in_quote)))
        html_edit = None
        if self.html_new and self.html_quote:
            html_edit = swap(
                (self.html_new[0], self.html_new[1].format(html.escape(ours).replace("\n", "<br>"))),
                (self.html_quote[0], self.html_quote[1].format(in_quote)),
            )
        return rewrite(sample_bytes(self.file), plain, html_edit)


CLIENTS = [
    Client(
        "reply-gmail-web-multipart.eml",
        "Hello",
        ("Hello\n", "{}\n"),
        ("> Hi", "> {}"),
        ("Hello<br>", "{}<br>"),
        ("\nHi\n", "\n{}\n"),
    ),
    Client(
        "reply-android-gmail-base64-multipart.eml",
        "Hello",
        ("Hello\n", "{}\n"),
        ("> Hi\n", "> {}\n"),
        ("<p>Hello</p>", "<p>{}</p>"),
        (">Hi<br>", ">{}<br>"),
    ),
    Client("reply-apple-mail-2.eml", "Hello", ("Hello\n", "{}\n"), ("> Hi there!", "> {}")),
    Client("reply-apple-mail-iso8859-1.eml", "Hello", ("Hello\n", "{}\n"), ("> Hi", "> {}")),
    Client("reply-iphone-quoted-printable.eml", "Hello", ("Hello\n", "{}\n"), ("> Hi", "> {}")),
    Client(
        "reply-hotmail-multipart.eml",
        "Hello",
        ("\nHello\n", "\n{}\n"),
        ("> Hi\n", "> {}\n"),
        ("Hello<br>", "{}<br>"),
        ("&gt; Hi<br>", "&gt; {}<br>"),
    ),
    # Outlook-style header blocks without '>': the original below them is not marked as quote at all.
    Client(
        "reply-aol-multipart.eml",
        "Hello",
        ("Hello\n", "{}\n"),
        ("\nHi\n", "\n{}\n"),
        ("Hello<br>", "{}<br>"),
        ("<tt>Hi\n", "<tt>{}\n"),
    ),
    Client("reply-yahoo-webservice.eml", "Hello", ("Hello\n", "{}\n"), ("\nHi\n", "\n{}\n")),
    Client(
        "reply-zimbra-comcast.eml",
        "Hello",
        ("Hello \n", "{}\n"),
        ("\nHi \n", "\n{} \n"),
        ("Hello<br>", "{}<br>"),
        ("<br>Hi<br>", "<br>{}<br>"),
    ),
    Client(
        "reply-outlook-iso8859-1.eml",
        "Hello",
        ("Hello\n", "{}\n"),
        ("I'm not happy\n", "{}\n"),
        ("Allo! Follow up MIME!", "{}"),
        ("I'm not happy<br>", "{}<br>"),
    ),
    Client(
        "reply-sparrow.eml",
        "Hello",
        ("Hello \n", "{}\n"),
        ("> > Hi", "> > {}"),
        ('12px;">Hello</span>', '12px;">{}</span>'),
        ("<div>Hi</div>", "<div>{}</div>"),
    ),
    Client(
        "reply-talon-quotations-share-block.eml",
        "Hi Katharine.  Sounds great.  Are there and dietry restrictions or things your husband "
        "does/doesn't like to eat?  Would you like to do a few hors d oeuvres and then a 3 or 4 course "
        "dinner?  Let me know what you think will work best and I will start working on a menu and "
        "proposal.  Thanks so much and look forward to hearing from you soon.\n\nJoe XXX",
        (r"re:^Hi Katharine\.[^\n]*", "{}"),
        ("New Booking Inquiry", "{}"),
        (r"re:Hi Katharine\..*?</DIV>", "{}</DIV>"),
        ("New Booking Inquiry", "{}"),
        kept="\n\nJoe XXX",
    ),
]
HTML_CLIENTS = [c for c in CLIENTS if c.html_new]


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.file)
def test_real_reply_as_sent_is_read_but_decides_nothing(client: Client) -> None:
    mail = parse_mail(sample_bytes(client.file))
    decision = read_decision(mail)
    assert new_text(mail) == client.said
    assert decision.verdict is Verdict.UNCLEAR
    assert decision.first_line == client.said.split("\n")[0]
    assert decision.why.startswith("the first line of your reply was '")


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.file)
def test_approve_on_top_with_deny_in_the_quote(client: Client) -> None:
    decision = read_decision(parse_mail(client.reply("APPROVE", "DENY")))
    assert decision.verdict is Verdict.APPROVE
    assert decision.new_text == "APPROVE" + client.kept


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.file)
def test_deny_with_reason_stops_at_the_quote(client: Client) -> None:
    decision = read_decision(parse_mail(client.reply("DENY\nShe left the registry in May.", "APPROVE")))
    assert decision.verdict is Verdict.DENY
    assert decision.reason == "She left the registry in May." + client.kept


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.file)
def test_no_new_text_and_approve_only_in_the_quote_is_unclear(client: Client) -> None:
    decision = read_decision(parse_mail(client.reply("", "APPROVE")))
    assert decision.verdict is Verdict.UNCLEAR
    kept = client.kept.strip()
    assert decision.why == (f"the first line of your reply was '{kept}'" if kept else NO_NEW_TEXT)


@pytest.mark.parametrize("client", HTML_CLIENTS, ids=lambda c: c.file)
def test_html_part_of_the_same_reply_reads_the_same(client: Client) -> None:
    for ours, quoted, verdict in (
        ("APPROVE", "DENY", Verdict.APPROVE),
        ("DENY", "APPROVE", Verdict.DENY),
        ("", "APPROVE", Verdict.UNCLEAR),
    ):
        html_part = parse_mail(client.reply(ours, quoted)).html
        assert html_part is not None
        assert read_decision(mail_with_body(html_part, subtype="html")).verdict is verdict


def test_blank_text_part_falls_back_to_the_html_part() -> None:
    raw = rewrite(
        sample_bytes("reply-gmail-web-multipart.eml"), swap(("re:.*", "\n")), swap(("Hello<br>", "APPROVE<br>"))
    )
    # The text/plain part is there but blank: the HTML part is all the replier sent.
    assert read_decision(parse_mail(raw)).verdict is Verdict.APPROVE


def test_text_part_is_preferred_over_the_html_part() -> None:
    raw = rewrite(
        sample_bytes("reply-gmail-web-multipart.eml"), swap(("Hello\n", "DENY\n")), swap(("Hello<br>", "APPROVE<br>"))
    )
    assert read_decision(parse_mail(raw)).verdict is Verdict.DENY


def test_thunderbird_format_flowed_bottom_posted() -> None:
    raw = sample_bytes("reply-thunderbird-format-flowed.eml")
    assert new_text(parse_mail(raw)) == "Hello"
    approve = rewrite(raw, swap(("\nHello", "\nAPPROVE"), ("> Hi ", "> DENY ")))
    assert 'format="flowed"' in approve.decode() or "format=flowed" in approve.decode()
    assert read_decision(parse_mail(approve)).verdict is Verdict.APPROVE
    nothing = rewrite(raw, swap(("\nHello", "\n"), ("> Hi ", "> APPROVE ")))
    decision = read_decision(parse_mail(nothing))
    assert (decision.verdict, decision.why) == (Verdict.UNCLEAR, NO_NEW_TEXT)


def test_format_flowed_soft_break_joins_the_first_line() -> None:
    flowed = {"format": "flowed"}
    assert read_decision(mail_with_body("APPROVE \nbut only for Jane\n", params=flowed)).verdict is (Verdict.UNCLEAR)
    assert read_decision(mail_with_body("APPROVE\nthanks \nfor asking\n", params=flowed)).verdict is (Verdict.APPROVE)
    # DelSp=yes: the space before the soft break belongs to the break, not the text.
    delsp = {"format": "flowed", "delsp": "yes"}
    assert read_decision(mail_with_body("APP \nROVE\n", params=delsp)).first_line == "APPROVE"


def test_iphone_sent_from_and_quoted_printable_wrapped_header() -> None:
    # "wr=\note:" in the raw quoted-printable: the header is only whole once decoded.
    raw = sample_bytes("reply-iphone-quoted-printable.eml")
    assert b"wr=\note:" in raw
    edited = rewrite(raw, swap(("Hello\n", "DENY\nNot one of ours.\n")))
    assert b"Content-Transfer-Encoding: quoted-printable" in edited
    mail = parse_mail(edited)
    decision = read_decision(mail)
    assert (decision.verdict, decision.reason) == (Verdict.DENY, "Not one of ours.")


def test_iso_8859_1_body_is_decoded_before_reading() -> None:
    raw = rewrite(
        sample_bytes("reply-apple-mail-iso8859-1.eml"),
        swap(("Hello\n", "DENY\nDiese Person ist nicht bei uns tätig.\n")),
    )
    assert b"t=E4tig" in raw  # ISO-8859-1, quoted-printable
    decision = read_decision(parse_mail(raw))
    assert decision.verdict is Verdict.DENY
    assert decision.reason == "Diese Person ist nicht bei uns tätig."


# --- bodies of real replies in many languages ----------------------------------------------------------

LOREM = (
    "Fusce bibendum, quam hendrerit sagittis tempor, dui turpis tempus erat, pharetra sodales ante sem sit "
    "amet metus.\nNulla malesuada, orci non vulputate lobortis, massa felis pharetra ex, convallis "
    "consectetur ex libero eget ante.\nNam vel turpis posuere, rhoncus ligula in, venenatis orci. Duis "
    "interdum venenatis ex a rutrum.\nDuis ut libero eu lectus consequat consequat ut vel lorem. Vestibulum "
    "convallis lectus urna,\net mollis ligula rutrum quis. Fusce sed odio id arcu varius aliquet nec nec nibh."
)


@dataclass(frozen=True)
class Body:
    file: str
    said: str  # the replier's own text, as new_text reads it
    header: str  # where the quote starts, exactly as in the file
    prefix: str  # how a line of the original just below the header is written ("> " or "")
    answerable: bool  # a '>' quote follows the header: the replier may answer below it


BODIES = [
    Body(
        "reply-text-chinese.txt",
        "Hi Erlend Sogge Heggen,\nThank you for your reply.",
        "> 在 2016年12月12日，下午8:45，Erlend Sogge Heggen <meta@discoursemail.com> 写道：",
        "> ",
        True,
    ),
    Body("reply-text-danish-oprindelig-besked.txt", LOREM, "-------- Oprindelig besked --------", "", False),
    Body(
        "reply-text-dutch-op-heeft-geschreven.txt",
        "Nice of you to pick it up! Could you make a PR? Then other people can use it too. Would be great.",
        "> Op 2 feb. 2015 om 05:28 heeft VannillaSky <info@discourse.org> het volgende geschreven:",
        "> ",
        True,
    ),
    Body(
        "reply-text-finnish-kirjoitti.txt",
        LOREM,
        "pe 20. lokakuuta 2017 klo 17.50 John Coe\n<s.testtesttest.i@test.com> kirjoitti:",
        "",
        False,
    ),
    Body(
        "reply-text-french-a-ecrit.txt",
        "C'est super !",
        'Le 4 janv. 2016 19:03, "Neil Lalonde"\n<info@discourse.org>\na écrit :',
        "> ",
        True,
    ),
    Body("reply-text-german-3.txt", "Gruß Discourse", "-----Ursprüngliche Nachricht-----", "", False),
    Body(
        "reply-text-german-outlook-urspruengliche-nachricht.txt", LOREM, "-----Ursprüngliche Nachricht-----", "", False
    ),
    Body(
        "reply-text-german-schrieb.txt",
        "alright, no big deal - I assume in this case the code needs some refactoring to better support I18N anyway.",
        "codinghorror via Discourse Meta <info@discourse.org> schrieb:",
        ">",
        True,
    ),
    Body(
        "reply-text-italian-ha-scritto.txt",
        "Ok, will do. As a test, this is a reply from a webmail client.",
        "> Il 26 marzo 2016 alle 13.16 Sam Saffron <info@discourse.org> ha scritto:",
        "> ",
        True,
    ),
    Body(
        "reply-text-norwegian-gmail.txt",
        LOREM,
        "tir. 18. apr. 2017 kl. 13:09 skrev Test user <test@example.com\n>:",
        "> ",
        True,
    ),
    Body(
        "reply-text-norwegian-skrev-ipad.txt",
        "Thanx :-)",
        "Den 15. jun. 2016 kl. 20.42 skrev Jeff Atwood <info@discourse.org<mailto:info@discourse.org>>:",
        "",
        False,
    ),
    Body("reply-text-outlook-ios-french-underscore.txt", LOREM, "________________________________", "", False),
    Body(
        "reply-text-polish-napisal.txt",
        "Oh, I've forgot to add. MIT",
        "Dnia 14 lip 2015 o godz. 00:25 Michael Downey <info@discourse.org> napisał(a):",
        "> ",
        True,
    ),
    Body(
        "reply-text-portuguese-escreveu.txt",
        "Olá,\nQualquer dúvida estamos ai.",
        "Em 2 de fevereiro de 2015 10:58, discourse <\ninfo@discourse.org> escreveu:",
        "> ",
        True,
    ),
    Body(
        "reply-text-russian-gmail-short.txt",
        LOREM,
        "ср, 30 апр. 2025\u202fг. в 15:19, John Doe <doe@example.com>:",
        "",
        False,
    ),
    Body(
        "reply-text-russian-napisal.txt",
        "Why don't you override particular strings with JS?",
        "понедельник, 6 октября 2014 г. пользователь lidel написал:",
        "> ",
        True,
    ),
    Body(
        "reply-text-spanish-escribio.txt",
        "I've configured Twitter Authentication, so this error happends on the\napplication, after twitter "
        "posts to my discourse install via the callback.\n\nIn the front error I can get a correct message "
        'saying "Something waa wrong,\ncheck you usename and password" and in the backend I see that '
        "error in the\nlogs.",
        "El jueves, 21 de noviembre de 2013, codinghorror escribió:",
        "> ",
        True,
    ),
    Body(
        "reply-text-swedish.txt",
        "Hi everyone!\n\nHere you can find the pictures that I took https://foo.bar\n\nIt was a pleasure to "
        "support this event.\n\nBest regards\n\nSome One",
        "Från: Foo Bar [mailto:noreply@foo.bar]\nSkickat: den 5 juni 2017 12:22\nTill: someone@domain.com\n"
        "Ämne: [WAT] Photos from the symposium",
        "",
        False,
    ),
    Body(
        "reply-text-ukrainian.txt",
        "Спасибо еще раз.",
        '30 серп. 2016 р. 20:45 "Arpit" <no-reply@example.com> пише:',
        "> ",
        True,
    ),
    Body(
        "reply-text-zimbra-french-a-ecrit.txt",
        "Bonjour Test,\n\nText paragraph 1\n\n\nLe paragraphe qui pose problème.\n\nText paragraph 2\n\nMichael Scott",
        "- Le 2021-04-09 23:25, Toby Flenderson a écrit :",
        "> ",
        True,
    ),
    Body(
        "reply-text-zoho-on-wrote-dashes.txt",
        "What is the best way to clear a Riak bucket of all key, values after\nrunning a test?",
        "---- On Wed, 24 Feb 2021 14:02:50 +0530 john@gmail.com wrote ----",
        "",
        False,
    ),
    Body(
        "reply-text-windows10-mail-from-sent-block.txt",
        "Great thanks Bort, going for a test now.\nBraxton",
        "From: Bort\nSent: April 9, 2020 2:02 PM\nTo: braxton@company.com\nSubject: Re: [#000] Stuff pls",
        "",
        False,
    ),
    Body(
        "reply-text-email-2-2.txt",
        "Outlook with a reply directly above line",
        "________________________________________",
        "",
        False,
    ),
    Body("reply-text-unquoted-original.txt", "This is my reply.", "On Nov 26, 2013 you wrote:", "", False),
    Body(
        "reply-text-greedy-on-false-positive.txt",
        "On your remote host you can run:\n\n     telnet 127.0.0.1 52698\n\nThis should connect to TextMate "
        "(on your Mac, via the tunnel). If that\nfails, the tunnel is not working.",
        "On 9 Jan 2014, at 2:47, George Plymale wrote:",
        "> ",
        True,
    ),
    Body(
        "reply-text-inline-interleaved.txt",
        "Hi,",
        "On Tue, 2011-03-01 at 18:02 +0530, Abhishek Kona wrote:",
        "> ",
        True,
    ),
    Body(
        "fwd-text-apple-mail.txt",
        "This email has been forwarded from Apple Mail.",
        "> Begin forwarded message:",
        "> ",
        False,
    ),
    Body(
        "fwd-text-gmail.txt",
        "This email has been forwarded from Gmail.",
        "---------- Forwarded message ---------",
        "",
        False,
    ),
    Body("fwd-text-original-message.txt", "", "---------- Forwarded message ----------", "", False),
]


def body_with(body: Body, ours: str, in_quote: str) -> str:
    """The sample with the replier's text (everything above the header) replaced by ours, and a line of ours
    put into the original right below the header."""
    text = sample_text(body.file)
    assert body.header in text
    rest = text[text.index(body.header) :]
    rest = rest.replace(body.header, f"{body.header}\n{body.prefix}{in_quote}", 1)
    return f"{ours}\n\n{rest}" if ours else rest


@pytest.mark.parametrize("body", BODIES, ids=lambda b: b.file)
def test_real_body_new_text(body: Body) -> None:
    assert new_text(mail_with_body(sample_text(body.file))) == body.said


@pytest.mark.parametrize("body", BODIES, ids=lambda b: b.file)
def test_real_body_approve_above_a_quote_saying_deny(body: Body) -> None:
    decision = read_decision(mail_with_body(body_with(body, "APPROVE", "DENY")))
    assert (decision.verdict, decision.new_text) == (Verdict.APPROVE, "APPROVE")


@pytest.mark.parametrize("body", BODIES, ids=lambda b: b.file)
def test_real_body_deny_reason_ends_at_the_quote_header(body: Body) -> None:
    decision = read_decision(mail_with_body(body_with(body, "DENY\nNot registry staff.", "APPROVE")))
    assert (decision.verdict, decision.reason) == (Verdict.DENY, "Not registry staff.")


@pytest.mark.parametrize("body", BODIES, ids=lambda b: b.file)
def test_quote_header_alone_is_recognised(body: Body) -> None:
    """Without any text of the replier's, the header itself must be seen as the start of the quote: an
    unrecognised header would be the first line (a different `why`), or hide a bottom-posted answer."""
    header = "\n".join(line[2:] if line.startswith("> ") else line for line in body.header.split("\n"))
    if body.answerable:
        decision = read_decision(mail_with_body(f"{header}\n\n> the original\n\nAPPROVE\n"))
        assert decision.verdict is Verdict.APPROVE
    else:
        decision = read_decision(mail_with_body(f"{header}\n\nAPPROVE\n"))
        assert (decision.verdict, decision.why) == (Verdict.UNCLEAR, NO_NEW_TEXT)


def test_unrecognised_placeholder_is_read_as_new_text() -> None:
    # Upstream fills "[DATE]" in at test time; as it stands, it is no quote header and nothing is cut.
    text = sample_text("reply-text-date-headers.txt")
    assert new_text(mail_with_body(text)) == "Thank you very much.\n\n[DATE]\n\nThis is my previous mail"


def test_bottom_posted_text_below_a_quote() -> None:
    text = sample_text("reply-text-quote-then-text-bottom-posted.txt")
    assert new_text(mail_with_body(text)) == "And this is some text."
    decision = read_decision(mail_with_body(text.replace("And this is some text.", "DENY\nUnknown to us.")))
    assert (decision.verdict, decision.reason) == (Verdict.DENY, "Unknown to us.")


def test_interleaved_reply_without_greeting_reads_the_first_answer() -> None:
    text = sample_text("reply-text-inline-interleaved.txt").replace("Hi,\n", "", 1)
    decision = read_decision(mail_with_body(text))
    assert decision.verdict is Verdict.UNCLEAR
    assert decision.first_line.startswith("You can list the keys for the bucket")


@pytest.mark.parametrize(
    "name",
    [
        "reply-text-iphone-sent-from.txt",
        "reply-text-blackberry.txt",
        "reply-text-correct-sig.txt",
        "reply-text-usenet-style.txt",
        "reply-text-signatures.txt",
    ],
)
def test_signatures_end_the_new_text(name: str) -> None:
    text = sample_text(name)
    first, rest = text.split("\n", 1)
    assert new_text(mail_with_body(text)) == first
    # A DENY in the signature would make the reply name both words if the signature were read as new text.
    assert read_decision(mail_with_body(f"APPROVE\n{rest}\nDENY\n")).verdict is Verdict.APPROVE


def test_every_sent_from_line_of_the_sample_is_recognised() -> None:
    lines = [line for line in sample_text("reply-text-signatures.txt").splitlines()[2:] if line.strip()]
    # "Someone from mobile" is the sample's own sign-off (a name), not a client's "sent from" line.
    lines.remove("Someone from mobile")
    for line in lines:
        decision = read_decision(mail_with_body(f"APPROVE\n\n{line}\nDENY\n"))
        assert decision.verdict is Verdict.APPROVE, line
        assert read_decision(mail_with_body(f"{line}\nAPPROVE\n")).why == NO_NEW_TEXT, line


# --- HTML-only replies -----------------------------------------------------------------------------------

HTML_FILES = [
    "html-reply-gmail.html",
    "html-reply-hotmail.html",
    "html-reply-mail-ru.html",
    "html-reply-outlook-2003.html",
    "html-reply-outlook-2007.html",
    "html-reply-outlook-2010.html",
    "html-reply-thunderbird.html",
    "html-reply-windows-mail.html",
    "html-reply-yandex-ru.html",
]


def content_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("name", HTML_FILES)
def test_html_only_reply_new_text(name: str) -> None:
    assert content_lines(new_text(mail_with_body(sample_text(name), subtype="html"))) == (
        ["Hi. I am fine.", "Thanks,", "Alex"]
    )


@pytest.mark.parametrize("name", HTML_FILES)
def test_html_only_reply_decides_and_ignores_the_quote(name: str) -> None:
    source = sample_text(name)
    approve = source.replace("Hi. I am fine.", "APPROVE", 1).replace("Hello! How are you?", "DENY", 1)
    decision = read_decision(mail_with_body(approve, subtype="html"))
    assert decision.verdict is Verdict.APPROVE
    deny = source.replace("Hi. I am fine.", "DENY", 1).replace("Hello! How are you?", "APPROVE", 1)
    decision = read_decision(mail_with_body(deny, subtype="html"))
    assert (decision.verdict, content_lines(decision.reason)) == (Verdict.DENY, ["Thanks,", "Alex"])
    nothing = re.sub(
        r"Alex(?=<)", "", source.replace("Hi. I am fine.", "", 1).replace("Thanks,", "", 1), count=1
    ).replace("Hello! How are you?", "APPROVE", 1)
    decision = read_decision(mail_with_body(nothing, subtype="html"))
    assert (decision.verdict, decision.why) == (Verdict.UNCLEAR, NO_NEW_TEXT)


def test_html_to_text_structure() -> None:
    text = html_to_text(
        "<html><head><title>t</title><style>p {color: red}</style></head><body>"
        "<script>var a = 'APPROVE';</script><p>one<br>two</p><div>three</div>"
        "<blockquote>q1<blockquote>q2</blockquote></blockquote><pre>a\n  b</pre></body></html>"
    )
    assert content_lines(text) == ["one", "two", "three", "> q1", "> > q2", ">", "a", "b"]
    assert "  b" in text


def test_html_to_text_marks_outlook_quote_starts() -> None:
    for opening in (
        '<div id="divRplyFwdMsg" dir="ltr">',
        '<div id="OLK_SRC_BODY_SECTION">',
        "<div style='border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in'>",
        '<hr id="stopSpelling">',
    ):
        text = html_to_text(f"<p>APPROVE</p>{opening}<b>From:</b> x<br>DENY</div>")
        assert content_lines(text)[:2] == ["APPROVE", HTML_QUOTE_SEPARATOR], opening


def test_html_to_text_unclosed_head_does_not_swallow_the_body() -> None:
    assert content_lines(html_to_text("<html><head><meta charset=utf-8><body>APPROVE</body>")) == ["APPROVE"]


def test_html_bottom_posted_below_thunderbird_quote() -> None:
    source = sample_text("html-reply-thunderbird.html")
    bottom = (
        source.replace("Hi. I am fine.<br>", "")
        .replace("Thanks,<br>", "")
        .replace("Alex<br>", "")
        .replace("</blockquote>", "</blockquote><p>DENY</p><p>Not ours.</p>")
    )
    decision = read_decision(mail_with_body(bottom, subtype="html"))
    assert (decision.verdict, decision.reason) == (Verdict.DENY, "Not ours.")


# --- the first-line rule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, verdict",
    [
        ("APPROVE", Verdict.APPROVE),
        ("approve", Verdict.APPROVE),
        ("  Approve.  ", Verdict.APPROVE),
        ("APPROVE!!!", Verdict.APPROVE),
        ("**APPROVE**", Verdict.APPROVE),
        ("*APPROVE*.", Verdict.APPROVE),
        ("_deny_", Verdict.DENY),
        ("DENY:", Verdict.DENY),
        ("\n\n\nDENY;\n", Verdict.DENY),
        ("APPROVE\xa0\r\n\r\nThanks\r\n", Verdict.APPROVE),
        ("AP\u200bPROVE\ufeff", Verdict.APPROVE),
        ("ＡＰＰＲＯＶＥ", Verdict.APPROVE),  # full-width letters: NFKC makes them the plain word
    ],
)
def test_accepted_first_lines(body: str, verdict: Verdict) -> None:
    decision = read_decision(mail_with_body(body))
    assert decision.verdict is verdict
    assert decision.why == ""


@pytest.mark.parametrize(
    "body, why",
    [
        ("", NO_NEW_TEXT),
        ("\n \n\t\n", NO_NEW_TEXT),
        ("approved?", "the first line of your reply was 'approved?'"),
        ("APPROVE?", "the first line of your reply was 'APPROVE?'"),
        ("APPROVE DENY", BOTH),
        ("Approve or deny: deny", BOTH),
        ("APPROVE\nDENY", BOTH),
        ("DENY\n\nreason\n\n*approve*", BOTH),
        ("I approve", "the first line of your reply was 'I approve'"),
        ("Approve – but only for Jane", "the first line of your reply was 'Approve – but only for Jane'"),
        ("not approve", "the first line of your reply was 'not approve'"),
        ("Hi,\nAPPROVE", "the first line of your reply was 'Hi,'"),
        ("APPROVED", "the first line of your reply was 'APPROVED'"),
        ("- APPROVE", "the first line of your reply was '- APPROVE'"),
        ("> APPROVE", NO_NEW_TEXT),
        ("\u0410PPROVE", "the first line of your reply was '\u0410PPROVE'"),  # Cyrillic А
        ("\u202eEVORPPA", "the first line of your reply was '\u202eEVORPPA'"),  # right-to-left override
        ("-- \nAPPROVE", NO_NEW_TEXT),
        ("Sent from my iPhone\n\nAPPROVE", NO_NEW_TEXT),
        ("-- APPROVE --", NO_NEW_TEXT),
    ],
)
def test_unclear_first_lines(body: str, why: str) -> None:
    decision = read_decision(mail_with_body(body))
    assert decision.verdict is Verdict.UNCLEAR
    assert decision.why == why


def test_decision_word() -> None:
    assert decision_word(" *Deny!* ") is Verdict.DENY
    assert decision_word("APPROVE?") is None
    assert decision_word("") is None


# --- NOT MINE: an approver's "not mine to judge" --------------------------------------------------------

NOT_MINE_AND_APPROVE = "your reply named both APPROVE and NOT MINE"


@pytest.mark.parametrize(
    "body",
    [
        "NOT MINE",
        "not mine",
        "  Not Mine.  ",
        "NOT  MINE",
        "NOT\xa0MINE",  # a non-breaking space from an HTML client: NFKC makes it a space
        "NOT-MINE",
        "not_mine",
        "NotMine!",
        "**NOT MINE**",
        "ABSTAIN",
        "abstain.",
        "NOT MINE\n\nI only run the name servers; Anna decides who joins.",
    ],
)
def test_not_mine_first_lines(body: str) -> None:
    decision = read_decision(mail_with_body(body))
    assert (decision.verdict, decision.why, decision.reason) == (Verdict.NOT_MINE, "", "")


@pytest.mark.parametrize(
    "body, why",
    [
        ("NOT MINE, APPROVE", NOT_MINE_AND_APPROVE),
        ("NOT MINE APPROVE", NOT_MINE_AND_APPROVE),
        ("approve? not mine", NOT_MINE_AND_APPROVE),
        ("Approve or abstain", NOT_MINE_AND_APPROVE),
        ("NOT MINE\nAPPROVE", NOT_MINE_AND_APPROVE),
        ("APPROVE\n\nthanks\n\nnot mine.", NOT_MINE_AND_APPROVE),
        ("abstain or deny", "your reply named both DENY and NOT MINE"),
        ("DENY\nNot our staff.\nABSTAIN", "your reply named both DENY and NOT MINE"),
        ("approve, deny, not mine?", "your reply named APPROVE, DENY and NOT MINE"),
        ("not", "the first line of your reply was 'not'"),
        ("mine", "the first line of your reply was 'mine'"),
        ("NOT APPROVE", "the first line of your reply was 'NOT APPROVE'"),
        ("not deny", "the first line of your reply was 'not deny'"),
        ("NOT MINE?", "the first line of your reply was 'NOT MINE?'"),
        ("Not mine, sorry", "the first line of your reply was 'Not mine, sorry'"),
        ("this one is not mine", "the first line of your reply was 'this one is not mine'"),
        ("NOT\nMINE", "the first line of your reply was 'NOT'"),
        ("NOT M\u0406NE", "the first line of your reply was 'NOT M\u0406NE'"),  # Cyrillic І
        ("> NOT MINE", NO_NEW_TEXT),
    ],
)
def test_not_mine_where_it_is_not_the_one_word(body: str, why: str) -> None:
    decision = read_decision(mail_with_body(body))
    assert decision.verdict is Verdict.UNCLEAR
    assert decision.why == why


@pytest.mark.parametrize("line", ["not", "NOT APPROVE", "not approve.", "NOT: APPROVE", "Not-approve", "notapprove"])
def test_not_never_reads_as_approve(line: str) -> None:
    assert decision_word(line) is None
    assert read_decision(mail_with_body(f"{line}\n")).verdict is Verdict.UNCLEAR


def test_not_mine_inside_a_deny_reason_is_the_reason() -> None:
    decision = read_decision(mail_with_body("DENY\nNot mine to say, but she left in May."))
    assert (decision.verdict, decision.reason) == (Verdict.DENY, "Not mine to say, but she left in May.")


def test_not_mine_is_no_requester_word() -> None:
    decision = read_decision(mail_with_body("NOT MINE"), REQUESTER_WORDS)
    assert decision.verdict is Verdict.UNCLEAR
    assert read_decision(mail_with_body("WITHDRAW\nnot mine"), REQUESTER_WORDS).verdict is Verdict.WITHDRAW


def test_not_mine_reads_as_an_answer_for_the_forgery_alert() -> None:
    said = [reads_as_decision(read_decision(mail_with_body(t))) for t in ("Not mine.", "I abstain", "NOTMINE")]
    assert said == [True, True, True]
    quiet = [reads_as_decision(read_decision(mail_with_body(t))) for t in ("is the mine safe?", "mine, not yours")]
    assert quiet == [False, False]


def test_long_first_line_is_shortened_in_why_and_new_text_is_capped() -> None:
    decision = read_decision(mail_with_body("x" * 200 + "\n" + "y" * 9000))
    assert decision.why == "the first line of your reply was '" + "x" * 79 + "…'"
    assert len(decision.new_text) == 4000


def test_deny_reason_is_capped() -> None:
    decision = read_decision(mail_with_body("DENY\n" + "because " * 500))
    assert decision.verdict is Verdict.DENY
    assert len(decision.reason) == 1000


def test_normalise() -> None:
    assert normalise("a\r\nb\rc\u00a0d\u200e") == "a\nb\nc d"


# --- our own request, quoted, never decides ----------------------------------------------------------

REQUEST_PARAGRAPHS = [
    REPLY_MARKER,
    "Dear administrative contact of .EXAMPLE,",
    "Jane Doe <jane.doe@nic.example> asks to join SECIR, the closed mailing list of ccTLD security "
    'incident responders, for .EXAMPLE. She says: "I run the CSIRT of the .example registry."',
    "You are listed at IANA as a contact of .EXAMPLE. To approve, reply to this message with the single "
    "word APPROVE on the first line. To refuse, reply with DENY on the first line; anything you write "
    "below DENY is kept as your reason. A reply with both APPROVE and DENY, or anything else on the first "
    "line, gets a question back, never a guess.",
    "The first line of your reply must read exactly:",
    "    APPROVE",
    "or",
    "    DENY",
    "This request expires on 2025-03-17. Reference: nl-2025-0042.",
    "-- \nThe SECIR admission bot, on behalf of the SECIR Secretariat <secretariat@example.org>",
]
BOT = "SECIR join bot <join+abcdefghijklmnopqrstuvwxyz234567@lists.example.org>"


def request_text(width: int) -> str:
    out = []
    for paragraph in REQUEST_PARAGRAPHS:
        lines = paragraph.split("\n")
        out.append(
            "\n".join(
                textwrap.fill(line, width) if len(line) > width and not line.startswith(" ") else line for line in lines
            )
        )
    return "\n\n".join(out)


def quoted(text: str, mark: str = "> ") -> str:
    return "\n".join((mark + line).rstrip() for line in text.split("\n"))


def request_html() -> str:
    return "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in REQUEST_PARAGRAPHS)


OUTLOOK_BLOCK = (
    "From: " + BOT + "\nSent: Monday, March 3, 2025 10:00 AM\nTo: Registry Admin "
    "<admin@nic.example>\nSubject: [SECIR] Approval request for .EXAMPLE"
)
LOCALIZED_HEADERS = [
    "On Mon, 3 Mar 2025 at 10:00, " + BOT + " wrote:",
    "Am 03.03.2025 um 10:00 schrieb " + BOT + ":",
    "Op 3 mrt. 2025 om 10:00 heeft " + BOT + " het volgende geschreven:",
    "Le lun. 3 mars 2025 à 10:00, " + BOT + " a écrit :",
    "El lun, 3 mar 2025 a las 10:00, " + BOT + " escribió:",
    "Il giorno lun 3 mar 2025 alle ore 10:00 " + BOT + " ha scritto:",
    "Em seg., 3 de mar. de 2025 às 10:00, " + BOT + " escreveu:",
    "W dniu 3.03.2025 o 10:00, " + BOT + " pisze:",
    "пн, 3 мар. 2025 г. в 10:00, " + BOT + ":",
    "man. 3. mar. 2025 kl. 10:00 skrev " + BOT + ":",
    "ma 3. maalisk. 2025 klo 10.00 " + BOT + " kirjoitti:",
    "2025年3月3日(月) 10:00 " + BOT + ":",
    "在 2025年3月3日 10:00，" + BOT + " 写道：",
]


def plain_styles(width: int) -> dict[str, str]:
    """The request as each kind of client puts it below an (empty) reply."""
    text = request_text(width)
    styles = {
        "gmail": f"{LOCALIZED_HEADERS[0]}\n\n{quoted(text)}\n",
        "apple": f"> On 3 Mar 2025, at 10:00, {BOT} wrote:\n>\n{quoted(text)}\n",
        "hotmail": quoted(OUTLOOK_BLOCK + "\n\n" + text),
        "nested": quoted(quoted(text), "> "),
        "tight-quotes": quoted(text, ">"),
        "outlook": f"________________________________\n{OUTLOOK_BLOCK}\n\n{text}\n",
        "outlook-no-rule": f"{OUTLOOK_BLOCK}\n\n{text}\n",
        "original-message": f"-----Original Message-----\n{OUTLOOK_BLOCK}\n\n{text}\n",
        "yahoo": f"----- Original Message -----\n{OUTLOOK_BLOCK}\n\n{text}\n",
        "bare-original": f"{text}\n",
        "forwarded": f"---------- Forwarded message ---------\n{OUTLOOK_BLOCK}\n\n{text}\n",
    }
    for i, header in enumerate(LOCALIZED_HEADERS[1:]):
        styles[f"localized-{i}"] = f"{header}\n\n{quoted(text)}\n"
    return styles


def html_styles() -> dict[str, str]:
    req = request_html()
    attribution = html.escape(LOCALIZED_HEADERS[0])
    outlook = (
        "<b>From:</b> " + html.escape(BOT) + "<br><b>Sent:</b> Monday, March 3, 2025 10:00 AM<br>"
        "<b>To:</b> Registry Admin<br><b>Subject:</b> [SECIR] Approval request"
    )
    return {
        "gmail": f'<div class="gmail_quote"><div class="gmail_attr">{attribution}<br></div>'
        f'<blockquote class="gmail_quote" style="margin:0 0 0 .8ex">{req}</blockquote></div>',
        "thunderbird": f'<div class="moz-cite-prefix">{attribution}<br></div><blockquote type="cite">{req}'
        "</blockquote>",
        "apple": f'<div><br><blockquote type="cite"><div>{attribution}</div><br><div>{req}</div></blockquote></div>',
        "outlook-web": f'<hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg" dir="ltr">'
        f"{outlook}</div><div>{req}</div>",
        "outlook-desktop": "<div style='border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in'>"
        f"<p class=MsoNormal>{outlook}</p></div>{req}",
        "outlook-mac": f'<span id="OLK_SRC_BODY_SECTION"><div>{outlook}</div>{req}</span>',
        "hotmail": f'<hr id="stopSpelling">{outlook}<br>{req}',
        "bare-original": req,
    }


EMPTY_REPLIES = ["", "\n\n", " \n", "-- \nAdmin", "Sent from my iPhone", "\u200b"]


@pytest.mark.parametrize("width", [40, 56, 66, 72, 76, 78, 100, 1000])
def test_quoted_request_with_empty_reply_never_decides(width: int) -> None:
    for style, quote in plain_styles(width).items():
        for empty in EMPTY_REPLIES:
            for gap in ("\n", "\n\n"):
                decision = read_decision(mail_with_body(f"{empty}{gap}{quote}"))
                assert decision.verdict is Verdict.UNCLEAR, (style, empty)
        # The same quote below a real answer: the style itself is read, not just rejected wholesale.
        assert read_decision(mail_with_body(f"APPROVE\n\n{quote}")).verdict is Verdict.APPROVE, style
        deny = read_decision(mail_with_body(f"DENY\nNot ours.\n\n{quote}"))
        assert (deny.verdict, deny.reason) == (Verdict.DENY, "Not ours."), style


def test_quoted_request_as_format_flowed_never_decides() -> None:
    # Thunderbird: quoted lines soft-broken with a trailing space.
    flowed = "\n".join("> " + line + " " for line in request_text(60).split("\n") if line) + "\n"
    body = f"On 03/03/2025 10:00, {BOT} wrote:\n{flowed}"
    mail = mail_with_body(body, params={"format": "flowed"})
    assert read_decision(mail).verdict is Verdict.UNCLEAR
    assert read_decision(mail_with_body("APPROVE\n" + body, params={"format": "flowed"})).verdict is (Verdict.APPROVE)


def test_quoted_request_in_html_with_empty_reply_never_decides() -> None:
    for style, quote in html_styles().items():
        for empty in ("", "<div><br></div>", "<p>&nbsp;</p>", "<div>-- <br>Admin</div>"):
            decision = read_decision(mail_with_body(f"<html><body>{empty}{quote}</body></html>", "html"))
            assert decision.verdict is Verdict.UNCLEAR, (style, empty)
        top = read_decision(mail_with_body(f"<div>APPROVE</div><div><br></div>{quote}", "html"))
        assert top.verdict is Verdict.APPROVE, style


def test_request_marker_cuts_even_without_any_quote_header() -> None:
    text = "APPROVE\n\n" + request_text(72).replace("    APPROVE", "DENY")
    assert read_decision(mail_with_body(text)).new_text == "APPROVE"
    assert new_text(mail_with_body(f"Fine by me.\n{REPLY_MARKER}\nAPPROVE")) == "Fine by me."


def test_rewrapped_quote_tail_below_a_quote_is_not_taken_as_an_answer() -> None:
    # A client that re-wraps a long quoted line without '>' leaves its tail as an unquoted line.
    body = "> To approve, reply to this message with the single word on the first line, namely\nAPPROVE\n"
    decision = read_decision(mail_with_body(body))
    assert decision.verdict is Verdict.UNCLEAR
    assert "could not be told apart" in decision.why


def test_answer_right_below_a_long_quoted_line_is_fine_where_clients_cannot_rewrap() -> None:
    long_line = "> To approve, reply to this message with the single word on the first line, namely"
    flowed = read_decision(mail_with_body(f"{long_line}\nAPPROVE\n", params={"format": "flowed"}))
    assert flowed.verdict is Verdict.APPROVE
    html_reply = read_decision(mail_with_body(f"<blockquote>{long_line[2:]}</blockquote>APPROVE", "html"))
    assert html_reply.verdict is Verdict.APPROVE


@pytest.mark.parametrize(
    "line",
    ["-" * 50_000, "@" * 50_000 + ">:", "On 1 " + "a@b " * 12_000 + "wrote:", "> " * 20_000, "From: x\n" * 5_000],
)
def test_hostile_lines_are_read_quickly(line: str) -> None:
    started = time.monotonic()
    decision = read_decision(mail_with_body(f"{line}\nAPPROVE\n"))
    assert time.monotonic() - started < 5
    assert decision.verdict is Verdict.UNCLEAR


def test_hostile_decoration_and_html_are_read_quickly() -> None:
    started = time.monotonic()
    assert decision_word("APPROVE" + "*." * 100_000) is Verdict.APPROVE
    text = html_to_text("<div>" + "<p>" * 100_000 + "</span>" * 100_000 + "APPROVE")
    assert time.monotonic() - started < 5
    assert content_lines(text) == ["APPROVE"]
