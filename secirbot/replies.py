"""Reading an approver's decision out of a reply: what the first line of their new text says.

Owns the strict rule: the first non-empty line of the new text (as `newtext` reads it, the one reader of
what a person wrote) must be exactly APPROVE or DENY, and the opposite word must not appear on a line of
its own below it. Anything else is UNCLEAR, with a reason a human can act on; this module never guesses.
Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from secirbot.message import InboundMail
from secirbot.newtext import HTML_QUOTE_SEPARATOR, REPLY_MARKER, html_to_text, new_text, normalise, read_new_text

# Re-exported: callers and tests that know them from here keep working.
__all__ = [
    "HTML_QUOTE_SEPARATOR",
    "MAX_NEW_TEXT_CHARS",
    "MAX_REASON_CHARS",
    "REPLY_MARKER",
    "ReadDecision",
    "Verdict",
    "decision_word",
    "html_to_text",
    "new_text",
    "normalise",
    "read_decision",
]

MAX_REASON_CHARS = 1000
MAX_NEW_TEXT_CHARS = 4000
# Whitespace a decision line may be padded with (str.strip() without arguments strips these too).
_SPACES = "".join(c for c in map(chr, range(0x3000 + 1)) if c.isspace())


class Verdict(StrEnum):
    APPROVE = "APPROVE"
    DENY = "DENY"
    WITHDRAW = "WITHDRAW"  # the requester's only word: close my request
    OBJECT = "OBJECT"  # a contact (or a qualifying delegate) cancels a delegated APPROVE in its window
    UNCLEAR = "UNCLEAR"


@dataclass(frozen=True)
class ReadDecision:
    verdict: Verdict
    reason: str  # DENY: the approver's words after the DENY line (up to the quote)
    first_line: str  # the first non-empty line of the new text, as read
    new_text: str  # for the audit
    why: str  # UNCLEAR: what to tell the approver in the clarification reply


# --- the public functions --------------------------------------------------------------------------

APPROVER_WORDS = (Verdict.APPROVE, Verdict.DENY, Verdict.OBJECT)
REQUESTER_WORDS = (Verdict.WITHDRAW,)


# A word on its own line below the first that contradicts it makes the reply unclear.
_CONFLICTING = {
    Verdict.APPROVE: (Verdict.DENY, Verdict.OBJECT),
    Verdict.DENY: (Verdict.APPROVE,),
    Verdict.OBJECT: (Verdict.APPROVE, Verdict.DENY),
}


def read_decision(mail: InboundMail, allowed: tuple[Verdict, ...] = APPROVER_WORDS) -> ReadDecision:
    """The verdict of a reply: one of the `allowed` words only when the first line of the new text is
    exactly that word (an approver's APPROVE or DENY; a requester's WITHDRAW)."""
    extract = read_new_text(mail)
    text = extract.text
    audit = text[:MAX_NEW_TEXT_CHARS]
    lines = [line.strip() for line in text.split("\n")]
    content = [line for line in lines if line]
    if not content:
        return _unclear("", audit, extract.problem or "your reply contained no new text above the quoted message")
    first = content[0]
    word = decision_word(first)
    if word not in allowed:
        word = None
    if word is None:
        if _names_both(first):
            return _unclear(first, audit, "your reply named both APPROVE and DENY")
        return _unclear(first, audit, f"the first line of your reply was '{_shorten(first)}'")
    opposite = _CONFLICTING.get(word, ())
    clash = next((w for w in map(decision_word, content[1:]) if w in opposite), None)
    if clash is not None:
        one, other = sorted((word, clash), key=list(Verdict).index)
        return _unclear(first, audit, f"your reply named both {one.value} and {other.value}")
    reason = ""
    if word is Verdict.DENY:
        after = lines[lines.index(first) + 1 :]
        reason = "\n".join(after).strip()[:MAX_REASON_CHARS]
    return ReadDecision(verdict=word, reason=reason, first_line=first, new_text=audit, why="")


def decision_word(line: str) -> Verdict | None:
    """APPROVE or DENY if the line is exactly that word (any case; surrounding whitespace, '*'/'_' and
    trailing .,!;: tolerated), else None."""
    word = line.lstrip(_SPACES + "*_").rstrip(_SPACES + "*_.,!;:")
    # ASCII only: a look-alike letter from another script must not pass as the word.
    if not word.isascii():
        return None
    return {
        "approve": Verdict.APPROVE,
        "deny": Verdict.DENY,
        "withdraw": Verdict.WITHDRAW,
        "object": Verdict.OBJECT,
    }.get(word.lower())


# --- reading the first line --------------------------------------------------------------------------


def reads_as_decision(decision: ReadDecision) -> bool:
    """Whether the new text says APPROVE or DENY anywhere as a word: a human deciding, even if unclearly.
    Mail that does not is no forgery attempt, whoever sent it (a colleague's question, a machine)."""
    words = {w.lower() for w in re.findall(r"[A-Za-z]+", decision.new_text)}
    return bool(words & {"approve", "deny", "object"})


def _names_both(line: str) -> bool:
    words = {w.lower() for w in re.findall(r"[A-Za-z]+", line)}
    return "approve" in words and "deny" in words


def _shorten(line: str, limit: int = 80) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _unclear(first: str, audit: str, why: str) -> ReadDecision:
    return ReadDecision(verdict=Verdict.UNCLEAR, reason="", first_line=first, new_text=audit, why=why)
