"""intake: what a request names (pure) and which rule refuses it."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from secirbot.intake import Claim, ClaimProblem, Facts, check, read_claim
from secirbot.message import parse_mail
from secirbot.rules import PilotRules, RequestRules, Rules


def mail(subject: str, body: str, sender: str = "Jan Jansen <jan@sidn.example>") -> tuple:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "join@lists.example.org"
    msg["Subject"] = subject
    msg.set_content(body)
    parsed = parse_mail(msg.as_bytes())
    return parsed, parsed.text or ""


@pytest.mark.parametrize(
    ("subject", "body", "expected"),
    [
        ("subscribe .nl", "", "nl"),
        ("subscribe nl", "", "nl"),
        ("Join .NL", "", "nl"),
        ("join nl.", "", "nl"),
        ("Subscribe", "Hello, I work for the .dk registry, please add me.", "dk"),
        ("Please subscribe me", "ccTLD: ca\nName: Jane Doe", "ca"),
        ("subscribe .рф", "", "xn--p1ai"),
        ("subscribe .xn--p1ai", "", "xn--p1ai"),
        ("subscribe XN--P1AI", "", "xn--p1ai"),
        ("Request to join (.nl)", "I also look after example.com and .org domains.", "nl"),
    ],
)
def test_the_cctld_named(subject: str, body: str, expected: str) -> None:
    parsed, text = mail(subject, body)
    claim = read_claim(parsed, text, 600)
    assert isinstance(claim, Claim), claim
    assert claim.cctld.ascii == expected


def test_addresses_and_urls_do_not_name_a_cctld() -> None:
    parsed, text = mail("Subscribe", "Write to jan@sidn.nl or see https://www.sidn.nl/ for me.")
    assert read_claim(parsed, text, 600) == ClaimProblem("no-cctld")


@pytest.mark.parametrize(
    ("subject", "body", "reason"),
    [
        ("subscribe", "please add me to the list", "no-cctld"),
        ("subscribe me", "", "no-cctld"),  # "me" is Montenegro, but here it is English
        ("subscribe .nl", "and also .be", "no-cctld_not"),  # the subject wins: body ignored
        ("subscribe .nl .be", "", "several-cctlds"),
        ("subscribe .com", "", "not-cctld"),
        ("join", "I work for .example registry", "no-cctld"),
    ],
)
def test_problems(subject: str, body: str, reason: str) -> None:
    parsed, text = mail(subject, body)
    result = read_claim(parsed, text, 600)
    if reason == "no-cctld_not":
        assert isinstance(result, Claim) and result.cctld.ascii == "nl"
        return
    assert isinstance(result, ClaimProblem)
    assert result.reason == reason
    if reason == "several-cctlds":
        assert result.names == ("be", "nl")
    if reason == "not-cctld":
        assert result.names == (".com",)


def test_name_role_and_words_are_kept_but_bounded() -> None:
    parsed, text = mail("subscribe .nl", "Name: Jan Jansen\nRole: CSIRT lead\n" + "x" * 2000)
    claim = read_claim(parsed, text, 100)
    assert isinstance(claim, Claim)
    assert claim.name == "Jan Jansen"
    assert claim.role == "CSIRT lead"
    assert len(claim.words) == 300  # the template cuts what it relays to 100, with a mark


def test_name_falls_back_to_the_from_display_name() -> None:
    parsed, text = mail("subscribe .nl", "", sender="=?utf-8?q?J=C3=B6rg_M=C3=BCller?= <jm@denic.example>")
    claim = read_claim(parsed, text, 600)
    assert isinstance(claim, Claim) and claim.name == "Jörg Müller"


RULES = Rules(
    pilot=PilotRules(enabled=True, cctlds=("nl", ".DK", "рф")),
    requests=RequestRules(seats_per_cctld=2, max_per_cctld_per_hour=2, max_per_hour=5),
)
NOTHING = Facts(
    open_request_id=None,
    open_request_cctld=None,
    member_request_id=None,
    seats_used=0,
    cctld_last_hour=0,
    all_last_hour=0,
)


def claim_for(name: str) -> Claim:
    parsed, text = mail(f"subscribe .{name}", "")
    claim = read_claim(parsed, text, 600)
    assert isinstance(claim, Claim)
    return claim


@pytest.mark.parametrize(
    ("cctld", "facts", "rule"),
    [
        ("nl", NOTHING, None),
        ("xn--p1ai", NOTHING, None),  # pilot lists it as рф
        ("dk", NOTHING, None),
        ("be", NOTHING, "pilot"),
        ("nl", Facts(None, None, 7, 0, 0, 0), "already-member"),
        ("nl", Facts(3, "nl", None, 1, 0, 0), "already-pending"),
        ("nl", Facts(None, None, None, 2, 0, 0), "seats-full"),
        ("nl", Facts(None, None, None, 1, 2, 2), "rate-cctld"),
        ("nl", Facts(None, None, None, 0, 0, 5), "rate-global"),
    ],
)
def test_rules(cctld: str, facts: Facts, rule: str | None) -> None:
    refusal = check(claim_for(cctld), RULES, facts)
    assert (refusal.rule if refusal else None) == rule


def test_pilot_disabled_lets_every_cctld_ask() -> None:
    rules = Rules(pilot=PilotRules(enabled=False, cctlds=()))
    assert check(claim_for("be"), rules, NOTHING) is None


def test_a_folded_subject_keeps_the_space_after_an_encoded_word() -> None:
    # How a mail client folds a long subject: the encoded ".ಭಾರತ" ends the first line, plain text starts the
    # next. Unfolding keeps that space; the stdlib decoder alone dropped it and read ".ಭಾರತand", no TLD at
    # all, so the request was taken for .nl alone instead of being asked which of the two was meant.
    raw = (
        b"From: Jan Jansen <jan@sidn.example>\r\nTo: join@bot.example\r\n"
        b"Subject: please subscribe me for =?utf-8?b?LuCyreCyvuCysOCypA==?=\r\n and .nl\r\n"
        b"\r\nThanks, Jan\r\n"
    )
    parsed = parse_mail(raw)

    assert parsed.subject == "please subscribe me for .ಭಾರತ and .nl"
    claim = read_claim(parsed, "Thanks, Jan", 2000)
    assert isinstance(claim, ClaimProblem)
    assert (claim.reason, set(claim.names)) == ("several-cctlds", {"ಭಾರತ", "nl"})
