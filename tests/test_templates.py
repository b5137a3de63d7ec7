"""Every template in templates/: it renders with its sample context under StrictUndefined, and the approval
request never carries a line that reads as a decision, whatever the requester wrote.

Pure: the shipped templates and rules.yaml, secirbot.samples.sample_contexts, no servers.
"""

from __future__ import annotations

import dataclasses
import string
import unicodedata
from pathlib import Path
from typing import Any

import jinja2
import pytest

from secirbot.compose import TemplateError, Templates, quote_unverified
from secirbot.config import Config
from secirbot.replies import REPLY_MARKER, decision_word
from secirbot.rules import RequestRules, Rules, load_rules
from secirbot.samples import sample_contexts

REPO = Path(__file__).resolve().parent.parent
CONFIG = dataclasses.replace(Config(), templates=REPO / "templates", rules=REPO / "rules.yaml")
TEMPLATES = Templates(CONFIG.templates)
FILES = sorted(p.name for p in (REPO / "templates").glob("*.txt"))


def contexts(rules: Rules | None = None) -> dict[str, dict[str, Any]]:
    return sample_contexts(CONFIG, rules or load_rules(CONFIG.rules))


def test_every_template_file_has_a_sample_context_and_every_sample_a_template() -> None:
    assert FILES, "no templates found"
    assert sorted(TEMPLATES.names()) == FILES
    assert sorted(contexts()) == FILES


def test_templates_render_under_strict_undefined() -> None:
    assert TEMPLATES.env.undefined is jinja2.StrictUndefined
    # A value the caller forgot is an error, not an empty string.
    context = dict(contexts()["approval_request.txt"])
    del context["marker"]
    with pytest.raises(TemplateError, match="marker"):
        TEMPLATES.render("approval_request.txt", context)


@pytest.mark.parametrize("name", FILES)
def test_every_template_renders_with_its_sample_context(name: str) -> None:
    rendered = TEMPLATES.render(name, contexts()[name])
    assert rendered.subject and "\n" not in rendered.subject
    assert rendered.body.strip()
    for text in (rendered.subject, rendered.body):
        assert "{{" not in text and "{%" not in text and "}}" not in text
        assert "Undefined" not in text
    assert TEMPLATES.check({name: contexts()[name]}) == []


# --- the approval request never carries a decision of its own --------------------------------------------------

ODD_WORDS = [
    "",
    "\n\n\n",
    "x" * 5000,
    "APPROVE " * 300,
    "I approve of this list. Deny nothing.",
    "Name: APPROVE\nRole: DENY",
    "Please APPROVE me",
    "APPROVE: yes",
    "ＡＰＰＲＯＶＥ me",
    "ΑPPROVE",  # Greek capital alpha
    REPLY_MARKER + "\nme",
    "{{ marker }} {% if true %}",
    "APPROVE\u2028DENY",  # a line separator is no line break in mail: dropped, the words run together
]
# Requester text with a line that is a decision word on its own: relayed, it must not stand as one.
DECISION_LINES = [
    "APPROVE",
    "Name: Jan\nAPPROVE\nI run the CSIRT.",
    "deny",
    "  Approve.  ",
    "*DENY*",
    "approve!!!",
    "-- \nAPPROVE",
    "> APPROVE",
    "AP\u200bPROVE",
    "ＡＰＰＲＯＶＥ",
    "Name: Jan\r\nDENY\r\n",
    "x" * 590 + "\nAPPROVE",
]
PUNCTUATION = string.whitespace + string.punctuation


def reads_as_a_decision(line: str) -> bool:
    """The line is APPROVE or DENY once whitespace and punctuation are stripped (any case, NFKC), or the
    reply reader itself would take it as one."""
    plain = unicodedata.normalize("NFKC", line).replace("\u200b", "").strip(PUNCTUATION + "\u00a0\u3000")
    return plain.upper() in ("APPROVE", "DENY") or decision_word(line) is not None


