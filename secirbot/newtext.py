"""The words a sender wrote themselves in one mail: the one reader of new text, for every stage.

Owns: the body to read (the text/plain part `message` chose from the mail's own body, un-flowed if
format=flowed; else its HTML part through the converter below), normalising it (line ends, invisible
characters, NFKC), and where the quoted original begins: our REPLY_MARKER, "On ... wrote:" headers in many
languages, Outlook header blocks and separators, forwarding markers, signatures, "Sent from my iPhone"
lines, '>' quotes and HTML blockquotes. `classify` (is this a request?), `intake` (what does the request
say?) and `replies` (what did the approver decide?) all read `new_text`; nothing else cuts quotes, so no two
stages can disagree about which lines a person wrote. Pure: no I/O.

The HTML converter is our own small one rather than a general library: it must keep quote depth (a
blockquote or a Gmail/Thunderbird quote container reads as '>' lines) and mark where Outlook starts its
un-quoted original; general converters render those as ordinary text, which would let a quoted
APPROVE read as new text.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser

from secirbot.message import InboundMail

REPLY_MARKER = "##- Please type your reply above this line -##"


# What html_to_text writes where an Outlook-style quote begins (its header block has no '>' to see).
HTML_QUOTE_SEPARATOR = "_" * 32


# Quote headers and separators are short; the limit also keeps the backtracking regexes fast on hostile
# input (a 50,000-character line of dashes or '@'s from an HTML part).
_MAX_PATTERN_CHARS = 400

# In plain text (not format=flowed, not from HTML), a bottom-posted line directly under a quoted line this
# long may be the tail of that line, re-wrapped by a client that dropped the '>' (a line of our own
# request ending in the word APPROVE, for instance).
_WRAP_SUSPECT_CHARS = 50


@dataclass(frozen=True)
class NewText:
    text: str
    problem: str | None = None  # why an empty text is empty, when that is more than "nothing written"


def read_new_text(mail: InboundMail) -> NewText:
    """The text the sender wrote (quote, signature and our own request cut off), normalised."""
    extract = _extract(*_body_text(mail))
    return NewText(extract.text, extract.problem)


def cut_quote(text: str) -> str:
    """The new text of a plain text body (as `new_text` reads a text/plain part that is not flowed)."""
    return _extract(normalise(text)).text


def new_text(mail: InboundMail) -> str:
    """The text the sender wrote (quote, signature and our own request cut off), normalised."""
    return _extract(*_body_text(mail)).text


def normalise(text: str) -> str:
    """Line ends to LF, invisible characters removed, NFKC (non-breaking and wide spaces, full-width letters
    and colons become their plain forms)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.translate(_INVISIBLE)
    return unicodedata.normalize("NFKC", text)


_TAG_START = re.compile(r"[A-Za-z/!?]")


def _defuse(markup: str) -> str:
    """The markup with every '<' that cannot start a complete tag written as '&lt;'. html.parser rescans
    an unfinished tag from its start at every later '<': 200 KB of '<a' cost it a minute. One linear pass
    here keeps its work linear; a '<' that starts a tag closed before the next '<' is left as it is."""
    out: list[str] = []
    pos, gt = 0, -2  # gt: the next '>' at or after pos (-1: there is none left; -2: not looked up yet)
    while True:
        lt = markup.find("<", pos)
        if lt < 0:
            out.append(markup[pos:])
            return "".join(out)
        out.append(markup[pos:lt])
        if markup.startswith("<!--", lt):
            end = markup.find("-->", lt + 4)
            if end < 0:
                return "".join(out)  # an unterminated comment hides the rest, as in a browser
            out.append(markup[lt : end + 3])
            pos = end + 3
            continue
        if gt != -1 and gt <= lt:
            gt = markup.find(">", lt + 1)
        following = markup.find("<", lt + 1, gt if gt > 0 else len(markup))
        if gt < 0 or following >= 0 or not _TAG_START.match(markup, lt + 1):
            out.append("&lt;")
            pos = lt + 1
            continue
        out.append(markup[lt : gt + 1])
        pos = gt + 1


