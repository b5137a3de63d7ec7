"""Languages of the mail to a ccTLD's IANA contacts: the message catalogs, the bilingual body, right-to-left
text, rules.yaml's `languages:` section, and a French approval request end to end through the SMTP sink.

The catalog checks read the shipped files (secirbot/locale, messages.pot, babel.cfg) with babel itself, so a
template edited without re-extracting, a message left untranslated, a placeholder lost or renamed, or a
plural form missing fails here.
"""

from __future__ import annotations

import dataclasses
import email
import re
import shutil
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po

import secirbot.compose as compose_module
from secirbot.compose import (
    DECISION_WORDS_NOTE,
    FSI,
    LOCALE_DIR,
    PDI,
    SEPARATOR,
    Language,
    Templates,
    as_bytes,
    available_languages,
    compose,
    po_path,
)
from secirbot.config import Config, ConfigError
from secirbot.replies import APPROVER_WORDS, REPLY_MARKER, decision_word
from secirbot.rules import default_languages, load_rules
from secirbot.samples import sample_contexts
from tests.clients import client_reply
from tests.flow import (
    ADMIN_FROM,
    NL_ADMIN,
    NL_TECH,
    REQUESTER,
    TECH_FROM,
    body,
    by_rcpt,
    one,
    open_request,
    subject,
)
from tests.harness import BOT, LIST, SECRETARIAT, World, new_message, reply_to
from tests.test_delegation import MARC, delegate_reply
from tests.test_forgery import dkim_key, serve_key
from tests.test_member_questions import member_state

__all__ = ["dkim_key"]  # the DKIM key fixture of the forgery tests: a delegate's signed reply

REPO = Path(__file__).resolve().parent.parent
CONFIG = dataclasses.replace(Config(), templates=REPO / "templates", rules=REPO / "rules.yaml")
TEMPLATES = Templates(CONFIG.templates)
SHIPPED = ["ar", "de", "en", "es", "fr", "pt", "ru", "zh"]  # the six UN languages, Portuguese, German
LOCAL = [code for code in SHIPPED if code != "en"]
# Mail to a ccTLD's contacts: each is written in the ccTLD's language.
TO_CONTACTS = [
    "already_decided.txt",
    "approval_request.txt",
    "clarify.txt",
    "decision_approvers.txt",
    "decision_recorded.txt",
    "delegated_notice.txt",
    "delegation_objected.txt",
    "invitation.txt",
    "members_answer.txt",
    "not_mine_recorded.txt",
    "remove_confirm.txt",
    "revet.txt",
    "withdrawn_notice.txt",
]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
DECISION_WORDS = re.compile(r"\b(APPROVE|DENY|NOT MINE|OBJECT)\b")
# The membership questions' answer words (confirmations.says_confirm, read_revet_answer) and the sample
# address of a REMOVE line: never translated, or the contact's answer would not be read.
MEMBER_WORDS = re.compile(r"(\bCONFIRM\b|\bREMOVE\b|address@example\.org)")


def pot() -> Catalog:
    with (LOCALE_DIR / "messages.pot").open("rb") as fp:
        return read_po(fp)


def po(code: str) -> Catalog:
    with po_path(code).open("rb") as fp:
        return read_po(fp, locale=code)


