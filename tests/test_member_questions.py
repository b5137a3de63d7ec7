"""IANA contacts asking about their ccTLD's members (secirbot/confirmations.py), end to end on the real
Dovecot, SMTP sink and IANA stand-ins: `remove ADDRESS` answered by a CONFIRM question, and the yearly
re-vetting with REMOVE lines."""

from __future__ import annotations

from datetime import datetime, timedelta

from secirbot.confirmations import read_revet_answer, revet_due, says_confirm
from secirbot.reports import cctld_report, render_report
from tests.flow import ADMIN_FROM, NL_ADMIN, NL_TECH, REQUESTER, TECH_FROM, by_rcpt, flat, open_request, subject
from tests.harness import BOT, LIST, SECRETARIAT, World, new_message, reply_to


def admit(world: World) -> None:
    opened = open_request(world)
    world.deliver(reply_to(opened.approvals[NL_ADMIN], ADMIN_FROM, "APPROVE"))
    world.run_once()
    world.sent()


def member_state(world: World, address: str = REQUESTER) -> str:
    row = world.bot().store.one("SELECT state FROM members WHERE address_key = ?", (address.lower(),))
    return row["state"] if row else "none"


def ask_removal(world: World, sender: str, target: str = REQUESTER) -> list:
    world.deliver(new_message(sender, BOT, "a member", f"remove {target}\n\nHe left us last month.\n"))
    world.run_once()
    return world.sent()


# --- remove ADDRESS ------------------------------------------------------------------------------------


def test_a_contact_asks_to_remove_a_member_and_confirms(world: World) -> None:
    admit(world)
    sent = ask_removal(world, ADMIN_FROM)
    [question] = sent
    assert question.rcpt_tos == [NL_ADMIN]
    assert subject(question) == f"Confirm: remove {REQUESTER} from {LIST}?"
    assert "reply to this mail with the single word CONFIRM" in flat(question)
    assert "+" in str(question.message["Reply-To"])
    assert member_state(world) == "member"  # nothing yet

    world.deliver(reply_to(question, ADMIN_FROM, "CONFIRM"))
    world.run_once()
    sent = by_rcpt(world.sent())
    assert member_state(world) == "leaving"
    assert [subject(m) for m in sent[SECRETARIAT]] == [f"Please remove: {REQUESTER} (nl) from {LIST}"]
    assert f"removal asked by {NL_ADMIN}, an IANA contact of .nl" in flat(sent[REQUESTER][0])
    [answer] = sent[NL_ADMIN]
    assert subject(answer) == "Your answer about the members for .nl" and REQUESTER in flat(answer)
    # The question is used: a second CONFIRM does nothing more.
    world.deliver(reply_to(question, ADMIN_FROM, "CONFIRM"))
    world.run_once()
    assert [subject(m) for m in world.sent()] == ["Your answer could not be accepted"]


def test_anything_but_confirm_keeps_the_member(world: World) -> None:
    admit(world)
    [question] = ask_removal(world, ADMIN_FROM)
    world.deliver(reply_to(question, ADMIN_FROM, "yes, please do"))
    world.run_once()
    [answer] = world.sent()
    assert "did not say CONFIRM" in flat(answer) and member_state(world) == "member"


def test_a_forged_remove_only_asks_the_real_contact(world: World) -> None:
    admit(world)
    sent = ask_removal(world, ADMIN_FROM)  # From forged: the question still goes to the contact only
    assert [m.rcpt_tos for m in sent] == [[NL_ADMIN]]
    # The forger answers the question from elsewhere: refused, the member stays.
    world.deliver(reply_to(sent[0], "Eve <eve@evil.example>", "CONFIRM"))
    world.run_once()
    assert member_state(world) == "member"


def test_another_cctlds_contact_or_a_stranger_cannot_remove(world: World) -> None:
    admit(world)
    for sender in ("Fi Admin <hostmaster@traficom.fi>", "Someone <someone@example.com>"):
        [refusal] = ask_removal(world, sender)
        assert subject(refusal) == f"Your request to remove {REQUESTER}"
        assert "only an IANA contact of the ccTLD a member was admitted for" in flat(refusal)
    # Asking about an address that is not a member gets the very same answer: nothing is revealed.
    [refusal] = ask_removal(world, "Other <other@example.net>", target="nobody@sidn.nl")
    assert "only an IANA contact of the ccTLD a member was admitted for" in flat(refusal)
    assert member_state(world) == "member"


# --- re-vetting ----------------------------------------------------------------------------------------


def test_a_year_on_the_contacts_get_the_member_list_and_remove_lines_take_effect(world: World) -> None:
    admit(world)
    world.clock.advance(days=366)
    world.run_once()
    revets = [m for m in world.sent() if subject(m) == "Who should stay on the ccTLD security list for .nl?"]
    by = by_rcpt(revets)
    assert sorted(by) == sorted([NL_ADMIN, NL_TECH, SECRETARIAT])
    assert REQUESTER in flat(by[NL_TECH][0]) and "REMOVE address@example.org" in flat(by[NL_TECH][0])
    assert by[SECRETARIAT][0].message["Reply-To"] is None
    report = render_report(cctld_report(world.bot().store, ["nl"]))
    assert world.clock().strftime("%Y-%m-%d") in report

    world.deliver(reply_to(by[NL_TECH][0], TECH_FROM, f"REMOVE {REQUESTER}\nREMOVE nobody@sidn.nl\nthanks"))
    world.run_once()
    sent = by_rcpt(world.sent())
    assert member_state(world) == "leaving"
    [answer] = sent[NL_TECH]
    assert REQUESTER in flat(answer) and "Not members for .nl, so not changed: nobody@sidn.nl" in flat(answer)
    assert f"Please remove: {REQUESTER} (nl) from {LIST}" in [subject(m) for m in sent[SECRETARIAT]]
    # Not again the next day.
    world.clock.advance(days=1)
    world.run_once()
    assert not [m for m in world.sent() if subject(m).startswith("Who should stay")]


# --- pure -----------------------------------------------------------------------------------------------


def test_reading_answers_and_when_a_revet_is_due() -> None:
    assert says_confirm("CONFIRM") and says_confirm(" confirm. ") and not says_confirm("confirmed?  no")
    answer = read_revet_answer("REMOVE a@x.nl\nremove: <B@x.nl>\nREMOVE a@x.nl\n\nplease check c@x.nl\n")
    assert answer.remove == ("a@x.nl", "B@x.nl") and answer.other_lines == 1
    now = datetime(2027, 1, 1)
    year = timedelta(days=365)
    assert revet_due(None, first_member_since=now - timedelta(days=10), contacts=["a"], now=now, every=year) is None
    assert revet_due(None, first_member_since=now - year, contacts=["a"], now=now, every=year) == "first re-vetting"
    last = (now - timedelta(days=3), ("a", "b"))
    assert revet_due(last, first_member_since=now, contacts=["B", "a"], now=now, every=year) is None
    changed = revet_due(last, first_member_since=now, contacts=["a", "c"], now=now, every=year)
    assert changed == "the ccTLD's IANA contacts changed"


def test_repeated_remove_mails_ask_the_contact_once(world: World) -> None:
    admit(world)
    assert len(ask_removal(world, ADMIN_FROM)) == 1
    assert ask_removal(world, ADMIN_FROM) == []  # the first question is still open
    actions = [r["action"] for r in world.bot().store.all("SELECT action FROM audit WHERE action LIKE 'remove-%'")]
    assert actions == ["remove-asked", "remove-repeated"]