def html_to_text(html: str) -> str:
    """Plain text of an HTML body: head/style/script dropped, blocks and <br> as line breaks, blockquote
    (and Gmail/Thunderbird quote containers) as '> ' per depth, Outlook-style quote starts as a
    HTML_QUOTE_SEPARATOR line."""
    parser = _HtmlToText()
    parser.feed(_defuse(html))
    parser.close()
    return parser.text()


# --- choosing and preparing the body -----------------------------------------------------------------

# Zero-width and directional marks that clients sprinkle into text (Windows Mail puts U+200E into dates).
# Bidi embeddings and overrides (U+202A-U+202E, U+2066-U+2069) are deliberately kept: they can make text
# display as something other than what it is, so a line containing one must not match a decision word.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f\u180e"))


# A person's new text is at the top; these bounds keep a hostile megabyte body from costing more than a
# real one (the quoted original below the new text is cut off anyway).
MAX_TEXT_CHARS = 50_000
MAX_HTML_CHARS = 200_000


def _body_text(mail: InboundMail) -> tuple[str, bool]:
    """(the normalised body to read, whether its quoted lines may have been re-wrapped without '>')."""
    if mail.text is not None and mail.text.strip():
        text = mail.text[:MAX_TEXT_CHARS]
        if mail.text_flowed:
            return normalise(_unflow(normalise(text), mail.text_delsp)), False
        return normalise(text), True
    if mail.html:
        return normalise(html_to_text(mail.html[:MAX_HTML_CHARS])[:MAX_TEXT_CHARS]), False
    return "", False


def _unflow(text: str, delsp: bool) -> str:
    """RFC 3676: join soft-broken lines, so 'APPROVE ' + 'but only if...' reads as the one line it is."""
    out: list[str] = []
    pending: tuple[int, str] | None = None  # (quote depth, text so far) of an unfinished paragraph
    for raw in text.split("\n"):
        depth = len(raw) - len(raw.lstrip(">"))
        body = raw[depth:]
        if body.startswith(" "):
            body = body[1:]  # space-stuffing
        if pending is not None and pending[0] != depth:
            out.append(_quote_prefix(pending[0]) + pending[1])
            pending = None
        soft = body.endswith(" ") and body != "-- "
        if soft and delsp:
            body = body[:-1]
        joined = (pending[1] if pending else "") + body
        if soft:
            pending = (depth, joined)
        else:
            out.append(_quote_prefix(depth) + joined)
            pending = None
    if pending is not None:
        out.append(_quote_prefix(pending[0]) + pending[1])
    return "\n".join(out)


def _quote_prefix(depth: int) -> str:
    return ">" * depth + (" " if depth else "")


# --- where the quote begins --------------------------------------------------------------------------


def _extract(text: str, rewrap_risk: bool = True) -> NewText:
    lines = [line.rstrip() for line in text.split("\n")]
    cut, quote_at = _find_quote(lines)
    head = _trim(lines[:cut])
    if head or quote_at is None:
        return NewText(head)
    # Bottom-posting: nothing above a '>' quote, so the replier's text is what follows it.
    after = quote_at
    while after < len(lines) and (not lines[after].strip() or _is_quoted(lines[after])):
        after += 1
    if after == len(lines):
        return NewText("")
    above = lines[after - 1]
    if rewrap_risk and _is_quoted(above) and len(above.lstrip().lstrip(">").strip()) >= _WRAP_SUSPECT_CHARS:
        return NewText(
            "",
            "the text below the quoted message could not be told apart from the quote "
            "(please write your answer above the quoted message)",
        )
    rest = lines[after:]
    end, _ = _find_quote(rest)
    return NewText(_trim(rest[:end]))


def _trim(lines: list[str]) -> str:
    return "\n".join(lines).strip("\n ")


def _find_quote(lines: list[str]) -> tuple[int, int | None]:
    """(index where the quote begins, index of its first '>' line if it is a '>' quote the replier may have
    answered below; None if everything from the cut on is quote)."""
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if _is_quoted(line):
            return i, i
        if _ends_the_new_text(lines, i):
            return i, None
        header_end = _quote_header_end(lines, i)
        if header_end is not None:
            following = next((j for j in range(header_end + 1, len(lines)) if lines[j].strip()), None)
            if following is not None and _is_quoted(lines[following]):
                return i, following
            return i, None  # "On ... wrote:" over an unquoted original: all of it is quote
    return len(lines), None


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _ends_the_new_text(lines: list[str], i: int) -> bool:
    line = lines[i].strip()
    return (
        REPLY_MARKER in line
        or bool(_MARKER_START.match(line))
        or (len(line) <= _MAX_PATTERN_CHARS and bool(_SEPARATOR.match(line)))
        or bool(_SIGNATURE.match(line))
        or bool(_FORWARDED.match(line))
        or _is_sent_from(line)
        or _is_header_block(lines, i)
    )


