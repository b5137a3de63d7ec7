"""Composing outgoing mail: jinja2 templates from `templates/` rendered into a finished RFC 5322 message.

A template file starts with a `Subject:` line and a blank line; the rest is the body. Templates get an
explicit context dict (StrictUndefined: a missing value is an error, not an empty string). Every message
carries a Message-ID fixed here, so that a re-send after a crash is byte-for-byte the same mail, and the
headers that keep auto-responders quiet and let us recognise our own mail coming back.
"""

from __future__ import annotations

import email.charset
import email.policy
import email.utils
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.message import Message
from pathlib import Path
from typing import Any, Literal

import jinja2

from .message import one_line
from .newtext import normalise

LOOP_HEADER = "X-Secirbot-Loop"
POLICY = email.policy.SMTP.clone(max_line_length=78)
WIRE = email.policy.compat32.clone(linesep="\r\n", max_line_length=78)
_UTF8 = email.charset.Charset("utf-8")
_UTF8.header_encoding = email.charset.QP  # encoded words stay readable: =?utf-8?q?J=C3=B6rg?=
_UTF8.body_encoding = email.charset.QP
_ASCII = email.charset.Charset("us-ascii")


class TemplateError(Exception):
    """A template is missing, malformed, or uses a value the caller did not give."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


class Templates:
    """The jinja2 environment over the templates folder.

    A template's first line (the Subject) is rendered on its own, through an environment that flattens
    every value placed into it to one line: a requester's name, a mail's subject or an IANA value with a
    line break (literal or RFC 2047-encoded, `=0D=0A`) can never end the Subject, start a header, or make
    the template unusable. The body is rendered as usual.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        options: dict[str, Any] = {
            "loader": jinja2.FileSystemLoader(str(folder), encoding="utf-8"),
            "undefined": jinja2.StrictUndefined,
            "autoescape": False,  # plain-text mail; nothing here is ever rendered as HTML
            "keep_trailing_newline": True,
            "trim_blocks": True,
            "lstrip_blocks": True,
        }
        self.env = jinja2.Environment(**options)
        self.subject_env = jinja2.Environment(**options, finalize=_flat)
        for env in (self.env, self.subject_env):
            env.filters["quote_unverified"] = quote_unverified
        self._parts: dict[str, tuple[Callable[[], bool], jinja2.Template, jinja2.Template, str]] = {}

    def names(self) -> list[str]:
        return sorted(self.env.list_templates(filter_func=lambda n: n.endswith(".txt")))

    def _compiled(self, name: str) -> tuple[jinja2.Template, jinja2.Template, str]:
        cached = self._parts.get(name)
        if cached is not None and cached[0]():
            return cached[1], cached[2], cached[3]
        source, _, uptodate = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
        head, sep, body = source.partition("\n\n")
        if not sep or not head.startswith("Subject:") or "\n" in head:
            raise TemplateError(f"template {name} must start with one 'Subject:' line and a blank line")
        # The body keeps its line numbers in error messages: it is compiled behind as many blank lines.
        pad = "\n" * (head.count("\n") + 2)
        subject = self.subject_env.from_string(head[len("Subject:") :])
        text = self.env.from_string(pad + body)
        self._parts[name] = (uptodate or (lambda: True), subject, text, pad)
        return subject, text, pad

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        try:
            subject_tpl, body_tpl, pad = self._compiled(name)
            subject = subject_tpl.render(dict(context))
            body = body_tpl.render(dict(context)).removeprefix(pad)
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"template {name} not found in {self.folder}") from exc
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"template {name}: {exc.message}") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"template {name}:{exc.lineno}: {exc.message}") from exc
        return Rendered(subject=" ".join(one_line(subject).split()), body=body.rstrip() + "\n")

    def check(self, context_for: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Render every named template with a sample context; return the problems found."""
        problems = []
        for name, context in context_for.items():
            try:
                self.render(name, context)
            except TemplateError as exc:
                problems.append(str(exc))
        return problems


def _flat(value: object) -> str:
    return one_line(str(value))


_DECISION_LINE = re.compile(r"^[\W_]*(approve|deny)[\W_]*$", re.IGNORECASE)


def quote_unverified(text: str, width: int = 600) -> str:
    """A requester's own words, cut to `width` (marked), every line prefixed so it cannot pass for ours,
    and no line that reads as a bare APPROVE or DENY even once the prefix is stripped."""
    clean = "".join(ch for ch in text if ch in "\n\t" or ch.isprintable())
    if len(clean) > width:
        clean = clean[:width].rstrip() + " [...]"
    lines = clean.strip().splitlines() or ["(nothing)"]
    out = []
    for line in lines:
        line = line.rstrip()
        if _DECISION_LINE.match(normalise(line)):
            line += " (their words)"
        out.append(("  | " + line).rstrip())
    return "\n".join(out)


_MSG_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,900}>")


def new_message_id(domain: str) -> str:
    """Random (never guessable, so nobody can thread mail into a request) and short enough not to fold."""
    return f"<{secrets.token_hex(12)}@{domain}>"


def _one_line(name: str, value: str) -> str:
    """Header values come from templates, IANA records and parsed mail: never let one carry a line break
    (header injection), and never let a non-ASCII address out without SMTPUTF8."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"line break in the {name} header: {value!r}")
    return value


def _address(name: str, addr: str, display: str = "") -> str:
    _one_line(name, addr)
    if not addr.isascii():
        raise ValueError(f"{name}: a non-ASCII address needs SMTPUTF8, which the bot does not use: {addr!r}")
    return email.utils.formataddr((_one_line(name, display), addr), charset=_UTF8) if display else addr


def compose(
    rendered: Rendered,
    *,
    sender: str,
    sender_name: str,
    to: Sequence[str],
    cc: Sequence[str] = (),
    reply_to: str | None = None,
    in_reply_to: str | None = None,
    when: datetime,
    auto: Literal["auto-generated", "auto-replied"] = "auto-generated",
    extra_headers: Mapping[str, str] | None = None,
) -> Message:
    """A finished message with a fresh Message-ID, ready to be stored and sent as is.

    Built with the email package's compat32 API: it writes the same RFC 5322/2047 message as the modern
    EmailMessage API at a third of the cost, which matters when a flood of mail each needs an answer.
    """
    domain = sender.rsplit("@", 1)[1]
    msg = Message()
    msg["From"] = _address("From", sender, sender_name)
    msg["To"] = ", ".join(_address("To", a) for a in to)
    if cc:
        msg["Cc"] = ", ".join(_address("Cc", a) for a in cc)
    if reply_to:
        msg["Reply-To"] = _address("Reply-To", reply_to)
    subject = _one_line("Subject", rendered.subject)
    msg["Subject"] = subject if subject.isascii() else Header(subject, _UTF8, header_name="Subject")  # type: ignore[assignment]
    msg["Date"] = email.utils.format_datetime(when)
    msg["Message-ID"] = new_message_id(domain)
    # Threading is a courtesy: a Message-ID we cannot repeat safely is left out, never a reason to fail.
    if in_reply_to and _MSG_ID.fullmatch(in_reply_to):
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    # RFC 3834: tell other robots not to answer; OOF/AutoReply keeps Exchange quiet without also
    # suppressing the non-delivery reports that tell us an IANA contact address is dead.
    msg["Auto-Submitted"] = auto
    msg["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    msg[LOOP_HEADER] = sender
    for name, value in (extra_headers or {}).items():
        msg[name] = _one_line(name, value)
    msg["MIME-Version"] = "1.0"
    body = rendered.body
    # Plain ASCII goes as 7bit, readable in any raw view; anything else as UTF-8 quoted-printable.
    msg.set_payload(body, _ASCII if body.isascii() and max(map(len, body.splitlines()), default=0) <= 998 else _UTF8)
    return msg


def as_bytes(msg: Message) -> bytes:
    """The wire form: CRLF line ends, as SMTP wants them and as the outbox stores them."""
    return msg.as_bytes(policy=WIRE)
