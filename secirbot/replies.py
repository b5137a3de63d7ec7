"""Reading an approver's decision out of a reply: what the first line of their new text says.

Owns the strict rule: the first non-empty line of the new text (as `newtext` reads it, the one reader of
what a person wrote) must be exactly APPROVE, DENY or NOT MINE (alias ABSTAIN: "not mine to judge", no
decision), and no other of these words may appear on a line of its own below it. Anything else is UNCLEAR,
with a reason a human can act on; this module never guesses. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise

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
    NOT_MINE = "NOT MINE"  # an approver's "not mine to judge": recorded, decides nothing
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

APPROVER_WORDS = (Verdict.APPROVE, Verdict.DENY, Verdict.NOT_MINE, Verdict.OBJECT)
REQUESTER_WORDS = (Verdict.WITHDRAW,)


def read_decision(mail: InboundMail, allowed: tuple[Verdict, ...] = APPROVER_WORDS) -> ReadDecision:
    """The verdict of a reply: one of the `allowed` words only when the first line of the new text is
    exactly that word (an approver's APPROVE, DENY or NOT MINE; a requester's WITHDRAW)."""
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
        named = _named_words(first)
        if len(named) > 1:
            return _unclear(first, audit, _both(named))
        return _unclear(first, audit, f"the first line of your reply was '{_shorten(first)}'")
    # Another of the allowed words standing as a line below the first contradicts it.
    others = [w for w in allowed if w is not word and any(decision_word(line) is w for line in content[1:])]
    if others:
        return _unclear(first, audit, _both([w for w in allowed if w is word or w in others]))
    reason = ""
    if word is Verdict.DENY:
        after = lines[lines.index(first) + 1 :]
        reason = "\n".join(after).strip()[:MAX_REASON_CHARS]
    return ReadDecision(verdict=word, reason=reason, first_line=first, new_text=audit, why="")


def decision_word(line: str) -> Verdict | None:
    """APPROVE, DENY, NOT MINE (also NOT-MINE, NOTMINE, ABSTAIN) or WITHDRAW if the line is exactly that
    word (any case; surrounding whitespace, '*'/'_' and trailing .,!;: tolerated), else None."""
    word = line.lstrip(_SPACES + "*_").rstrip(_SPACES + "*_.,!;:")
    # ASCII only: a look-alike letter from another script must not pass as the word.
    if not word.isascii():
        return None
    word = word.lower()
    if _NOT_MINE.fullmatch(word):
        return Verdict.NOT_MINE
    return _WORDS.get(word)


_WORDS = {
    "approve": Verdict.APPROVE,
    "deny": Verdict.DENY,
    "abstain": Verdict.NOT_MINE,
    "withdraw": Verdict.WITHDRAW,
    "object": Verdict.OBJECT,
}
# "not mine", "not-mine", "not_mine", "notmine": NOT and MINE and nothing else; "not" alone is no word at all.
_NOT_MINE = re.compile(r"not(?:[ \t]+|[-_])?mine")


# --- reading the first line --------------------------------------------------------------------------


def reads_as_decision(decision: ReadDecision) -> bool:
    """Whether the new text says APPROVE, DENY or NOT MINE anywhere as words: a human answering, even if
    unclearly. Mail that does not is no forgery attempt, whoever sent it (a colleague's question, a machine)."""
    return bool(_named_words(decision.new_text))


def _named_words(text: str) -> list[Verdict]:
    """The approver's words the text names anywhere as words, in APPROVER_WORDS order ("not mine" counts
    as NOT MINE, "not" alone does not)."""
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", text)]
    found = set(words)
    named = {
        Verdict.APPROVE: "approve" in found,
        Verdict.DENY: "deny" in found,
        Verdict.NOT_MINE: bool({"abstain", "notmine"} & found) or ("not", "mine") in pairwise(words),
        Verdict.OBJECT: "object" in found,
    }
    return [w for w in APPROVER_WORDS if named[w]]


def _both(words: list[Verdict]) -> str:
    names = [w.value for w in words]
    if len(names) == 2:
        return f"your reply named both {names[0]} and {names[1]}"
    return f"your reply named {', '.join(names[:-1])} and {names[-1]}"


def _shorten(line: str, limit: int = 80) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _unclear(first: str, audit: str, why: str) -> ReadDecision:
    return ReadDecision(verdict=Verdict.UNCLEAR, reason="", first_line=first, new_text=audit, why=why)
