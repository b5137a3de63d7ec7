"""Property tests (issue 12, "Malformed and hostile input"): the pure stages of the message path over
generated mail.

Hypothesis builds raw messages from e-mail-ish pieces (subjects with RFC 2047 encoded words in good and
bad charsets and encodings, raw 8-bit and NUL bytes, the many forms a From: takes, Auto-Submitted values,
multipart trees with broken boundaries and transfer encodings) and checks what must hold for every one:

- parse_mail raises nothing but UnparseableMail (pipeline.process catches only that around it);
- classify never raises, returns a Kind, and keeps its documented rules (no usable From -> no-sender, a
  token recipient always gives the token, an Auto-Submitted other than "no" is never answered as a human's);
- read_claim never raises, and a Claim names exactly one ccTLD, one the sender wrote;
- read_decision never raises, and APPROVE only comes from a first new-text line that reads APPROVE:
  never from a quoted '> APPROVE', an APPROVE below an "On ... wrote:" line, a line naming both words, or
  a look-alike spelled with other scripts' letters.

Bounded: every test has `max_examples` and a `deadline` (generous: it only catches pathological cost), and
the file runs in well under a minute. On CI (CI set) the examples are derandomised, so a failure there
reproduces; elsewhere each run explores new ones and a failure prints the example and a @reproduce_failure
blob.
"""

from __future__ import annotations

import base64
import os
import re
import string
import unicodedata
from datetime import timedelta
from email.message import EmailMessage

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from secirbot.classify import Classification, Kind, classify
from secirbot.iana.names import all_cctlds, is_cctld
from secirbot.intake import Claim, ClaimProblem, read_claim
from secirbot.message import InboundMail, UnparseableMail, parse_mail
from secirbot.replies import Verdict, decision_word, new_text, normalise, read_decision
from secirbot.tokens import find_token

BOT = "join@lists.example.org"
LIST = "secir@lists.example.org"
TOKEN = "abcdefghijklmnopqrstuvwxyz234567"
TOKEN_ADDRESS = f"join+{TOKEN}@lists.example.org"

