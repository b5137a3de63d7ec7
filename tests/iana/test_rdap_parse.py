"""Reading RDAP answers (pure), over fixtures DERIVED from real whois records (see data/README.md)."""

from __future__ import annotations

import copy
import json

import pytest

from secirbot.iana.names import parse_tld
from secirbot.iana.rdap import parse_rdap
from secirbot.iana.record import ParsedRecord, Unusable
from secirbot.iana.whois import parse_whois
from tests.iana.helpers import rdap_text, whois_text

SAME_AS_WHOIS = [
    ("nl.json", "whois-nl.txt", "nl"),
    ("xn--p1ai.json", "whois-xn--p1ai.txt", "xn--p1ai"),
    ("fi.json", "whois-fi.txt", "fi"),
    ("jo.json", "whois-jo.txt", "jo"),
    ("kr.json", "sample-kr-2020.mime", "kr"),
    ("mx.json", "whois-mx.txt", "mx"),
    ("fr.json", "whois-fr.txt", "fr"),
    ("me.json", "whois-me.txt", "me"),
]


@pytest.mark.parametrize("rdap_name, whois_name, tld", SAME_AS_WHOIS)
def test_rdap_gives_what_whois_gives(rdap_name: str, whois_name: str, tld: str) -> None:
    from_rdap = parse_rdap(rdap_text(rdap_name), parse_tld(tld))
    from_whois = parse_whois(whois_text(whois_name), parse_tld(tld))
    assert isinstance(from_rdap, ParsedRecord), from_rdap
    assert from_rdap == from_whois


def nl() -> dict:
    return json.loads(rdap_text("nl.json"))


def outcome_of(obj: object, tld: str = "nl") -> ParsedRecord | Unusable:
    return parse_rdap(json.dumps(obj, ensure_ascii=False), parse_tld(tld))


def test_idn_by_u_label_and_a_label() -> None:
    record = parse_rdap(rdap_text("xn--p1ai.json"), parse_tld("рф"))
    assert isinstance(record, ParsedRecord) and record.tld.unicode == "рф"


def test_upper_case_ldh_name_is_the_same_domain() -> None:
    obj = nl()
    obj["ldhName"] = "NL"
    assert isinstance(outcome_of(obj), ParsedRecord)


def test_entity_with_both_roles_gives_one_contact_per_role() -> None:
    obj = json.loads(rdap_text("fi.json"))
    admin = obj["entities"][1]
    admin["roles"] = ["administrative", "technical"]
    obj["entities"] = obj["entities"][:2]
    record = outcome_of(obj, "fi")
    assert isinstance(record, ParsedRecord)
    assert [(c.role, c.email) for c in record.contacts] == [
        ("administrative", "firootadmin@traficom.fi"),
        ("technical", "firootadmin@traficom.fi"),
    ]


def test_structured_org_value() -> None:
    obj = nl()
    card = obj["entities"][1]["vcardArray"][1]
    for prop in card:
        if prop[0] == "org":
            prop[3] = ["SIDN", "Legal"]
    record = outcome_of(obj)
    assert isinstance(record, ParsedRecord) and record.contacts[0].organisation == "SIDN, Legal"


def test_not_assigned() -> None:
    outcome = parse_rdap(rdap_text("eh-not-assigned.json"), parse_tld("eh"))
    assert isinstance(outcome, Unusable) and outcome.kind == "not-assigned"


def test_contacts_without_email() -> None:
    outcome = parse_rdap(rdap_text("xn--mgb9awbf-no-email.json"), parse_tld("xn--mgb9awbf"))
    assert isinstance(outcome, Unusable) and outcome.kind == "no-contact-email"


def _without_role(role: str) -> dict:
    obj = nl()
    obj["entities"] = [e for e in obj["entities"] if role not in e["roles"]]
    return obj


def _email_removed() -> dict:
    obj = nl()
    card = obj["entities"][2]["vcardArray"][1]
    obj["entities"][2]["vcardArray"][1] = [p for p in card if p[0] != "email"]
    return obj


def _set(key: str, value: object) -> dict:
    obj = nl()
    obj[key] = value
    return obj


def _drop(key: str) -> dict:
    obj = nl()
    del obj[key]
    return obj


@pytest.mark.parametrize(
    "obj, kind",
    [
        ({"errorCode": 404, "title": "Not Found"}, "not-found"),
        ({"errorCode": 500, "title": "Internal Server Error"}, "error"),
        ([], "malformed"),
        ("a string", "malformed"),
        (_drop("rdapConformance"), "malformed"),
        (_set("objectClassName", "entity"), "malformed"),
        (_set("ldhName", "be"), "wrong-domain"),
        (_drop("ldhName"), "wrong-domain"),
        (_set("unicodeName", "рф"), "wrong-domain"),
        (_set("status", ["inactive"]), "inactive"),
        (_drop("entities"), "no-contact-email"),
        (_without_role("technical"), "no-contact-email"),
        (_email_removed(), "no-contact-email"),
    ],
)
def test_not_usable(obj: object, kind: str) -> None:
    outcome = outcome_of(obj)
    assert isinstance(outcome, Unusable), outcome
    assert outcome.kind == kind
    assert outcome.source == "rdap"


def test_bad_vcard_on_a_contact_entity() -> None:
    obj = nl()
    obj["entities"][1]["vcardArray"] = ["vcard", "oops"]
    outcome = outcome_of(obj)
    assert isinstance(outcome, Unusable) and outcome.kind == "malformed"


@pytest.mark.parametrize("text", ["", "{", "null", "<html>", "\ufeff"])
def test_never_raises(text: str) -> None:
    assert isinstance(parse_rdap(text, parse_tld("nl")), Unusable)


def test_fixtures_say_they_are_derived() -> None:
    for name, _, _ in SAME_AS_WHOIS:
        remarks = json.loads(rdap_text(name))["remarks"]
        assert remarks[0]["title"] == "DERIVED TEST FIXTURE"


def test_parse_does_not_mutate_input() -> None:
    obj = nl()
    before = copy.deepcopy(obj)
    outcome_of(obj)
    assert obj == before
