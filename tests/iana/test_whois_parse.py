"""Reading real whois.iana.org answers (pure): usable records and every not-usable kind seen for real."""

from __future__ import annotations

import pytest

from secirbot.iana.names import TldName, parse_tld
from secirbot.iana.record import ParsedRecord, Unusable
from secirbot.iana.whois import parse_whois
from tests.iana.helpers import DATA, whois_text


def parse(name: str, tld: str) -> ParsedRecord | Unusable:
    return parse_whois(whois_text(name), parse_tld(tld))


def usable(name: str, tld: str) -> ParsedRecord:
    outcome = parse(name, tld)
    assert isinstance(outcome, ParsedRecord), outcome
    return outcome


def emails(record: ParsedRecord) -> list[tuple[str, str]]:
    return [(c.role, c.email) for c in record.contacts]


def test_nl() -> None:
    record = usable("whois-nl.txt", "nl")
    assert record.tld == TldName("nl", "nl")
    assert record.organisation == "SIDN (Stichting Internet Domeinregistratie Nederland)"
    assert emails(record) == [("administrative", "admin@sidn.nl"), ("technical", "tech@sidn.nl")]
    assert record.contacts[0].name == "Roelof Meijer"


def test_idn_rf_record_names_itself_by_u_label_and_upper_case_ace() -> None:
    record = usable("whois-xn--p1ai.txt", "xn--p1ai")
    assert record.tld == TldName("xn--p1ai", "рф")
    assert emails(record) == [("administrative", "ru-adm@cctld.ru"), ("technical", "ru-tech@tcinet.ru")]


@pytest.mark.parametrize(
    "name, tld",
    [
        ("whois-xn--mgberp4a5d4ar.txt", "xn--mgberp4a5d4ar"),  # Arabic, right-to-left
        ("whois-xn--fiqs8s.txt", "xn--fiqs8s"),  # 中国
        ("whois-xn--h2brj9c.txt", "xn--h2brj9c"),  # भारत
    ],
)
def test_other_idn_cctlds(name: str, tld: str) -> None:
    record = usable(name, tld)
    assert len(record.contacts) == 2


def test_fi_same_address_for_both_roles_is_kept_per_role() -> None:
    record = usable("whois-fi.txt", "fi")
    assert emails(record) == [("administrative", "firootadmin@traficom.fi"), ("technical", "firootadmin@traficom.fi")]


def test_jo_mixed_case_address_is_kept_as_written() -> None:
    assert emails(usable("whois-jo.txt", "jo"))[0] == ("administrative", "AdminCCtld@modee.gov.jo")


def test_kr_free_mail_admin() -> None:
    assert emails(usable("sample-kr-2020.mime", "kr"))[0] == ("administrative", "chonkn@gmail.com")


def test_two_organisation_lines_are_joined() -> None:
    assert usable("whois-mx.txt", "mx").organisation == "NIC-Mexico, ITESM - Campus Monterrey"
    cc = usable("whois-cc.txt", "cc")
    assert cc.organisation == "eNIC Cocos (Keeling) Islands Pty., Ltd. d/b/a Island Internet Services"
    assert cc.contacts[0].organisation == cc.organisation


def test_refer_line_from_a_query_under_the_tld_is_ignored() -> None:
    record = usable("sample-mx-refer.txt", "mx")
    assert emails(record) == [("administrative", "adm-iana@nic.mx"), ("technical", "tech-iana@nic.mx")]


def test_non_ascii_names_survive() -> None:
    assert usable("whois-me.txt", "me").contacts[0].name == "Božo Krstajić"
    assert usable("whois-ax.txt", "ax").contacts[0].name == "Ronny Lundström"
    assert usable("whois-is.txt", "is").contacts[0].name == "Jens Pétur Jensen"
    assert usable("whois-tl.txt", "tl").organisation == "Autoridade Nacional de Comunicações"


def test_trailing_whitespace_is_stripped() -> None:
    text = whois_text("whois-va.txt")
    assert "whois:        \n" in text  # the real file has an empty value padded with spaces
    record = usable("whois-va.txt", "va")
    assert all(c.email == c.email.strip() and c.name == c.name.strip() for c in record.contacts)


def test_bom_is_ignored() -> None:
    assert whois_text("sample-be-bom.txt")[0] != "\ufeff"
    raw = whois_text("sample-be-bom.txt")
    assert isinstance(parse_whois("\ufeff" + raw, parse_tld("be")), ParsedRecord)


def test_mime_wrapped_capture_still_reads_as_the_record() -> None:
    # domainr's capture keeps MIME headers above the answer; they are not 'key: value' lines we know.
    wrapped = (DATA / "whois" / "sample-fi-2018.mime").read_text(encoding="utf-8")
    outcome = parse_whois(wrapped, parse_tld("fi"))
    assert isinstance(outcome, ParsedRecord), outcome
    assert emails(outcome) == [("administrative", "firootadmin@ficora.fi"), ("technical", "firootadmin@ficora.fi")]


def test_kr_today_and_in_2020() -> None:
    assert emails(usable("whois-kr.txt", "kr")) == emails(usable("sample-kr-2020.mime", "kr"))


def test_a_gtld_record_parses_but_is_kept_out_by_the_cctld_list() -> None:
    from secirbot.iana.names import is_cctld

    assert usable("whois-com.txt", "com").organisation == "VeriSign Global Registry Services"
    assert not is_cctld("com")


def test_one_address_on_many_cctlds() -> None:
    fr, pm = usable("whois-fr.txt", "fr"), usable("whois-pm.txt", "pm")
    assert emails(fr) == emails(pm) == [("administrative", "tld-admin@nic.fr"), ("technical", "tld-tech@nic.fr")]
    india, bharat = usable("whois-in.txt", "in"), usable("whois-xn--h2brj9c.txt", "xn--h2brj9c")
    assert {c.email for c in india.contacts} & {c.email for c in bharat.contacts}