settings.register_profile(
    "secirbot",
    max_examples=120,
    deadline=timedelta(seconds=3),  # only pathological cost: a generated mail takes milliseconds
    derandomize=bool(os.environ.get("CI")),
    database=None,  # nothing written into the work tree
    print_blob=True,
    report_multiple_bugs=False,  # one failure, shrunk quickly, rather than every distinct one
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SETTINGS = settings.get_profile("secirbot")


def bounded(n: int) -> settings:
    return settings(SETTINGS, max_examples=n)


# --- pieces of mail ------------------------------------------------------------------------------------

CHARSETS = [
    "utf-8",
    "UTF-8",
    "iso-8859-1",
    "windows-1252",
    "koi8-r",
    "shift_jis",
    "iso-2022-jp",
    "gb2312",
    "utf-7",
    "us-ascii",
    "x-unknown",
    "unknown-8bit",
    "utf-8*en",
    "",
    "utf-16",
    "bogus charset",
]
NO_CRLF = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
PRINTABLE = st.text(alphabet=string.ascii_letters + string.digits + " .,:;!?<>@()[]\"'=_-+/*#", max_size=40)


@st.composite
def encoded_words(draw: st.DrawFn) -> bytes:
    """One RFC 2047 encoded word: well formed, or with a bad charset, encoding or payload."""
    charset = draw(st.sampled_from(CHARSETS))
    encoding = draw(st.sampled_from("qQbBx"))
    text = draw(st.text(max_size=20))
    payload: bytes
    try:
        data = text.encode(charset or "utf-8")
    except (LookupError, UnicodeError):
        data = text.encode("utf-8")
    if draw(st.booleans()):
        payload = base64.b64encode(data) if encoding in "bB" else data.hex("=").upper().encode()
        if encoding in "qQ" and data:
            payload = b"=" + payload
    else:
        payload = draw(st.text(alphabet=string.ascii_letters + string.digits + "=+/_?!-", max_size=24)).encode()
    return b"=?" + charset.encode() + b"?" + encoding.encode() + b"?" + payload + b"?="


HEADER_PIECES = st.one_of(
    PRINTABLE.map(str.encode),
    encoded_words(),
    st.text(max_size=20).map(lambda s: s.encode("utf-8", "surrogatepass")),  # raw 8-bit UTF-8 (RFC 6532)
    NO_CRLF,  # any bytes, NUL included
    st.sampled_from(
        [b"\x00", b"\r\n ", b"\r\n\t", b"=?", b"?=", b"=?utf-8?q?", b";", b"\xff\xfe", b"(" * 400, b"\\", b'"']
    ),
)


def header_values(max_pieces: int = 6) -> st.SearchStrategy[bytes]:
    return st.lists(HEADER_PIECES, max_size=max_pieces).map(lambda parts: b" ".join(parts).strip(b"\r\n"))


ADDRESSES = st.one_of(
    st.sampled_from(
        [
            "jan@registry.example",
            "Jan@Registry.Example",
            "ana@nic.example",
            "x@y",
            "a@b@c",
            "mailer-daemon@mx.example",
            "MAILER-DAEMON@mx.example",
            "postmaster@nic.example",
            BOT,
            "join+reminder@lists.example.org",
            LIST,
            "secir-owner@lists.example.org",
            "secir-bounces+x=y@lists.example.org",
            "mailman@lists.example.org",
            TOKEN_ADDRESS,
            "no-at-sign",
            "@nic.example",
            "jan@",
            "jan@localhost",
            '"odd local"@nic.example',
        ]
    ),
    st.builds(
        lambda local, domain: f"{local}@{domain}",
        st.text(alphabet=string.ascii_lowercase + string.digits + ".+-_", min_size=1, max_size=12),
        st.sampled_from(["nic.example", "lists.example.org", "example.net", "xn--p1ai.example", "nl"]),
    ),
)


@st.composite
def from_values(draw: st.DrawFn) -> bytes:
    """The forms a From: value takes, well formed or not."""
    addr = draw(ADDRESSES).encode()
    name = draw(PRINTABLE).encode()
    form = draw(st.integers(0, 11))
    if form == 0:
        return addr
    if form == 1:
        return name + b" <" + addr + b">"
    if form == 2:
        return b'"' + name.replace(b'"', b"") + b', Jr." <' + addr + b">"
    if form == 3:
        return draw(encoded_words()) + b" <" + addr + b">"
    if form == 4:
        return addr + b" (" + name.replace(b"(", b"").replace(b")", b"") + b")"
    if form == 5:
        return b"<" + addr + b">"
    if form == 6:
        return b"group: " + addr + b", other@example.net;"
    if form == 7:
        return draw(st.text(max_size=12)).encode("utf-8", "surrogatepass") + b" <" + addr + b">"
    if form == 8:  # an encoded word that spells an address, in front of the real one
        return b"=?utf-8?q?=3Cadmin=40nic.nl=3E?= <" + addr + b">"
    if form == 9:
        return name + b" <" + addr  # unterminated
    if form == 10:
        return addr + b", second@example.net"
    return draw(header_values())


AUTO_SUBMITTED = st.one_of(
    st.sampled_from(
        [
            b"no",
            b"No",
            b"NO (manual)",
            b"auto-replied",
            b"Auto-Replied",
            b"auto-generated",
            b"auto-notified",
            b'auto-replied; owner-email="x@y"',
            b"",
            b" ",
            b"nonsense",
            b"no-auto",
            b"=?utf-8?q?auto-replied?=",
            b"\x00auto-replied",
        ]
    ),
    header_values(3),
)

OPTIONAL_HEADERS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                b"Precedence",
                b"List-Id",
                b"List-Post",
                b"List-Unsubscribe",
                b"X-Mailman-Version",
                b"Return-Path",
                b"X-Failed-Recipients",
                b"In-Reply-To",
                b"References",
                b"X-Autoreply",
                b"X-Auto-Response-Suppress",
                b"Cc",
                b"Delivered-To",
                b"Message-ID",
                b"Date",
                b"MIME-Version",
                b"X-Secirbot-Loop",
                b"Reply-To",
                b"Content-Disposition",
            ]
        ),
        st.one_of(
            st.sampled_from(
                [
                    b"bulk",
                    b"list",
                    b"junk",
                    b"<>",
                    b"<secir.lists.example.org>",
                    b"3.3.10",
                    b"<x@lists.example.org>",
                    b"<mailer-daemon>",
                    b"1.0",
                    TOKEN_ADDRESS.encode(),
                ]
            ),
            header_values(4),
        ),
    ),
    max_size=6,
)


