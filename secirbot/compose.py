"""Composing outgoing mail: jinja2 templates from `templates/` rendered into a finished RFC 5322 message.

A template file starts with a `Subject:` line and a blank line; the rest is the body. Templates get an
explicit context dict (StrictUndefined: a missing value is an error, not an empty string). Every message
carries a Message-ID fixed here, so that a re-send after a crash is byte-for-byte the same mail, and the
headers that keep auto-responders quiet and let us recognise our own mail coming back.

It also owns the languages of mail: templates mark their text with jinja2's i18n extension
(`{% trans %}`), the message catalogs are `secirbot/locale/<lang>/LC_MESSAGES/secirbot.po`, compiled in
memory when first used (no build step), and a mail in a ccTLD's language is rendered in that language and,
when bilingual, in English below it.
"""

from __future__ import annotations

import email.charset
import email.policy
import email.utils
import functools
import io
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
from babel.messages.catalog import Catalog as BabelCatalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import PoFileError, read_po
from babel.support import NullTranslations, Translations

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


# --- languages -------------------------------------------------------------------------------------------

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "secirbot"
SOURCE_LANGUAGE = "en"  # the templates' own text; its catalog is the identity
RTL_LANGUAGES = frozenset({"ar", "fa", "he", "ur"})
# Unicode FIRST STRONG ISOLATE / POP DIRECTIONAL ISOLATE: an address, a token or a ccTLD name placed into
# right-to-left text keeps its own left-to-right order and does not reorder the words around it.
FSI, PDI = "\u2068", "\u2069"
_PLACEHOLDER = re.compile(r"%\(\w+\)s")


def N_(message: str) -> str:
    """Marks a message for extraction (pybabel -k N_) where it is translated later, at render time."""
    return message


# Said in every mail in a ccTLD's language, in that language and in English: the answer words (replies.py
# reads these four) are never translated, so an approver writing in their own language still answers with one.
DECISION_WORDS_NOTE = N_(
    "Please note: the answer words APPROVE, DENY, NOT MINE and OBJECT are the same in every\n"
    "language. Write them in English, exactly as shown; a translated word is not read as an answer."
)
ENGLISH_BELOW = N_("The same message in English follows below.")
SEPARATOR = "-" * 30 + " English " + "-" * 30