def test_one_field_with_two_addresses_gives_both() -> None:
    bi = usable("history-bi-two-addresses-or.txt", "bi")
    assert emails(bi) == [
        ("administrative", "victor@cbinf.com"),
        ("administrative", "admin@nic.bi"),
        ("technical", "admin@cbinf.com"),
    ]
    ni = usable("history-ni-two-addresses-semicolon.txt", "ni")
    assert [e for _, e in emails(ni)] == ["admni@nic.ni", "marvin@nic.ni", "tecni@nic.ni", "boza@nic.ni"]


def test_keyless_continuation_lines_do_not_break_the_block() -> None:
    lk = usable("history-lk-keyless-lines.txt", "lk")
    assert emails(lk) == [("administrative", "gihan@cse.mrt.ac.lk"), ("technical", "hostmaster@nic.lk")]
    assert lk.organisation == "Council for Information Technology, LK Domain Registrar"


def test_double_encoded_utf8_is_kept_as_published() -> None:
    ax = usable("history-ax-double-utf8.txt", "ax")
    assert ax.contacts[1].email == "conny@alcom.ax"


@pytest.mark.parametrize(
    "name, tld, kind, words",
    [
        ("history-ad-empty.txt", "ad", "empty", "no text"),
        ("history-gt-error.txt", "gt", "error", "encountered an error"),
        ("sample-0-objects.txt", "int", "not-found", "no object"),
        ("history-bh-0-objects.txt", "bh", "not-found", "no object"),
        ("history-tk-not-found.txt", "tk", "not-found", "Domain tk. not found."),
        ("retired-yu.txt", "yu", "not-found", "Domain yu. not found."),
        ("sample-eh-not-assigned.txt", "eh", "not-assigned", "Not assigned"),
        ("history-xn--node-new.txt", "xn--node", "new", "NEW"),
        ("history-fi-old-format.txt", "fi", "old-format", "before 2010"),
        ("retired-um.txt", "um", "old-format", "before 2010"),
        ("history-gw-old-format-latin1.txt", "gw", "old-format", "before 2010"),
        ("history-si-truncated.txt", "si", "truncated", "source"),
        ("history-xn--mgb9awbf-empty-contacts.txt", "xn--mgb9awbf", "no-contact-email", "has no fields"),
        ("whois-nl.txt", "de", "wrong-domain", "record is for 'NL'"),
        ("whois-xn--p1ai.txt", "xn--p1acf", "wrong-domain", "рф"),
    ],
)
def test_not_usable_answers(name: str, tld: str, kind: str, words: str) -> None:
    outcome = parse(name, tld)
    assert isinstance(outcome, Unusable), outcome
    assert outcome.kind == kind
    assert words in outcome.detail
    assert outcome.source == "whois"
    assert outcome.raw == whois_text(name)  # the raw answer travels with the verdict, for the audit


def test_retired_records_that_still_parse_are_not_special_here() -> None:
    # AN and TP were ordinary records before retirement: keeping them out is names.py's job.
    assert isinstance(parse("retired-an.txt", "an"), ParsedRecord)
    assert isinstance(parse("retired-tp.txt", "tp"), ParsedRecord)


def test_tp_dash_organisation_reads_as_none() -> None:
    assert parse("retired-tp.txt", "tp").organisation == ""


@pytest.mark.parametrize(
    "change, kind",
    [
        (("source:       IANA", "source:       RIPE"), "not-iana"),
        (("source:       IANA", "source:       IANA\nsource:       RIPE"), "not-iana"),
        (("e-mail:       admin@sidn.nl", "e-mail:       "), "no-contact-email"),
        (("e-mail:       admin@sidn.nl", "e-mail:       admin at sidn.nl"), "no-contact-email"),
        (("status:       ACTIVE", "status:       INACTIVE"), "inactive"),
        (("% This query returned 1 object", "% This query returned 2 objects"), "malformed"),
        (("domain:       NL", "domain:       NL\ndomain:       BE"), "malformed"),
        (("domain:       NL", "domainname:   NL"), "malformed"),
    ],
)
def test_edited_real_record_is_rejected(change: tuple[str, str], kind: str) -> None:
    """Variants of NL's real record with one field broken (synthetic, not seen for real)."""
    text = whois_text("whois-nl.txt")
    assert change[0] in text
    outcome = parse_whois(text.replace(change[0], change[1], 1), parse_tld("nl"))
    assert isinstance(outcome, Unusable) and outcome.kind == kind, outcome


def test_missing_technical_contact() -> None:
    text = whois_text("whois-nl.txt")
    cut = text[: text.index("contact:      technical")] + text[text.index("nserver:") :]
    outcome = parse_whois(cut, parse_tld("nl"))
    assert isinstance(outcome, Unusable) and outcome.kind == "no-contact-email"
    assert "no technical contact" in outcome.detail


def test_idn_record_without_domain_ace_is_rejected() -> None:
    text = whois_text("whois-xn--p1ai.txt").replace("domain-ace:   XN--P1AI\n", "")
    outcome = parse_whois(text, parse_tld("xn--p1ai"))
    assert isinstance(outcome, Unusable) and outcome.kind == "wrong-domain"


@pytest.mark.parametrize("junk", ["", "\n\n", "\ufeff", "garbage", "%", "x" * 10000, "domain: \x00"])
def test_never_raises(junk: str) -> None:
    assert isinstance(parse_whois(junk, parse_tld("nl")), Unusable)