# --- MIME trees ------------------------------------------------------------------------------------------

LEAF_TYPES = [
    b"text/plain",
    b"text/plain; charset=utf-8",
    b"text/plain; charset=iso-8859-1",
    b"text/plain; charset=x-unknown",
    b'text/plain; charset="utf-8"; format=flowed; delsp=yes',
    b"text/plain; charset=utf-7",
    b"text/plain; charset=iso-2022-jp",
    b"text/html",
    b"text/html; charset=windows-1252",
    b"application/octet-stream",
    b"message/delivery-status",
    b"message/rfc822",
    b"text/rfc822-headers",
    b"message/disposition-notification",
    b"image/png",
    b"text/plain; charset=",
    b"text/plain; charset=\xff",
    b'text/html; charset="utf-8\x00"',
    b"text",
    b"/",
    b"",
]
ENCODINGS = [None, b"7bit", b"8bit", b"binary", b"base64", b"quoted-printable", b"x-uuencode", b"junk"]
BODY_TEXT = st.sampled_from(
    [
        "APPROVE",
        "DENY",
        "subscribe .nl",
        "Name: Jan\nRole: CSIRT\nccTLD: fi",
        "> APPROVE",
        "On Mon wrote:",
        "<p>APPROVE</p><blockquote>DENY</blockquote>",
        "Action: failed\nFinal-Recipient: rfc822; a@b.example",
        "The results of your email commands are provided below",
        "-- \nsig",
        "",
        "=\n=ZZ",
    ]
)


@st.composite
def leaf_parts(draw: st.DrawFn) -> tuple[bytes, bytes]:
    ctype = draw(st.sampled_from(LEAF_TYPES))
    cte = draw(st.sampled_from(ENCODINGS))
    text = draw(st.one_of(BODY_TEXT, st.text(max_size=120)))
    data = text.encode("utf-8", "surrogatepass")
    if cte == b"base64" and draw(st.booleans()):
        body = base64.encodebytes(data)
        if draw(st.booleans()):  # broken: cut mid-quantum, junk characters
            body = body[: max(0, len(body) - 3)] + b"!*\x00"
    elif cte == b"quoted-printable" and draw(st.booleans()):
        body = data.replace(b"=", b"=3D") + b"=\r\n=Z=4"
    else:
        body = draw(st.one_of(st.just(data), st.binary(max_size=80)))
    headers = b"Content-Type: " + ctype + b"\r\n"
    if cte is not None:
        headers += b"Content-Transfer-Encoding: " + cte + b"\r\n"
    return headers, body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def multipart_of(children: st.SearchStrategy[list[tuple[bytes, bytes]]]) -> st.SearchStrategy[tuple[bytes, bytes]]:
    @st.composite
    def build(draw: st.DrawFn) -> tuple[bytes, bytes]:
        parts = draw(children)
        subtype = draw(
            st.sampled_from(
                [
                    b"mixed",
                    b"alternative",
                    b"report; report-type=delivery-status",
                    b"report; report-type=feedback-report",
                    b"signed",
                    b"related",
                    b"digest",
                ]
            )
        )
        boundary = draw(st.sampled_from([b"b1", b"=_x", b"", b"a" * 75, b"--", b"b1 b2", b"\xff"]))
        declared = draw(st.sampled_from([boundary, boundary, b"other", None]))
        headers = b"Content-Type: multipart/" + subtype
        if declared is not None:
            headers += b'; boundary="' + declared + b'"'
        headers += b"\r\n"
        body = b"preamble\r\n"
        for part_headers, part_body in parts:
            body += b"--" + boundary + b"\r\n" + part_headers + b"\r\n" + part_body + b"\r\n"
        if draw(st.booleans()):
            body += b"--" + boundary + b"--\r\n"  # else the closing delimiter is missing
        return headers, body

    return build()


