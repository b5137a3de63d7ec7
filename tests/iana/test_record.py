"""IanaRecord: approvers (de-duplicated, case-insensitive, original spelling kept), JSON for the store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from secirbot.iana.names import parse_tld
from secirbot.iana.record import Contact, IanaRecord, ParsedRecord, Unusable, split_addresses
from secirbot.iana.whois import parse_whois
from tests.iana.helpers import whois_text

WHEN = datetime(2024, 11, 22, 10, 0, 0, tzinfo=UTC)


def record(name: str, tld: str) -> IanaRecord:
    parsed = parse_whois(whois_text(name), parse_tld(tld))
    assert isinstance(parsed, ParsedRecord)
    return IanaRecord.from_parsed(parsed, "whois", WHEN, whois_text(name), True)


def test_fi_one_approver_with_both_roles() -> None:
    approvers = record("whois-fi.txt", "fi").approvers()
    assert len(approvers) == 1
    assert approvers[0].email == "firootadmin@traficom.fi"
    assert approvers[0].roles == ("administrative", "technical")
    assert approvers[0].name == "Domain Names"


def test_duplicates_differing_only_in_case_merge_keeping_first_spelling() -> None:
    rec = IanaRecord(
        parse_tld("jo"),
        "MoDEE",
        (
            Contact("administrative", "A", "MoDEE", "AdminCCtld@modee.gov.jo"),
            Contact("technical", "T", "MoDEE", "admincctld@MODEE.gov.jo"),
        ),
        "whois",
        WHEN,
    )
    [approver] = rec.approvers()
    assert approver.email == "AdminCCtld@modee.gov.jo"
    assert approver.key == "admincctld@modee.gov.jo"
    assert approver.roles == ("administrative", "technical")


def test_roles_filter() -> None:
    nl = record("whois-nl.txt", "nl")
    assert [a.email for a in nl.approvers(("administrative",))] == ["admin@sidn.nl"]
    assert [a.email for a in nl.approvers(["technical"])] == ["tech@sidn.nl"]
    assert nl.approvers(()) == []


def test_jo_mixed_case_sent_as_written() -> None:
    emails = [a.email for a in record("whois-jo.txt", "jo").approvers()]
    assert emails == ["AdminCCtld@modee.gov.jo", "TechCCtld@modee.gov.jo"]


def test_json_round_trip_keeps_non_ascii_and_idn() -> None:
    for name, tld in (("whois-me.txt", "me"), ("whois-xn--p1ai.txt", "xn--p1ai"), ("whois-ax.txt", "ax")):
        rec = record(name, tld)
        text = rec.to_json()
        assert "\\u" not in text  # stored as readable UTF-8
        back = IanaRecord.from_json(text, raw=rec.raw)
        assert back == rec


def test_json_keys() -> None:
    data = record("whois-xn--p1ai.txt", "xn--p1ai").to_dict()
    assert data["tld"] == "xn--p1ai" and data["tld_unicode"] == "рф"
    assert data["fetched_at"] == "2024-11-22T10:00:00Z"
    assert data["contacts"][0] == {
        "role": "administrative",
        "name": ".xn--p1ai domain Administrative group",
        "organisation": "Coordination Center for TLD RU",
        "email": "ru-adm@cctld.ru",
    }


@pytest.mark.parametrize(
    "value, expected",
    [
        ("a@b.cc", ["a@b.cc"]),
        ("victor@cbinf.com or admin@nic.bi", ["victor@cbinf.com", "admin@nic.bi"]),
        ("admni@nic.ni ; marvin@nic.ni", ["admni@nic.ni", "marvin@nic.ni"]),
        ("ashar@pknic.net.pk / staff@pknic.net.pk", ["ashar@pknic.net.pk", "staff@pknic.net.pk"]),
        ("info@itk.kz, isin@nit.kz", ["info@itk.kz", "isin@nit.kz"]),
        ("", None),
        ("admin at nic.xx", None),
        ("a@b", None),
        ("a@b.cc or", None),  # a dangling separator is not trusted
        ("<a@b.cc>", None),
    ],
)
def test_split_addresses(value: str, expected: list[str] | None) -> None:
    assert split_addresses(value) == expected


def test_unknown_unusable_kind_is_a_bug() -> None:
    with pytest.raises(ValueError):
        Unusable("nobody-needs-to-approve", "no such thing")