# Our marker's start, for a client that wrapped the marker line itself.
_MARKER_START = re.compile(r"^##-\s*Please\b", re.IGNORECASE)

# "-----Original Message-----", "---------- Forwarded message ---------", "-------- Oprindelig besked
# --------", "---- On ... wrote ----" (any words between dashes), and Outlook's line of underscores.
_SEPARATOR = re.compile(r"^(?:-{2,}\s*\S.*\S\s*-{2,}|_{10,})$")

# "-- " (the RFC 3676 delimiter, trailing space already stripped), and the bare "--" many clients write.
_SIGNATURE = re.compile(r"^-{2,}$")

_FORWARDED = re.compile(
    r"^>?\s*(?:begin forwarded message|forwarded message|début du message réexpédié|message transféré"
    r"|anfang der weitergeleiteten nachricht|weitergeleitete nachricht|inicio del mensaje reenviado"
    r"|mensaje reenviado|inizio messaggio inoltrato|messaggio inoltrato|begin doorgestuurd bericht"
    r"|doorgestuurd bericht|início da mensagem reencaminhada|mensagem encaminhada"
    r"|videresendt meddelelse|videresendt melding|vidarebefordrat meddelande|välitetty viesti"
    r"|przekazana wiadomość|пересылаемое сообщение|пересланное сообщение)\s*:?$",
    re.IGNORECASE,
)

_SENT_VERBS = (
    "sent|envoyé|enviado|enviada|inviato|verzonden|sendt|skickat|gesendet|wysłane|wysłano|отправлено"
    "|надіслано|odesláno|lähetetty|elküldve|gönderildi"
)
_SENT_PREPOSITIONS = (
    r"from|with|via|using|by|on|depuis|de|desde|do|dal|da|vanaf|van|met|fra|från|von|vom|mit|z|ze|с|з"
    r"|à\s+partir\s+de|a\s+partir\s+de"
)
_SENT_FROM = re.compile(
    rf"^[(<\[]*\s*(?:(?:{_SENT_VERBS})\s+(?:{_SENT_PREPOSITIONS})\b"
    r"|lähetetty\s+\S+sta\b"
    r"|(?:von|vom)\s+meinem\b"
    r"|diese\s+nachricht\s+wurde\s+von\b"
    r"|(?:get|obtenir|holen\s+sie\s+sich|descargar|baixe\s+o)\s+(?:\[)?outlook\b"
    r"|from\s+my\s+\w"
    r"|(?:从我的|從我的|来自我的|寄件自|發自我的|发自我的))",
    re.IGNORECASE,
)
_SENT_FROM_CJK_SUFFIX = re.compile(r"(?:から送信|에서\s*보냄|에서\s*보낸\s*메일|发送|傳送|寄出)$")


def _is_sent_from(line: str) -> bool:
    if len(line) > 120:
        return False
    return bool(_SENT_FROM.match(line)) or (len(line) <= 60 and bool(_SENT_FROM_CJK_SUFFIX.search(line)))