MIME_TREES = st.recursive(leaf_parts(), lambda children: multipart_of(st.lists(children, max_size=4)), max_leaves=8)


@st.composite
def raw_mails(draw: st.DrawFn) -> bytes:
    lines = []
    if draw(st.integers(0, 9)):  # now and then no From at all
        lines.append(b"From: " + draw(from_values()))
    lines.append(b"To: " + draw(st.one_of(ADDRESSES.map(str.encode), header_values(3))))
    lines.append(b"Subject: " + draw(header_values()))
    if draw(st.booleans()):
        lines.append(b"Auto-Submitted: " + draw(AUTO_SUBMITTED))
    lines += [name + b": " + value for name, value in draw(OPTIONAL_HEADERS)]
    lines = draw(st.permutations(lines))
    part_headers, body = draw(MIME_TREES)
    return b"\r\n".join(lines) + b"\r\n" + part_headers + b"\r\n" + body


def parsed(raw: bytes) -> InboundMail | None:
    """parse_mail, which may refuse a message only with UnparseableMail."""
    try:
        return parse_mail(raw)
    except UnparseableMail:
        return None


def run_classify(mail: InboundMail) -> Classification:
    return classify(mail, bot_address=BOT, list_address=LIST)


# --- classification ------------------------------------------------------------------------------------


@bounded(250)
@given(raw_mails())
@example(b"From: jan@registry.example\r\nMessage-ID: <caf\xc3\xa9@x>\r\nSubject: x\r\n\r\nhi\r\n")
@example(b"From: jan@registry.example\r\nTo: join@lists.example.org\r\nSubject: =?utf-8?b?0?=\r\n\r\nhi\r\n")
@example(b"From: jan@registry.example\r\nList-Id: =?utf-8?b?0?=\r\nSubject: hi\r\n\r\nhi\r\n")
@example(b'From: jan@registry.example\r\nContent-Type: text/html; charset="utf-8\x00"\r\n\r\n<p>hi</p>\r\n')
@example(b"From: jan@registry.example\r\nTo: " + b"(" * 500 + b"\r\nSubject: hi\r\n\r\nhi\r\n")
def test_classification_never_raises_and_keeps_its_rules(raw: bytes) -> None:
    mail = parsed(raw)
    assume(mail is not None)
    result = run_classify(mail)

    assert isinstance(result, Classification) and isinstance(result.kind, Kind)
    assert result.detail and isinstance(result.detail, str)
    assert result == run_classify(mail)  # pure: the same mail, the same answer
    # The token is read from the recipients, whatever the kind.
    assert result.token == find_token(mail.recipients, BOT)
    if result.kind is Kind.REPLY:
        assert result.token is not None
    if result.kind is Kind.REQUEST:
        assert result.token is None
    # Rule 1: nobody to answer (on a token address it may still be judged, and refused, as a reply).
    local, _, domain = (mail.from_addr or "").strip().rpartition("@")
    if not local or "." not in domain:
        assert (result.kind, result.detail) == (Kind.AUTOMATED, "no-sender") or (
            result.kind is Kind.REPLY and result.token is not None
        ), result
    # RFC 3834: anything but "no" says a machine wrote it; a machine is never answered as a person.
    auto = mail.header("Auto-Submitted").strip().lower()
    if auto and not re.match(r"no\b", auto):
        assert result.kind in (Kind.AUTOMATED, Kind.MAILMAN), (auto, result)