def available_languages() -> list[str]:
    """Language codes with a catalog (English, the templates' own language, always)."""
    found = {p.parent.parent.name for p in LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po")}
    return sorted(found | {SOURCE_LANGUAGE})


@dataclass(frozen=True)
class Language:
    """Which language a mail is written in; bilingual adds the English text below the local one."""

    code: str = SOURCE_LANGUAGE
    bilingual: bool = True

    @property
    def is_source(self) -> bool:
        return self.code == SOURCE_LANGUAGE


ENGLISH = Language()


class Catalog:
    """One language's compiled messages, as the gettext callables jinja2's trans blocks call.

    Old-style gettext: jinja2 puts the values in with `%` after the call, so for a right-to-left language
    the translated string can wrap each `%(name)s` in isolates first.
    """

    def __init__(self, code: str, translations: NullTranslations):
        self.code = code
        self.translations = translations
        self.rtl = code in RTL_LANGUAGES

    def _isolate(self, text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: FSI + m.group(0) + PDI, text) if self.rtl else text

    def gettext(self, message: str) -> str:
        return self._isolate(self.translations.gettext(message))

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self._isolate(self.translations.ngettext(singular, plural, n))

    def callables(self) -> dict[str, Callable[..., str]]:
        return {"gettext": self.gettext, "_": self.gettext, "ngettext": self.ngettext}


def po_path(code: str) -> Path:
    return LOCALE_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"


def _catalog_problems(messages: BabelCatalog) -> list[str]:
    """What would make a translated mail wrong rather than merely English: a placeholder renamed, lost or
    added (a KeyError, or a value silently dropped), a stray '%', the wrong number of plural forms."""
    problems = [f"{m.id!r}: {'; '.join(map(str, errors))}" for m, errors in messages.check()]
    for message in messages:
        if not message.id or not message.string:
            continue
        ids = [message.id] if isinstance(message.id, str) else list(message.id)
        wanted = set(_PLACEHOLDER.findall(ids[0])) | set(_PLACEHOLDER.findall(ids[-1]))
        for text in [message.string] if isinstance(message.string, str) else list(message.string):
            if text and (set(_PLACEHOLDER.findall(text)) != wanted or "%" in _PLACEHOLDER.sub("", text)):
                problems.append(f"{ids[0]!r}: placeholders {sorted(wanted)} expected in {text!r}")
    return problems


@functools.cache
def catalog(code: str) -> Catalog:
    """The catalog of `code`, read from its .po and compiled to .mo in memory (fuzzy entries left out, as
    msgfmt does). Raises TemplateError for a language without a catalog."""
    path = po_path(code)
    if not path.exists():
        if code == SOURCE_LANGUAGE:
            return Catalog(code, NullTranslations())
        raise TemplateError(f"no catalog for language {code!r} (available: {', '.join(available_languages())})")
    try:
        with path.open("rb") as fp:
            messages = read_po(fp, locale=code, domain=DOMAIN, abort_invalid=True)
    except (OSError, ValueError, PoFileError) as exc:
        raise TemplateError(f"catalog {path}: {exc}") from exc
    problems = _catalog_problems(messages)
    if problems:
        raise TemplateError(f"catalog {path}: " + "; ".join(problems[:5]))
    compiled = io.BytesIO()
    write_mo(compiled, messages)
    compiled.seek(0)
    return Catalog(code, Translations(compiled, domain=DOMAIN))


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
            "extensions": ["jinja2.ext.i18n"],
        }
        self.env = jinja2.Environment(**options)
        self.subject_env = jinja2.Environment(**options, finalize=_flat)
        for env in (self.env, self.subject_env):
            env.filters["quote_unverified"] = quote_unverified
            env.filters["lookup"] = _lookup
            # English unless render() passes a language's callables in the context.
            env.install_null_translations(newstyle=False)  # type: ignore[attr-defined]
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

    def render(self, name: str, context: Mapping[str, Any], language: Language = ENGLISH) -> Rendered:
        """The mail in English, or in `language` (with the English below it when bilingual)."""
        english = self._render_in(name, context, catalog(SOURCE_LANGUAGE))
        if language.is_source:
            return english
        local_catalog = catalog(language.code)
        local = self._render_in(name, context, local_catalog)
        if local == english:  # a template nobody marked for translation (mail to the Secretariat)
            return english
        return _in_two_languages(local, english, local_catalog, language.bilingual)

    def _render_in(self, name: str, context: Mapping[str, Any], language: Catalog) -> Rendered:
        values = {**context, **language.callables()}
        try:
            subject_tpl, body_tpl, pad = self._compiled(name)
            subject = subject_tpl.render(values)
            body = body_tpl.render(values).removeprefix(pad)
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"template {name} not found in {self.folder}") from exc
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"template {name}: {exc.message}") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"template {name}:{exc.lineno}: {exc.message}") from exc
        return Rendered(subject=" ".join(one_line(subject).split()), body=body.rstrip() + "\n")

    def check(self, context_for: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Render every named template with a sample context, in every language with a catalog (a broken
        catalog shows here, not when the first approver of that language is due a mail); return the problems."""
        problems = []
        for name, context in context_for.items():
            for code in available_languages():
                try:
                    self.render(name, context, Language(code))
                except TemplateError as exc:
                    problems.append(str(exc) if code == SOURCE_LANGUAGE else f"{exc} (language {code})")
                    break
        return problems


def _flat(value: object) -> str:
    return one_line(str(value))


def _lookup(key: str, table: Mapping[str, str]) -> str:
    """`roles | map("lookup", names)`: a value's translated name, the value itself where there is none."""
    return table.get(key, key)


def _split_signature(body: str) -> tuple[str, str]:
    main, sep, signature = body.rpartition("\n-- \n")
    return (main, signature.strip("\n")) if sep else (body, "")


def _in_two_languages(local: Rendered, english: Rendered, language: Catalog, bilingual: bool) -> Rendered:
    """One text/plain body: the local text, the note on the decision words in both languages, then (when
    bilingual) a separator and the English text. The signature comes once, last: mail clients cut
    everything below "-- " when quoting, and the English text must survive in a reply."""
    local_main, local_signature = _split_signature(local.body)
    english_main, english_signature = _split_signature(english.body)
    # A leading paragraph that is not translated (the reply marker) is said once, at the very top, where
    # the reply parser and the approver's eye look for it.
    head, sep, rest = english_main.partition("\n\n")
    if sep and local_main.startswith(head + "\n\n"):
        english_main = rest
    note = language.gettext(DECISION_WORDS_NOTE)
    if bilingual:
        parts = [
            local_main,
            note + "\n" + language.gettext(ENGLISH_BELOW),
            SEPARATOR,
            english_main,
            DECISION_WORDS_NOTE,
        ]
        # The English subject: it carries the requester's address, the ccTLD and [#id], and a list view shows
        # only its first 60 or so characters; two languages in it would push those out of sight. English is
        # also what the other contacts of the ccTLD, the Secretariat and anyone's filter rules see for the
        # same request. The body opens in the contact's language.
        subject = english.subject
    else:
        parts = [local_main, note, DECISION_WORDS_NOTE]
        subject = local.subject
    signatures = [s for s in dict.fromkeys((local_signature, english_signature if bilingual else "")) if s]
    body = "\n\n".join(part.strip("\n") for part in parts)
    if signatures:
        body += "\n-- \n" + "\n".join(signatures)
    return Rendered(subject=subject, body=body + "\n")


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