# Outlook's header block, which it writes without '>': "From: ..." followed within a few lines by
# "Sent:"/"Date:"/"To:"/"Subject:", in the language of the replier's client.
_HEADER_NAMES = {
    "from": "from|von|de|de la|van|fra|från|frá|от|від|od|da|lähettäjä|feladó|kimden|από|šalje|saatja|nuo"
    "|发件人|寄件者|差出人|보낸\\s*사람",
    "when": "sent|date|gesendet|datum|envoyé|enviado|enviada|fecha|data|inviato|verzonden|sendt|dato|skickat"
    "|lähetetty|päivämäärä|wysłano|wysłane|отправлено|дата|надіслано|odesláno|elküldve|dátum"
    "|gönderildi|tarih|trimis|στάλθηκε|poslano|saadetud|发送时间|日期|傳送時間|送信日時|日付"
    "|보낸\\s*날짜",
    "to": "to|an|à|a|aan|para|til|till|vastaanottaja|do|кому|komu|címzett|kime|către|προς|prima|adressaat"
    "|收件人|收件者|宛先|받는\\s*사람",
    "cc": "cc|kopie|kopio|dw|копия|копія|másolat|bilgi|κοιν|抄送|副本",
    "subject": "subject|betreff|objet|onderwerp|asunto|oggetto|assunto|emne|ämne|aihe|temat|тема|předmět"
    "|tárgy|konu|subiect|θέμα|predmet|teema|efni|主题|主旨|件名|제목",
}
_HEADER_LINE = re.compile(
    r"^[*_]*(?:" + "|".join(f"(?P<{key}>{names})" for key, names in _HEADER_NAMES.items()) + r")[*_]*\s*:",
    re.IGNORECASE,
)
_HEADER_BLOCK_WINDOW = 6


def _header_kind(line: str) -> str | None:
    match = _HEADER_LINE.match(line.strip())
    if not match:
        return None
    return next(key for key, value in match.groupdict().items() if value is not None)


def _is_header_block(lines: list[str], i: int) -> bool:
    first = _header_kind(lines[i])
    if first is None:
        return False
    window = lines[i + 1 : i + 1 + _HEADER_BLOCK_WINDOW]
    return any(kind not in (None, first) for kind in map(_header_kind, window))


# "On <date>, <name> <addr> wrote:" and its translations, also wrapped over two or three lines.
_QUOTE_VERBS = (
    r"wrote|writes|schrieb|schreef|geschreven|a\s+écrit|a\s+ecrit|écrit|escribió|escribio|ha\s+escrito"
    r"|ha\s+scritto|scrisse|escreveu|napisał(?:\(a\)|a)?|napisal(?:\(a\)|a)?|napsal(?:\(a\)|a)?"
    r"|napísal(?:\(a\)|a)?|napisao|napisala|pisze|написал(?:\(а\)|а)?|написав(?:\(ла\)|ла)?"
    r"|написа(?:ла|о)?|пишет|пише|skrev|skrifaði|kirjoitti|kirjutas|rakstīja|rašė|írta|yazdı|έγραψε"
    r"|a\s+scris|va\s+escriure|menulis|đã\s+viết|写道|寫道|書きました|のメッセージ|작성|כתב|كتب"
)
_VERB_END = re.compile(rf"(?:{_QUOTE_VERBS})\s*:$", re.IGNORECASE)
# Gmail in Russian, Japanese and others: "ср, 30 апр. 2025 г. в 15:19, John Doe <doe@example.com>:"; also
# Apple's "... skrev Jeff <info@discourse.org<mailto:info@discourse.org>>:".
_ADDRESS_END = re.compile(r"@[^<>\s]+\s*>+\s*:$")
# How such a header starts: a date, a weekday or "On"/"Le"/"Am"/... before a date, or an address.
_HEADER_OPENER = re.compile(
    r"^[-\s]*(?:\d|[^\W\d_]{1,12}[.,]?\s+\d"
    r"|(?:on|am|le|el|il|em|op|den|dnia|w\s+dniu|på|dne|ve|v|в|у|на)\b)",
    re.IGNORECASE,
)
_HEADER_MAX_LINES = 3
_WRAPPED_ADDRESS_CLOSE = re.compile(r"^>\s*:$")


def _quote_header_end(lines: list[str], i: int) -> int | None:
    """Index of the last line of a quote header starting at line i, else None."""
    if not (_HEADER_OPENER.match(lines[i].strip()) or "@" in lines[i]):
        return None
    joined = ""
    for j in range(i, min(i + _HEADER_MAX_LINES, len(lines))):
        line = lines[j].strip()
        # Gmail wraps a long header right before the ">:" that closes the address (Norwegian sample).
        if not line or (_is_quoted(line) and not (j > i and _WRAPPED_ADDRESS_CLOSE.match(line))):
            return None
        if j > i and _HEADER_OPENER.match(line):
            return None  # a header starts on this line: line i is the replier's, not part of it
        joined = f"{joined} {line}".strip()
        if len(joined) > _MAX_PATTERN_CHARS:
            return None
        has_date_or_address = bool(re.search(r"\d|@", joined))
        if has_date_or_address and _VERB_END.search(joined):
            return j
        if re.search(r"\d", joined) and _ADDRESS_END.search(joined):
            return j
    return None