@bounded(150)
@given(raw_mails(), st.sampled_from([b"X-Secirbot-Loop: 1", b"Auto-Submitted: auto-replied"]))
@example(
    b"From: nobody\r\nTo: " + TOKEN_ADDRESS.encode() + b"\r\nSubject: Re: x\r\n\r\nAPPROVE\r\n", b"X-Secirbot-Loop: 1"
)
def test_a_loop_marker_or_auto_reply_header_is_never_answered_as_a_person(raw: bytes, marker: bytes) -> None:
    mail = parsed(marker + b"\r\n" + raw)
    assume(mail is not None)
    result = run_classify(mail)
    assert result.kind in (Kind.AUTOMATED, Kind.MAILMAN), result
    local, _, domain = (mail.from_addr or "").lower().strip().rpartition("@")
    usable = bool(local) and "." in domain
    own = domain == "lists.example.org" and (local == "join" or local.startswith("join+"))
    if not usable:
        assert result.detail in ("no-sender", "token-reply"), result
    elif marker.startswith(b"X-Secirbot-Loop") and not own:
        assert result.detail == "loop", result


@bounded(150)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_are_refused_or_classified(raw: bytes) -> None:
    mail = parsed(raw)
    if mail is not None:
        assert isinstance(run_classify(mail).kind, Kind)


# --- the claim of a request ----------------------------------------------------------------------------

CCTLDS = all_cctlds()
CCTLD_NAMES = st.sampled_from(CCTLDS)
# Other TLDs (generic, or a country code with no manager) count as naming a TLD; dotted words that are no
# TLD at all (.example, .local) and addresses and links count as nothing.
GENERIC = [".com", ".org", ".net", ".museum", ".eh", ".xn--80asehdb"]
NOISE = st.sampled_from(
    [
        "hello",
        "please",
        "subscribe",
        "join",
        "me",
        "Name:",
        "Jan",
        "Role:",
        "CSIRT",
        "I",
        "the",
        "registry",
        "for",
        "x@nic.nl",
        "http://www.nic.de/",
        "www",
        "and",
        "or",
        "1.2",
        "e.g.",
        "3.",
        "-",
        ".example",
        ".local",
    ]
)


def mention(name: object) -> st.SearchStrategy[str]:
    """The ways a request writes a ccTLD: '.nl', '.NL', '.рф', '.xn--p1ai', followed by punctuation."""
    tld = name  # a TldName
    forms = [f".{tld.ascii}", f".{tld.ascii.upper()}", f".{tld.unicode}"]  # type: ignore[attr-defined]
    return st.tuples(st.sampled_from(forms), st.sampled_from(["", ",", "!", "?", ")"])).map("".join)


@st.composite
def claim_texts(draw: st.DrawFn) -> tuple[list[str], set[str], bool]:
    """Words (noise, ccTLD mentions, other TLDs), the ccTLDs mentioned, and whether any TLD is."""
    words: list[str] = []
    named: set[str] = set()
    any_tld = False
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.integers(0, 5))
        if kind == 0:
            tld = draw(CCTLD_NAMES)
            named.add(tld.ascii)
            any_tld = True
            words.append(draw(mention(tld)))
        elif kind == 1:
            any_tld = True
            words.append(draw(st.sampled_from(GENERIC)))
        else:
            words.append(draw(NOISE))
    return words, named, any_tld