def forms(value: str | tuple[str, ...] | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def contexts() -> dict[str, dict[str, Any]]:
    return sample_contexts(CONFIG, load_rules(CONFIG.rules))


def contact_context(name: str) -> dict[str, Any]:
    """The sample context of a mail to contacts (withdrawn_notice's sample is the Secretariat's copy)."""
    context = dict(contexts()[name])
    if name == "withdrawn_notice.txt":
        context |= {"approver": {"email": "admin@cctld.example", "name": "Anna Admin"}, "asked": []}
    return context


# --- the catalogs ------------------------------------------------------------------------------------------


def test_the_six_un_languages_portuguese_and_german_have_catalogs() -> None:
    assert available_languages() == SHIPPED
    for code in SHIPPED:
        assert po_path(code).is_file()


def test_messages_pot_is_what_the_templates_ask_for() -> None:
    """Extracted again with babel.cfg (jinja2's extractor, the options compose.Templates uses): the same
    msgids as the committed messages.pot. Fails when a template changes and nobody re-ran pybabel extract."""
    with (REPO / "babel.cfg").open(encoding="utf-8") as fp:
        method_map, options_map = parse_mapping_cfg(fp)
    extracted = {
        message
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(REPO), method_map, options_map, keywords={"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
        )
    }
    committed = {m.id for m in pot() if m.id}
    assert extracted == committed
    # Every template addressed to contacts has its text in the catalog (not just its subject).
    assert len(committed) > 40


@pytest.mark.parametrize("code", SHIPPED)
def test_catalog_covers_every_message_of_the_pot(code: str) -> None:
    template, catalog = pot(), po(code)
    wanted = {m.id for m in template if m.id}
    have = {m.id for m in catalog if m.id}
    assert wanted - have == set(), "messages missing from the catalog"
    assert have - wanted == set(), "messages the templates no longer use (run pybabel update)"
    for message in catalog:
        if not message.id:
            continue
        assert "fuzzy" not in message.flags, message.id
        assert all(s.strip() for s in forms(message.string)), f"untranslated: {message.id!r}"
        if code == "en":  # the templates' own words: English mail is exactly what the templates say
            assert forms(message.string) == forms(message.id)
    assert not catalog.obsolete


@pytest.mark.parametrize("code", SHIPPED)
def test_placeholders_and_line_ends_are_those_of_the_english(code: str) -> None:
    for message in po(code):
        if not message.id:
            continue
        ids = forms(message.id)
        expected = set(PLACEHOLDER.findall(ids[0])) | set(PLACEHOLDER.findall(ids[-1]))
        for text in forms(message.string):
            assert set(PLACEHOLDER.findall(text)) == expected, (code, message.id, text)
            # A "%" that is not a placeholder would break the "%" formatting of the trans block.
            assert "%" not in PLACEHOLDER.sub("", text), (code, text)
            assert text.endswith("\n") == ids[0].endswith("\n"), (code, message.id)
            if ids[0] != " and ":  # joins role names: Chinese writes it without spaces
                assert text.startswith(" ") == ids[0].startswith(" "), (code, message.id)
            # The decision words are never translated: every one the English names is there as it is.
            assert sorted(DECISION_WORDS.findall(text)) == sorted(DECISION_WORDS.findall(ids[0])), (code, text)
            # CONFIRM and REMOVE too (a translation may name the word once more, saying it is English).
            assert set(MEMBER_WORDS.findall(text)) == set(MEMBER_WORDS.findall(ids[0])), (code, text)
    # babel's own checks (python-format, number of plural forms) find nothing either.
    problems = [(m.id, [str(e) for e in errors]) for m, errors in po(code).check()]
    assert problems == []


@pytest.mark.parametrize("code", SHIPPED)
def test_plural_forms_are_those_of_the_language(code: str) -> None:
    catalog = po(code)
    rule = get_plural(code)
    assert catalog.num_plurals == rule.num_plurals
    assert catalog.plural_expr == rule.plural_expr
    plurals = [m for m in catalog if m.id and m.pluralizable]
    assert len(plurals) >= 2  # characters of a claim, seats per ccTLD
    for message in plurals:
        assert len(forms(message.string)) == rule.num_plurals, (code, message.id)
    assert {"ar": 6, "ru": 3, "zh": 1}.get(code, catalog.num_plurals) == catalog.num_plurals


def test_russian_and_arabic_pick_the_right_plural_form() -> None:
    context = dict(contexts()["invitation.txt"])
    for seats, word in ((1, "человека"), (3, "человек"), (5, "человек"), (21, "человека")):
        text = TEMPLATES.render("invitation.txt", {**context, "seats": seats}, Language("ru")).body
        assert f"не более {seats} {word} от" in text
    for seats, word in ((2, "شخصين"), (3, "أشخاص"), (11, "شخصًا"), (100, "شخص")):
        text = TEMPLATES.render("invitation.txt", {**context, "seats": seats}, Language("ar")).body
        assert f"{FSI}{seats}{PDI} {word} عن" in text


# --- rendering ---------------------------------------------------------------------------------------------


def split(text: str) -> tuple[str, str, str]:
    """(local part, English part, signature) of a bilingual body."""
    local, sep, english = text.partition("\n" + SEPARATOR + "\n")
    assert sep, "no separator between the local and the English text"
    english, _, signature = english.rpartition("\n-- \n")
    return local, english, signature


@pytest.mark.parametrize("code", LOCAL)
@pytest.mark.parametrize("name", TO_CONTACTS)
def test_mail_to_contacts_renders_in_every_language_with_english_below(name: str, code: str) -> None:
    context = contact_context(name)
    english = TEMPLATES.render(name, context)
    rendered = TEMPLATES.render(name, context, Language(code))
    assert rendered.subject == english.subject  # bilingual: the English subject (see compose)
    local, english_part, signature = split(rendered.body)
    # English below, unchanged (the signature, said once, last, aside).
    english_main = english.body.rpartition("\n-- \n")[0]
    assert english_main.split("\n\n", 1)[-1].strip() in english_part
    assert english.body.rpartition("\n-- \n")[2].strip() == signature.splitlines()[-1]
    assert len(signature.splitlines()) == 2 and signature.splitlines()[0] != signature.splitlines()[1]
    # The local text is translated, not English with a different label: no English sentence of it is left.
    assert "Dear " not in local and "Request #" not in local and "Thank you" not in local
    assert "{%" not in rendered.body and "%(" not in rendered.body
    # The decision words in both languages.
    assert po(code)[DECISION_WORDS_NOTE].string in local
    assert DECISION_WORDS_NOTE in english_part
    assert rendered.body.count("-- \n") == 1
    rendered.body.encode("utf-8")


@pytest.mark.parametrize("code", LOCAL)
def test_approval_request_local_part_keeps_the_answer_lines_and_the_marker_on_top(code: str) -> None:
    context = contexts()["approval_request.txt"]
    text = TEMPLATES.render("approval_request.txt", context, Language(code)).body
    assert text.splitlines()[0] == context["marker"]
    assert text.count(context["marker"]) == 1
    local, english, _ = split(text)
    for part in (local, english):
        lines = [line.strip() for line in part.splitlines()]
        assert any(line.startswith("APPROVE ") for line in lines)
        assert any(line.startswith("DENY ") for line in lines)
        # Quoted back in a reply, no line of ours reads as a decision.
        assert all(decision_word(line) is None for line in part.splitlines()), part


def test_the_note_on_the_decision_words_names_every_answer_word_in_every_language() -> None:
    """The issue: the decision words stay APPROVE / DENY / NOT MINE / OBJECT in every language, and every
    mail says so in both languages (the note is in every bilingual mail, see above)."""
    words = sorted(str(word) for word in APPROVER_WORDS)
    assert words == ["APPROVE", "DENY", "NOT MINE", "OBJECT"]
    for code in SHIPPED:
        note = " ".join(po(code)[DECISION_WORDS_NOTE].string.split())
        assert sorted(DECISION_WORDS.findall(note)) == words, code
    text = TEMPLATES.render("not_mine_recorded.txt", contexts()["not_mine_recorded.txt"], Language("ru")).body
    local, english, _ = split(text)
    assert "APPROVE, DENY, NOT MINE и OBJECT одинаковы на всех языках" in local
    assert "APPROVE, DENY, NOT MINE and OBJECT are the same in every" in english


@pytest.mark.parametrize("code", LOCAL)
def test_approval_request_with_a_replacement_and_delegates_is_translated_throughout(code: str) -> None:
    """The replacement lines, the NOT MINE answer line and the paragraph on a colleague answering for a role
    address: in the contact's language, with the answer words and the addresses as they are."""
    context = contexts()["approval_request.txt"]
    replaced = "old.member@cctld.example"
    context = {
        **context,
        "request": {**context["request"], "replacing": replaced},
        "delegates": {"allow": True, "window": "48 hours"},
    }
    english = TEMPLATES.render("approval_request.txt", context).body
    assert f"  Replaces: {replaced}, a member for " in english and "unless someone answers OBJECT" in english
    local, english_part, _ = split(TEMPLATES.render("approval_request.txt", context, Language(code)).body)
    english_only = (
        "Replaces:",
        "is taken off the list",
        "If a colleague answers",
        "Forwarded copies",
        "yours to judge",
    )
    for phrase in english_only:
        assert phrase not in local and phrase in english_part, phrase
    lines = [line.strip() for line in local.splitlines()]
    assert [line.split("   ")[0] for line in lines if line.startswith(("APPROVE ", "DENY ", "NOT MINE "))] == [
        "APPROVE",
        "DENY",
        "NOT MINE",
    ]
    assert local.count(replaced) == 2 and local.count("48 hours") == 1
    assert "OBJECT" in local and "DKIM" in local and "DMARC" in local
    assert all(decision_word(line) is None for line in local.splitlines()), local
    if code == "ar":
        prose = [line for line in local.splitlines() if line and line[0] not in " #(-"]
        assert all("\u0600" <= line[0] <= "\u06ff" for line in prose), prose
        assert f"{FSI}{replaced}{PDI}" in local


@pytest.mark.parametrize("code", LOCAL)
def test_membership_questions_keep_their_answer_lines_in_every_language(code: str) -> None:
    """The line a contact copies into the answer is the English word, alone on its line (CONFIRM) or with
    the address (REMOVE), in the local text as in the English; the listed members keep their addresses."""
    context = contexts()["remove_confirm.txt"]
    local, english, _ = split(TEMPLATES.render("remove_confirm.txt", context, Language(code)).body)
    for part in (local, english):
        assert "\n    CONFIRM\n" in part and context["address"] in part and context["expires"] in part
    assert "If the member should be removed" not in local
    context = contact_context("revet.txt")
    local, english, _ = split(TEMPLATES.render("revet.txt", context, Language(code)).body)
    member = f"  {FSI}jan@cctld.example{PDI}" if code == "ar" else "  jan@cctld.example"
    assert "\n    REMOVE address@example.org\n" in local and member in local
    assert "\n    REMOVE address@example.org\n" in english and "  jan@cctld.example (Jan), since 2026-01-05" in english
    # The reason for the re-vetting is said in the contact's language too.
    assert "the yearly re-vetting" not in local and "(the yearly re-vetting):" in english


def test_members_answer_agrees_with_the_number_of_addresses() -> None:
    context = {**contexts()["members_answer.txt"], "not_members": []}
    for code, count, wanted in (
        ("fr", 1, "L'adresse suivante est retirée de"),
        ("fr", 2, "Les adresses suivantes sont retirées de"),
        ("ru", 1, "исключается адрес:"),
        ("ru", 3, "исключаются адреса:"),
        ("ar", 2, "هذين العنوانين"),
        ("ar", 3, "هذه العناوين"),
    ):
        removed = [f"m{i}@cctld.example" for i in range(count)]
        local, english, _ = split(
            TEMPLATES.render("members_answer.txt", {**context, "removed": removed}, Language(code)).body
        )
        assert wanted in local, (code, count)
        assert all(f"  {address}\n" in local and f"  {address}\n" in english for address in removed)
        assert "Thank you. Being taken off" in english


def test_the_secretariats_copy_of_the_revet_stays_english() -> None:
    """schedule.revet_members renders the Secretariat's copy (approver None) without a language."""
    context = {**contexts()["revet.txt"], "approver": None}
    text = TEMPLATES.render("revet.txt", context).body
    assert text.startswith("IANA lists admin@cctld.example as a contact of ")
    assert "(The Secretariat's copy: the contacts above were asked" in text and SEPARATOR not in text


def test_mail_to_the_secretariat_stays_english_whatever_the_language() -> None:
    for name in ("request_copy.txt", "decision_secretariat.txt", "contacts_changed.txt", "escalation_secretariat.txt"):
        context = contexts()[name]
        assert TEMPLATES.render(name, context, Language("fr")) == TEMPLATES.render(name, context)
    # withdrawn_notice's copy for the Secretariat is rendered without a language (workflow.withdraw).
    secretariat = {**contexts()["withdrawn_notice.txt"], "approver": None, "asked": ["a@example.org"]}
    assert TEMPLATES.render("withdrawn_notice.txt", secretariat).body.startswith("Request #42 of ")


def test_not_bilingual_is_the_local_text_alone_with_the_note_in_both_languages() -> None:
    context = contexts()["approval_request.txt"]
    rendered = TEMPLATES.render("approval_request.txt", context, Language("de", bilingual=False))
    assert rendered.subject.startswith("Erinnerung: Freigabe erbeten: ivan.petrov@cctld.example")
    assert SEPARATOR not in rendered.body and "HOW TO ANSWER" not in rendered.body
    assert "SO ANTWORTEN SIE" in rendered.body
    assert po("de")[DECISION_WORDS_NOTE].string in rendered.body and DECISION_WORDS_NOTE in rendered.body
    assert rendered.body.rstrip().endswith("für das Sekretariat <secretariat@example.org>")


# --- right to left -----------------------------------------------------------------------------------------


def text_part(msg: Message) -> str:
    parsed = email.message_from_bytes(as_bytes(msg))
    assert parsed.get_content_type() == "text/plain" and parsed.get_content_charset() == "utf-8"
    payload = parsed.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode("utf-8").replace("\r\n", "\n")  # strict: the part is correct UTF-8


def test_arabic_text_plain_part_isolates_every_left_to_right_value() -> None:
    context = contexts()["approval_request.txt"]
    rendered = TEMPLATES.render("approval_request.txt", context, Language("ar"))
    msg = compose(
        rendered,
        sender="join@lists.example.org",
        sender_name="secirbot",
        to=["admin@cctld.example"],
        when=datetime(2026, 11, 26, 9, 0, tzinfo=UTC),
    )
    arabic, english, _ = split(text_part(msg))
    request = context["request"]
    for value in (
        context["approver"]["email"],
        request["requester"],
        request["cctld_display"],
        request["expires"],
        f"{request['id']}",
        context["secretariat"],
        context["list_address"],
    ):
        assert f"{FSI}{value}{PDI}" in arabic, value
        assert FSI not in english and value in english
    # Isolates never span a line, and every one is closed: nothing reorders the lines after it.
    for line in arabic.splitlines():
        depth = 0
        for ch in line:
            depth += {FSI: 1, PDI: -1}.get(ch, 0)
            assert depth in (0, 1), line
        assert depth == 0, line
    # The answer lines start with the decision word as the approver types it: no isolate, no mark.
    answer_lines = [line.strip() for line in arabic.splitlines() if line.strip().startswith(("APPROVE", "DENY"))]
    assert [line.split()[0] for line in answer_lines] == ["APPROVE", "DENY"]
    assert all(FSI not in line.split()[0] for line in answer_lines)
    # The prose is Arabic: each paragraph of it starts with an Arabic letter (read right to left).
    prose = [line for line in arabic.splitlines() if line and line[0] not in " #(-"]
    assert prose and all("\u0600" <= line[0] <= "\u06ff" for line in prose), prose


# --- rules.yaml --------------------------------------------------------------------------------------------


def write_rules(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text("pilot: {enabled: false}\n" + text, encoding="utf-8")
    return path


def test_languages_default_from_the_country_and_rules_yaml_overrides(tmp_path: Path) -> None:
    shipped = load_rules(REPO / "rules.yaml").languages
    assert (shipped.default, shipped.by_cctld, shipped.bilingual) == ("en", (), True)
    assert [shipped.code_for(t) for t in ("fr", ".jo", "рф", "XN--P1AI", "mx", "cn", "br", "at", "nl", "be")] == [
        "fr",
        "ar",
        "ru",
        "ru",
        "es",
        "zh",
        "pt",
        "de",
        "en",
        "en",
    ]
    rules = load_rules(
        write_rules(tmp_path, "languages:\n  default: en\n  by_cctld: {be: fr, .рф: en, KZ: ru}\n  bilingual: false\n")
    ).languages
    assert rules.for_cctld("be") == Language("fr", bilingual=False)
    assert rules.code_for("xn--p1ai") == "en" and rules.code_for("kz") == "ru" and rules.code_for("fr") == "fr"


def test_an_unknown_language_names_the_catalogs(tmp_path: Path) -> None:
    path = write_rules(tmp_path, "languages:\n  default: en\n  by_cctld:\n    fr: français\n    de: xx\n")
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    text = str(caught.value)
    assert f"{path}:5: languages.by_cctld.fr: unknown language 'français'" in text
    assert "languages.by_cctld.de: unknown language 'xx' (catalogs: ar, de, en, es, fr, pt, ru, zh)" in text
    with pytest.raises(ConfigError, match=r"languages.default: unknown language 'klingon' \(catalogs: ar, de"):
        load_rules(write_rules(tmp_path, "languages: {default: klingon}\n"))
    with pytest.raises(ConfigError, match=r"languages.by_cctld.a.b: "):
        load_rules(write_rules(tmp_path, "languages: {by_cctld: {a.b: fr}}\n"))
    with pytest.raises(ConfigError, match=r"unknown key 'languages.bilingul'; did you mean 'bilingual'"):
        load_rules(write_rules(tmp_path, "languages: {bilingul: true}\n"))


def test_the_language_table_names_delegated_cctlds_and_shipped_catalogs() -> None:
    rows = [line.split("\t") for line in (REPO / "secirbot" / "data" / "cctlds.txt").read_text().splitlines()]
    delegated = {row[0] for row in rows if len(row) >= 3 and row[2].strip() == "delegated"}
    table = default_languages()
    assert set(table) <= delegated, set(table) - delegated
    assert set(table.values()) == set(LOCAL)


# --- end to end --------------------------------------------------------------------------------------------

FR_ADMIN, FR_TECH = "tld-admin@nic.fr", "tld-tech@nic.fr"


def test_a_request_for_fr_sends_a_bilingual_approval_request_and_a_french_answer_decides(world: World) -> None:
    world.rules["pilot"]["cctlds"].append("fr")
    world.request(sender="Claire Martin <claire@registre.example>", subject="subscribe .fr")
    world.run_once()
    sent = world.sent()
    approvals = world.approval_requests(sent)
    assert sorted(approvals) == [FR_ADMIN, FR_TECH]
    approval = approvals[FR_ADMIN]
    assert subject(approval) == (
        "Approval needed: claire@registre.example asks to join the ccTLD security list for .fr [#1]"
    )
    assert approval.message.get_content_charset() == "utf-8"
    text = body(approval)
    french, english, signature = split(text)
    assert french.startswith(f"{REPLY_MARKER}\n\nBonjour TLD Admin Contact,\n")
    assert "La base de données de la zone racine de l'IANA indique tld-admin@nic.fr comme contact" in french
    assert "    APPROVE    si cette personne travaille à la sécurité de .fr" in french
    assert "les mots de réponse APPROVE, DENY, NOT MINE et OBJECT sont les mêmes dans toutes les langues" in french
    assert "Dear TLD Admin Contact," in english and "HOW TO ANSWER" in english
    assert "the answer words APPROVE, DENY, NOT MINE and OBJECT are the same in every\nlanguage" in english
    assert text.index("Bonjour") < text.index(SEPARATOR) < text.index("Dear TLD Admin Contact")
    assert signature.splitlines() == [
        f"Admission à la liste sécurité des ccTLD, pour le Secrétariat <{SECRETARIAT}>",
        f"ccTLD security list admission, for the Secretariat <{SECRETARIAT}>",
    ]
    # The requester and the Secretariat are written to in English.
    assert SEPARATOR not in body(one(sent, "claire@registre.example"))
    assert SEPARATOR not in body(one(sent, SECRETARIAT))

    # The contact answers in French below the word; the word decides.
    world.deliver(reply_to(approval, f"TLD Admin Contact <{FR_ADMIN}>", "APPROVE\n\nOui, elle est dans notre équipe."))
    world.run_once()
    sent = world.sent()
    recorded = one(sent, FR_ADMIN)
    assert subject(recorded) == "Recorded: your APPROVE for claire@registre.example (.fr) [#1]"
    french, english, _ = split(body(recorded))
    assert "Votre réponse APPROVE concernant claire@registre.example" in french
    assert "Nous avons demandé au logiciel de la liste de l'inscrire." in french
    assert "We have asked the list software to subscribe them." in english
    told = one(sent, FR_TECH)
    assert "a été tranchée : APPROVE par tld-admin@nic.fr" in body(told)


def test_a_request_for_nl_stays_english_only(world: World) -> None:
    world.request()
    world.run_once()
    approvals = world.approval_requests(world.sent())
    for approval in approvals.values():
        assert SEPARATOR not in body(approval) and DECISION_WORDS_NOTE.split(":")[0] not in body(approval)
        assert approval.message.get_content_charset() == "us-ascii"


def test_by_cctld_in_rules_yaml_changes_the_language_of_the_mail(world: World) -> None:
    world.rules["languages"] = {"by_cctld": {"nl": "de"}, "bilingual": False}
    world.request()
    world.run_once()
    sent = world.sent()
    mails = [m for m in sent if m.rcpt_tos[0].endswith("@sidn.nl")]
    assert len(mails) == 2
    for mail in mails:
        assert subject(mail).startswith("Freigabe erbeten: jan@registry.example beantragt die Aufnahme")
        assert "SO ANTWORTEN SIE" in body(mail) and SEPARATOR not in body(mail)
        assert DECISION_WORDS_NOTE.split("\n")[0] in body(mail)


def test_secirbot_check_names_a_broken_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Templates.check (what `secirbot check` runs) renders in every language: a catalog whose translation
    renamed a placeholder is reported with its file, before any approver of that language is due a mail."""
    shutil.copytree(LOCALE_DIR, tmp_path / "locale")
    broken = tmp_path / "locale" / "fr" / "LC_MESSAGES" / "secirbot.po"
    broken.write_text(
        broken.read_text(encoding="utf-8").replace('msgstr "Bonjour %(name)s', 'msgstr "Bonjour %(nom)s', 1), "utf-8"
    )
    monkeypatch.setattr(compose_module, "LOCALE_DIR", tmp_path / "locale")
    compose_module.catalog.cache_clear()
    try:
        problems = TEMPLATES.check({"clarify.txt": contexts()["clarify.txt"]})
    finally:
        monkeypatch.undo()
        compose_module.catalog.cache_clear()
    assert len(problems) == 1 and problems[0].startswith(f"catalog {broken}: 'Dear %(name)s,\\n'")
    assert "placeholders ['%(name)s'] expected in 'Bonjour %(nom)s,\\n'" in problems[0]
    assert problems[0].endswith("(language fr)")
    assert TEMPLATES.check({"clarify.txt": contexts()["clarify.txt"]}) == []


def test_not_mine_is_recorded_in_the_cctlds_language(world: World) -> None:
    world.rules["languages"] = {"by_cctld": {"nl": "fr"}}
    opened = open_request(world)
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "NOT MINE"))
    world.run_once()
    thanks = one(world.sent(), NL_ADMIN)
    assert subject(thanks) == "Recorded: your NOT MINE for jan@registry.example (.nl) [#1]"
    french, english, signature = split(body(thanks))
    assert french.startswith("Bonjour ") and "Merci." in french
    assert "Votre réponse NOT MINE concernant jan@registry.example" in french
    assert "tranchez pas cette demande" in french
    assert "Your answer NOT MINE about jan@registry.example" in english
    assert signature.splitlines()[0] == "Admission à la liste sécurité des ccTLD"


def test_delegated_notices_go_to_the_contacts_in_their_language_and_to_the_others_in_english(
    world: World, dkim_key: tuple[bytes, bytes]
) -> None:
    world.rules["languages"] = {"by_cctld": {"nl": "fr"}}
    world.rules["approvers"] = {**world.rules["approvers"], "delegates": {"allow": True, "objection_window": "48h"}}
    world.bot().dnsfunc = serve_key(dkim_key[1])  # rules are read when the bot is made: set them first
    opened = open_request(world)
    world.deliver(delegate_reply(opened.approvals[NL_ADMIN].message, dkim_key[0]))
    world.run_once()
    sent = by_rcpt(world.sent())
    assert sorted(sent) == sorted([NL_ADMIN, NL_TECH, MARC, SECRETARIAT])
    for contact in (NL_ADMIN, NL_TECH):
        [notice] = sent[contact]
        assert subject(notice) == f"Answered for {NL_ADMIN}: APPROVE jan@registry.example for .nl [#1]"
        french, english, _ = split(body(notice))
        assert f"{MARC} a répondu APPROVE à la demande n° 1 au nom de {NL_ADMIN}, contact IANA" in french
        assert "sauf si quelqu'un répond OBJECT d'ici là" in french and "\n    OBJECT\n" in french
        assert f"{MARC} answered APPROVE for request #1 on behalf of {NL_ADMIN}" in english
    for other in (MARC, SECRETARIAT):
        [notice] = sent[other]
        assert SEPARATOR not in body(notice) and "Bonjour" not in body(notice)
        assert "The IANA contacts asked can answer OBJECT, APPROVE or DENY" in body(notice)

    world.deliver(reply_to(sent[NL_TECH][0], TECH_FROM, "OBJECT"))
    world.run_once()
    sent = by_rcpt(world.sent())
    assert sorted(sent) == sorted([NL_ADMIN, NL_TECH, MARC, SECRETARIAT])
    french, english, _ = split(body(sent[NL_ADMIN][0]))
    assert subject(sent[NL_ADMIN][0]) == f"Objection: the answer for {NL_ADMIN} does not count [#1]"
    assert f"{NL_TECH} a répondu OBJECT à l'APPROVE donné par {MARC} pour la demande n° 1" in french
    assert "répondez à ce message avec APPROVE ou DENY sur la première ligne" in french
    assert f"{NL_TECH} answered OBJECT to the APPROVE that {MARC} gave" in english
    for other in (MARC, SECRETARIAT):
        assert SEPARATOR not in body(sent[other][0])
        assert f"{NL_TECH} answered OBJECT to the APPROVE that {MARC} gave" in body(sent[other][0])


def test_a_contacts_remove_gets_a_french_confirm_question_and_confirm_still_works(world: World) -> None:
    world.rules["languages"] = {"by_cctld": {"nl": "fr"}}
    opened = open_request(world)
    world.deliver(reply_to(opened.approvals[NL_ADMIN], ADMIN_FROM, "APPROVE"))
    world.run_once()
    world.sent()
    world.deliver(new_message(ADMIN_FROM, BOT, "a member", f"remove {REQUESTER}\n\nIl nous a quittés.\n"))
    world.run_once()
    [question] = world.sent()
    assert question.rcpt_tos == [NL_ADMIN]
    assert subject(question) == f"Confirm: remove {REQUESTER} from {LIST}?"
    assert question.message.get_content_charset() == "utf-8"
    french, english, signature = split(body(question))
    assert f"{NL_ADMIN} a demandé de retirer {REQUESTER}, membre pour .nl depuis le " in french
    assert "répondez à ce message avec le seul mot anglais\n\n    CONFIRM\n\nsur la première ligne" in french
    assert f"{NL_ADMIN} asked to take {REQUESTER}, a member for .nl since " in english
    assert "reply to this mail with the single word\n\n    CONFIRM\n\non the first line" in english
    assert signature.splitlines() == [
        f"Admission à la liste sécurité des ccTLD ({BOT})",
        f"ccTLD security list admission ({BOT})",
    ]

    # An answer in French that is not CONFIRM keeps the member, and is told so in French.
    world.deliver(reply_to(question, ADMIN_FROM, "Oui, retirez-le."))
    world.run_once()
    [unclear] = world.sent()
    assert subject(unclear) == "Your answer about the members for .nl"
    french, english, _ = split(body(unclear))
    assert "Votre réponse ne portait pas CONFIRM sur sa première ligne (elle disait « Oui, retirez-le. »)" in french
    assert 'Your reply did not say CONFIRM on its first line (it said "Oui, retirez-le.")' in english
    assert member_state(world) == "member"

    # CONFIRM, quoting the bilingual question below it, takes the member off.
    world.deliver(reply_to(question, ADMIN_FROM, "CONFIRM"))
    world.run_once()
    sent = by_rcpt(world.sent())
    assert member_state(world) == "leaving"
    assert [subject(m) for m in sent[SECRETARIAT]] == [f"Please remove: {REQUESTER} (nl) from {LIST}"]
    assert SEPARATOR not in body(sent[SECRETARIAT][0]) and SEPARATOR not in body(sent[REQUESTER][0])
    [answer] = sent[NL_ADMIN]
    assert subject(answer) == "Your answer about the members for .nl"
    french, english, _ = split(body(answer))
    assert f"Merci. L'adresse suivante est retirée de {LIST} :\n  {REQUESTER}\n" in french
    assert "Le membre et le Secrétariat en sont informés." in french
    assert f"Thank you. Being taken off {LIST}:\n  {REQUESTER}\n" in english


def test_the_revet_goes_to_the_contacts_in_french_and_to_the_secretariat_in_english(world: World) -> None:
    world.rules["languages"] = {"by_cctld": {"nl": "fr"}}
    opened = open_request(world)
    world.deliver(reply_to(opened.approvals[NL_ADMIN], ADMIN_FROM, "APPROVE"))
    world.run_once()
    world.sent()
    world.clock.advance(days=366)
    world.run_once()
    revets = by_rcpt([m for m in world.sent() if subject(m) == "Who should stay on the ccTLD security list for .nl?"])
    assert sorted(revets) == sorted([NL_ADMIN, NL_TECH, SECRETARIAT])
    french, english, _ = split(body(revets[NL_TECH][0]))
    assert f"comme contact de .nl ; nous vous demandons donc de vérifier qui est inscrit sur\n{LIST}" in french
    assert "(premier réexamen) :" in french and f"  {REQUESTER} (Jan Jansen), depuis le " in french
    assert "\n    REMOVE address@example.org\n" in french and "(first re-vetting):" in english
    secretariat = body(revets[SECRETARIAT][0])
    assert SEPARATOR not in secretariat and "(The Secretariat's copy:" in secretariat

    world.deliver(reply_to(revets[NL_TECH][0], TECH_FROM, f"REMOVE {REQUESTER}\nREMOVE nobody@sidn.nl"))
    world.run_once()
    sent = by_rcpt(world.sent())
    assert member_state(world) == "leaving"
    french, english, _ = split(body(sent[NL_TECH][0]))
    assert "Cette adresse n'est pas membre pour .nl et n'a donc pas été modifiée :\n  nobody@sidn.nl" in french
    assert "Not members for .nl, so not changed:\n  nobody@sidn.nl" in english