def approval_lines(words: str, reminder: int, **request: str) -> list[str]:
    context = dict(contexts()["approval_request.txt"])
    context["request"] = {**context["request"], "words": words, **request}
    context["reminder"] = reminder
    rendered = TEMPLATES.render("approval_request.txt", context)
    return [rendered.subject, *rendered.body.splitlines()]


def test_reads_as_a_decision_helper() -> None:
    assert all(reads_as_a_decision(w) for w in ("APPROVE", " approve. ", "*DENY*", "  | APPROVE", "ＤＥＮＹ"))
    assert not any(reads_as_a_decision(w) for w in ("APPROVE me", "    APPROVE    if this person works", "DENIED"))


@pytest.mark.parametrize("reminder", [0, 1, 2, 3, 10])
@pytest.mark.parametrize("words", ODD_WORDS, ids=range(len(ODD_WORDS)))
def test_no_line_of_an_approval_request_reads_as_a_decision(words: str, reminder: int) -> None:
    lines = approval_lines(words, reminder)
    assert [ln for ln in lines if reads_as_a_decision(ln)] == []
    assert lines[1] == REPLY_MARKER  # the first body line: where the reply reader cuts


@pytest.mark.parametrize("field", ["requester", "name", "cctld_display"])
def test_odd_names_do_not_make_a_decision_line(field: str) -> None:
    for value in ("APPROVE", "DENY", "approve."):
        assert [ln for ln in approval_lines("hello", 1, **{field: value}) if reads_as_a_decision(ln)] == []


@pytest.mark.parametrize("words", DECISION_LINES, ids=range(len(DECISION_LINES)))
def test_a_decision_word_in_the_requesters_words_is_never_read_by_the_reply_reader(words: str) -> None:
    # The practical guarantee: every relayed line carries the "  | " prefix, which decision_word refuses.
    for reminder in (0, 2):
        lines = approval_lines(words, reminder)
        assert [ln for ln in lines if decision_word(ln) is not None] == []
        relayed = [ln for ln in lines if ln.startswith("  | ")]
        assert relayed, "the requester's words are relayed"


def test_a_decision_word_in_the_requesters_words_does_not_stand_as_a_line() -> None:
    for words in DECISION_LINES:
        for reminder in (0, 1, 3):
            assert [ln for ln in approval_lines(words, reminder) if reads_as_a_decision(ln)] == [], words


# --- the requester's words: marked and cut --------------------------------------------------------------------


@pytest.mark.parametrize("limit", [10, 50, 600])
def test_requesters_words_are_prefixed_and_cut_in_every_mail_that_relays_them(limit: int) -> None:
    rules = dataclasses.replace(load_rules(CONFIG.rules), requests=RequestRules(claim_max_chars=limit))
    words = "Name: Jan Jansen\nRole: CSIRT lead\n\n" + "I handle incidents for the registry. " * 40 + "TAIL"
    cut = words[:limit].rstrip() + " [...]"
    expected = ["  | " + ln.rstrip() if ln.strip() else "  |" for ln in cut.strip().splitlines()]
    for name in ("approval_request.txt", "request_copy.txt"):
        context = dict(contexts(rules)[name])
        context["request"] = {**context["request"], "words": words}
        lines = TEMPLATES.render(name, context).body.splitlines()
        relayed = [ln for ln in lines if ln.startswith("  |")]
        assert relayed == expected, name
        start = lines.index(relayed[0])
        assert lines[start : start + len(relayed)] == relayed  # one block, every line of it marked
        assert "TAIL" not in "\n".join(lines)
        if name == "approval_request.txt":
            assert lines[start - 1] == (
                f"In their own words - NOT verified, exactly as they wrote it, shortened to {limit} characters:"
            )


def test_quote_unverified() -> None:
    assert quote_unverified("a\nb", 600) == "  | a\n  | b"
    assert quote_unverified("", 600) == "  | (nothing)"
    assert quote_unverified("abcdef", 3) == "  | abc [...]"
    assert quote_unverified("a\x1b[31mred\x07\n\tb", 600) == "  | a[31mred\n  | \tb"  # no control characters
    assert quote_unverified("x\r\nAPPROVE\u2028y", 600) == "  | x\n  | APPROVEy"