def request_mail(subject: str, body: str, sender: str = "Jan Jansen <jan@registry.example>") -> InboundMail:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = BOT
    msg["Subject"] = subject
    msg.set_content(body)
    return parse_mail(msg.as_bytes())


@bounded(200)
@given(claim_texts(), st.lists(claim_texts(), max_size=4))
@example(([".nl"], {"nl"}, True), [])
@example(([".భారత్"], {"xn--fpcrj9c3d"}, True), [])  # an IDN ccTLD written with combining marks
# Found by this test: the generator folds the encoded ".ಭಾರತ" before " hello", and the stdlib decoder lost the
# space of the fold, so ".ಭಾರತhello" named no TLD and .ac alone was read.
@example(([".ac", ".ac", ".ac", ".com", ".com", ".com", ".com", ".ಭಾರತ", "hello"], {"ac", "xn--2scrj9c"}, True), [])
def test_a_claim_names_exactly_the_one_cctld_written(subject: tuple, body_lines: list[tuple]) -> None:
    subject_words, subject_named, subject_any = subject
    body = "\n".join(" ".join(words) for words, _, _ in body_lines)
    mail = request_mail(" ".join(subject_words) or "request", body)

    claim = read_claim(mail, new_text(mail), 2000)

    # The subject wins whenever it names any TLD; else the body's lines.
    named = subject_named if subject_any else set().union(*(n for _, n, _ in body_lines))
    if len(named) == 1:
        assert isinstance(claim, Claim), (claim, named)
        assert claim.cctld.ascii in named
    else:
        assert not isinstance(claim, Claim), (claim, named)
        if len(named) > 1:
            assert claim.reason == "several-cctlds"
            assert len(claim.names) == len(named)


@bounded(200)
@given(header_values(8), st.text(max_size=400), st.integers(0, 3000))
@example(b"=?utf-8?b?00000?=", "subscribe .nl", 2000)
def test_read_claim_never_raises_and_a_claim_is_a_delegated_cctld_the_sender_wrote(
    subject: bytes, body: str, max_chars: int
) -> None:
    raw = (
        b"From: Jan <jan@registry.example>\r\nTo: "
        + BOT.encode()
        + b"\r\nSubject: "
        + subject
        + b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + body.encode("utf-8", "surrogatepass")
    )
    mail = parsed(raw)
    assume(mail is not None)
    claim = read_claim(mail, new_text(mail), max_chars)

    assert isinstance(claim, Claim | ClaimProblem)
    if isinstance(claim, Claim):
        assert is_cctld(claim.cctld.ascii)
        written = unicodedata.normalize("NFKC", mail.subject + "\n" + new_text(mail)).casefold()
        assert claim.cctld.ascii in written or claim.cctld.unicode.casefold() in written
        assert len(claim.words) <= max_chars + 200


@bounded(120)
@given(raw_mails())
def test_read_claim_never_raises_on_generated_mail(raw: bytes) -> None:
    mail = parsed(raw)
    assume(mail is not None)
    claim = read_claim(mail, new_text(mail), 2000)
    assert isinstance(claim, Claim | ClaimProblem)
    if isinstance(claim, Claim):
        assert is_cctld(claim.cctld.ascii)


# --- the decision of a reply ---------------------------------------------------------------------------


def reply_mail(body: str, container: str = "plain") -> InboundMail:
    msg = EmailMessage()
    msg["From"] = "Registry Admin <admin@nic.example>"
    msg["To"] = TOKEN_ADDRESS
    msg["Subject"] = "Re: [SECIR] Approval request for .example"
    if container == "flowed":
        msg.set_content(body, charset="utf-8", params={"format": "flowed"})
    elif container == "html":
        lines = "".join(f"<div>{line}</div>" for line in body.split("\n"))
        msg.set_content(f"<html><body>{lines}</body></html>", subtype="html", charset="utf-8")
    else:
        msg.set_content(body, charset="utf-8")
    return parse_mail(msg.as_bytes())