# --- HTML to text --------------------------------------------------------------------------------------

_SKIPPED = frozenset({"head", "style", "script", "title", "template", "noscript", "xml"})
_VOID = frozenset(
    {"br", "hr", "img", "meta", "link", "input", "wbr", "base", "col", "area", "source", "embed", "param", "track"}
)
_BLOCKS = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "caption",
        "center",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "html",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    }
)
# Containers whose whole content is quote (attribution line included): read as one more '>' level.
_QUOTE_CLASSES = frozenset({"gmail_quote", "moz-cite-prefix", "yahoo_quoted", "protonmail_quote"})
# Where Outlook-style clients start the quoted original (a header block without '>' follows).
_OUTLOOK_IDS = frozenset({"divrplyfwdmsg", "olk_src_body_section", "stopspelling", "zwchr"})


@dataclass
class _Open:
    tag: str
    depth_added: int
    skipped: bool


class _HtmlToText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._open: list[_Open] = []
        self._open_tags: Counter[str] = Counter()  # so an end tag finds its start tag in constant time
        self._depth = 0
        self._skip = 0
        self._pre = 0
        self._line: list[str] = []
        self._lines: list[str] = []

    def text(self) -> str:
        self._flush()
        return "\n".join(self._lines)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body" and self._open_tags["head"]:
            self.handle_endtag("head")  # an unclosed <head> must not swallow the body
        if self._skip:
            if tag not in _VOID:
                self._push(_Open(tag, 0, tag in _SKIPPED))
            return
        if tag == "br":
            self._flush(force=True)
            return
        if tag == "hr" or _starts_outlook_quote(dict(attrs)):
            self._separator()
        if tag in _VOID:
            return
        classes = set((dict(attrs).get("class") or "").lower().split())
        added = 1 if tag == "blockquote" or (classes & _QUOTE_CLASSES) else 0
        if tag in _BLOCKS or added:
            self._flush()
        self._push(_Open(tag, added, tag in _SKIPPED))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def _push(self, entry: _Open) -> None:
        self._open.append(entry)
        self._open_tags[entry.tag] += 1
        self._depth += entry.depth_added
        self._skip += entry.skipped
        self._pre += entry.tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        if not self._open_tags[tag]:
            if tag in _BLOCKS and not self._skip:
                self._flush()
            return
        while self._open:
            entry = self._open.pop()
            self._open_tags[entry.tag] -= 1
            if not self._skip and (entry.tag in _BLOCKS or entry.depth_added):
                self._flush()
            self._skip -= entry.skipped
            self._pre -= entry.tag == "pre"
            if entry.depth_added:
                self._depth -= entry.depth_added
                if not self._skip:
                    self._flush(force=True)  # a blank line after a quote, as plain-text clients write it
            if entry.tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            pieces = data.split("\n")
            for piece in pieces[:-1]:
                self._line.append(piece)
                self._flush(force=True)
            self._line.append(pieces[-1])
        else:
            self._line.append(re.sub(r"[ \t\n\r\f]+", " ", data))

    def _flush(self, force: bool = False) -> None:
        text = "".join(self._line)
        text = text.rstrip() if self._pre else text.strip()
        self._line = []
        if text or force:
            prefix = "> " * self._depth
            self._lines.append((prefix + text).rstrip())

    def _separator(self) -> None:
        self._flush()
        self._lines.append("> " * self._depth + HTML_QUOTE_SEPARATOR)


def _starts_outlook_quote(attrs: dict[str, str | None]) -> bool:
    ids = {(attrs.get("id") or "").lower()} | set((attrs.get("class") or "").lower().split())
    if ids & _OUTLOOK_IDS:
        return True
    style = re.sub(r"\s+", "", (attrs.get("style") or "").lower())
    # Outlook: "border:none;border-top:solid #B5C4DF 1.0pt"; Windows Mail: "border-top-style: solid".
    return "border-top:solid" in style or "border-top-style:solid" in style