CONTAINERS = st.sampled_from(["plain", "flowed"])
LINES = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=60),
    st.sampled_from(
        [
            "",
            " ",
            "APPROVE",
            "approve.",
            "*APPROVE*",
            "DENY",
            "Deny!",
            "> APPROVE",
            ">> DENY",
            "--",
            "-- ",
            "Sent from my iPhone",
            "On Mon, 1 Dec 2026, Jan <j@x.example> wrote:",
            "-----Original Message-----",
            "From: x@y",
            "Subject: hi",
            "I approve",
            "APPROVE DENY",
            "##- Please type your reply above this line -##",
            "\u00a0APPROVE\u3000",
            "ＡＰＰＲＯＶＥ",
        ]
    ),
)
TEXTS = st.lists(LINES, max_size=12).map("\n".join)


def approves(line: str) -> bool:
    return decision_word(line) is Verdict.APPROVE


def without_approve(text: str) -> str:
    """The text with every line that could read as APPROVE on its own taken out (the model of 'no APPROVE')."""
    return "\n".join(line for line in text.split("\n") if not approves(normalise(line).strip()))


@bounded(250)
@given(TEXTS, st.sampled_from(["plain", "flowed", "html"]))
@example("APPROVE", "plain")
@example("> quoted\nAPPROVE", "plain")
def test_approve_only_from_a_first_new_text_line_that_reads_approve(body: str, container: str) -> None:
    mail = reply_mail(body, container)
    decision = read_decision(mail)

    assert decision.verdict in (Verdict.APPROVE, Verdict.DENY, Verdict.UNCLEAR)
    if decision.verdict is not Verdict.UNCLEAR:
        text = new_text(mail)
        first = next(line.strip() for line in text.split("\n") if line.strip())
        assert decision.first_line == first
        assert decision_word(first) is decision.verdict
        word = re.fullmatch(r"[\s*_]*(\w+)[\s*_.,!;:]*", first)
        assert word is not None and word.group(1).isascii(), first
        assert word.group(1).lower() == decision.verdict.value.lower(), first
        # Never both: the other word on no line of the new text.
        other = Verdict.DENY if decision.verdict is Verdict.APPROVE else Verdict.APPROVE
        assert not any(decision_word(line) is other for line in text.split("\n"))
    else:
        assert decision.why


@bounded(200)
@given(TEXTS, CONTAINERS, st.sampled_from(["> APPROVE", ">APPROVE", "> > APPROVE", ">> approve.", "> *APPROVE*"]))
def test_a_quoted_approve_in_front_of_any_text_never_approves(text: str, container: str, quoted: str) -> None:
    body = quoted + "\n" + without_approve(text)
    assert read_decision(reply_mail(body, container)).verdict is not Verdict.APPROVE, body


ATTRIBUTIONS = st.sampled_from(
    [
        "On Thu, 26 Nov 2026 at 09:00, join@lists.example.org wrote:",
        "On 26/11/2026 09:00, Secretariat <join@lists.example.org> wrote:",
        "Am 26.11.2026 um 09:00 schrieb join@lists.example.org:",
        "Le 26 nov. 2026 à 09:00, join@lists.example.org a écrit :",
        "El 26 nov 2026, a las 09:00, join@lists.example.org escribió:",
        "On Thu, 26 Nov 2026 at 09:00,\njoin@lists.example.org wrote:",
        "2026-11-26 9:00 GMT+01:00 Bot <join@lists.example.org>:",  # address-ended (Gmail in some languages)
        "ср, 26 нояб. 2026 г. в 09:00, Bot <join@lists.example.org>:",
    ]
)


@bounded(200)
@given(
    TEXTS,
    ATTRIBUTIONS,
    st.sampled_from(["", "\n", "\n \n"]),
    st.sampled_from(["APPROVE", "approve", "*APPROVE*", "APPROVE."]),
    TEXTS,
    CONTAINERS,
)
def test_approve_only_below_an_attribution_line_never_approves(
    above: str, attribution: str, gap: str, word: str, below: str, container: str
) -> None:
    body = f"{without_approve(above)}\n{attribution}\n{gap}{word}\n{below}"
    decision = read_decision(reply_mail(body, container))
    assert decision.verdict is not Verdict.APPROVE, (body, decision)


BOTH = st.tuples(
    st.sampled_from(["APPROVE", "approve", "Approve", "*APPROVE*"]),
    st.sampled_from(["DENY", "deny", "Deny", "*DENY*"]),
    st.sampled_from([" ", " or ", "/", " / ", ", ", " - not ", "|", " and ", " ... "]),
    st.booleans(),
    st.sampled_from(["", ".", "!", " please", " (see below)"]),
).map(lambda t: (t[0] + t[2] + t[1] if t[3] else t[1] + t[2] + t[0]) + t[4])


@bounded(150)
@given(BOTH, TEXTS, CONTAINERS)
def test_a_first_line_naming_both_words_never_decides(line: str, rest: str, container: str) -> None:
    decision = read_decision(reply_mail(f"{line}\n{rest}", container))
    assert decision.verdict is Verdict.UNCLEAR, (line, decision)


# Letters of other scripts that look like the Latin ones (NFKC leaves them alone), and marks that change
# how a word is shown; fullwidth and other compatibility forms are not here: NFKC makes them plain ASCII,
# on purpose (replies.normalise).
HOMOGLYPHS = {
    "A": "АΑᎪꓮ",
    "P": "РΡᏢꓑ",
    "R": "ᎡꓣƦ",
    "O": "ОΟՕ〇ᴏ",
    "V": "ᏙꓦѴ",
    "E": "ЕΕᎬꓰ",
    "D": "Ꭰꓓ",
    "N": "ΝꓠƝ",
    "Y": "ҮΥꓬ",
    "a": "аɑα",
    "p": "рρ",
    "r": "г",
    "o": "оο",
    "v": "ѵν",
    "e": "е",
    "d": "ԁ",
    "n": "ո",
    "y": "у",
}
MARKS = ["\u202e", "\u202d", "\u2066", "\u0301", "\u0308", "\u034f"]


@st.composite
def look_alikes(draw: st.DrawFn) -> str:
    word = draw(st.sampled_from(["APPROVE", "approve", "Approve", "DENY", "deny"]))
    letters = list(word)
    positions = draw(st.sets(st.integers(0, len(letters) - 1), min_size=1, max_size=3))
    for i in positions:
        if draw(st.booleans()) and letters[i] in HOMOGLYPHS:
            letters[i] = draw(st.sampled_from(HOMOGLYPHS[letters[i]]))
        else:
            letters[i] = letters[i] + draw(st.sampled_from(MARKS))
    spoof = "".join(letters)
    assume(not unicodedata.normalize("NFKC", spoof).isascii())
    return spoof


@bounded(200)
@given(look_alikes(), st.sampled_from(["", "*", " ", "\u00a0"]), TEXTS, CONTAINERS)
def test_a_look_alike_of_a_decision_word_never_decides(spoof: str, pad: str, rest: str, container: str) -> None:
    body = f"{pad}{spoof}{pad}\n{without_approve(rest)}"
    decision = read_decision(reply_mail(body, container))
    assert decision.verdict is Verdict.UNCLEAR, (spoof, decision)


@bounded(150)
@given(raw_mails())
def test_read_decision_never_raises_on_generated_mail(raw: bytes) -> None:
    mail = parsed(raw)
    assume(mail is not None)
    decision = read_decision(mail)
    assert decision.verdict in (Verdict.APPROVE, Verdict.DENY, Verdict.UNCLEAR)
    if decision.verdict is not Verdict.UNCLEAR:
        assert decision_word(decision.first_line) is decision.verdict
