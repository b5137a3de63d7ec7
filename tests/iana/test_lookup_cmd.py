"""`secirbot lookup` end to end: real Config (also loaded from YAML), real Store, local IANA servers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from secirbot.config import Config, load_config
from secirbot.iana.lookup_cmd import EXIT_CANNOT_RESOLVE, EXIT_NOT_CCTLD, EXIT_OK, EXIT_USAGE, lookup_command
from secirbot.iana.names import TldName, parse_tld
from secirbot.sandbox.iana_servers import DnsServer, RdapServer, WhoisServer
from secirbot.store import Store, from_iso


def run(
    config: Config, store: Store, *names: str, all_: bool = False, as_json: bool = False, **kw: object
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = lookup_command(config, store, list(names), all_, as_json, out=out, err=err, **kw)
    return status, out.getvalue(), err.getvalue()


def test_text_output(config: Config, store: Store) -> None:
    status, out, err = run(config, store, "nl")
    assert status == EXIT_OK and err == ""
    assert "ccTLD:          .nl" in out
    assert "Manager:        SIDN (Stichting Internet Domeinregistratie Nederland)" in out
    assert "Administrative: Roelof Meijer, SIDN (Stichting Internet Domeinregistratie Nederland) <admin@sidn.nl>" in out
    assert "Technical:      Marc Groeneweg" in out and "<tech@sidn.nl>" in out
    assert "Source:         IANA whois, fetched 20" in out
    assert "Root NS:        delegated" in out


def test_text_output_idn_shows_both_forms(config: Config, store: Store) -> None:
    status, out, _ = run(config, store, ".рф")
    assert status == EXIT_OK and "ccTLD:          .рф (xn--p1ai)" in out


@pytest.mark.parametrize("spelling", [".рф", "xn--p1ai", "XN--P1AI", "рф."])
def test_json_for_every_spelling(config: Config, store: Store, spelling: str) -> None:
    status, out, err = run(config, store, spelling, as_json=True)
    assert status == EXIT_OK and err == ""
    data = json.loads(out)
    assert data["tld"] == "xn--p1ai" and data["tld_unicode"] == "рф"
    assert data["organisation"] == "Coordination Center for TLD RU"
    assert data["contacts"] == [
        {
            "role": "administrative",
            "name": ".xn--p1ai domain Administrative group",
            "organisation": "Coordination Center for TLD RU",
            "email": "ru-adm@cctld.ru",
        },
        {
            "role": "technical",
            "name": "Technical Center of Internet",
            "organisation": "Technical Center of Internet",
            "email": "ru-tech@tcinet.ru",
        },
    ]
    assert data["source"] == "whois"
    from_iso(data["fetched_at"])  # ISO 8601, the store's form
    assert isinstance(data["snapshot_id"], int)


def test_json_fi_approvers_deduplicated(config: Config, store: Store) -> None:
    status, out, _ = run(config, store, ".FI", as_json=True)
    data = json.loads(out)
    assert status == EXIT_OK and len(data["contacts"]) == 2
    assert data["approvers"] == [
        {"email": "firootadmin@traficom.fi", "name": "Domain Names", "roles": ["administrative", "technical"]}
    ]


def test_json_keeps_non_ascii_and_mixed_case(config: Config, store: Store) -> None:
    _, out, _ = run(config, store, "me", "jo", as_json=True)
    me, jo = (json.loads(line) for line in out.splitlines())
    assert me["contacts"][0]["name"] == "Božo Krstajić"
    assert jo["contacts"][0]["email"] == "AdminCCtld@modee.gov.jo"


def test_fallback_source_is_reported(config: Config, store: Store, whois_server: WhoisServer) -> None:
    whois_server.modes["kr"] = "error"
    status, out, _ = run(config, store, "kr", as_json=True)
    data = json.loads(out)
    assert status == EXIT_OK and data["source"] == "rdap"
    assert data["contacts"][0]["email"] == "chonkn@gmail.com"


@pytest.mark.parametrize(
    "name, words",
    [
        ("com", "not a country-code TLD"),
        ("example", "not a country-code TLD"),
        ("онлайн", "generic internationalised TLD"),
        ("eh", "Not assigned"),
        ("um", "Not assigned"),
        ("yu", "retired"),
        ("", "no TLD given"),
    ],
)
def test_not_a_cctld_exit_3(config: Config, store: Store, whois_server: WhoisServer, name: str, words: str) -> None:
    status, out, err = run(config, store, name)
    assert status == EXIT_NOT_CCTLD and out == ""
    assert words in err
    assert sum(whois_server.counts.values()) == 0  # nothing asked, nothing stored
    assert store.one("SELECT COUNT(*) AS n FROM iana_snapshots")["n"] == 0


def test_not_a_cctld_json(config: Config, store: Store) -> None:
    status, out, _ = run(config, store, "eh", "com", as_json=True)
    eh, com = (json.loads(line) for line in out.splitlines())
    assert status == EXIT_NOT_CCTLD
    assert eh["error"] == "not-delegated" and eh["status"] == "not-assigned" and eh["tld"] == "eh"
    assert com["error"] == "not-a-cctld"


@pytest.mark.parametrize(
    "tld, kind",
    [
        ("gt", "error"),
        ("ad", "empty"),
        ("bh", "not-found"),
        ("tk", "not-found"),
        ("xn--node", "new"),
        ("gw", "old-format"),
        ("si", "truncated"),
        ("xn--mgb9awbf", "no-contact-email"),
        ("de", "wrong-domain"),
    ],
)
def test_cannot_resolve_exit_4(config: Config, store: Store, tld: str, kind: str) -> None:
    status, out, err = run(config, store, tld)
    assert status == EXIT_CANNOT_RESOLVE and out == ""
    assert f"cannot resolve {parse_tld(tld).display()} now" in err
    assert "Retry later; tell the Secretariat if it persists." in err
    status, out, _ = run(config, store, tld, as_json=True)
    data = json.loads(out)
    assert status == EXIT_CANNOT_RESOLVE
    assert data["error"] == "cannot-resolve" and data["kind"] == kind and "contacts" not in data


def test_worst_status_wins(config: Config, store: Store) -> None:
    assert run(config, store, "nl", "com")[0] == EXIT_NOT_CCTLD
    assert run(config, store, "com", "gt", "nl")[0] == EXIT_CANNOT_RESOLVE


def test_usage(config: Config, store: Store) -> None:
    assert run(config, store)[0] == EXIT_USAGE
    assert run(config, store, "nl", all_=True)[0] == EXIT_USAGE


def test_all_refreshes_politely_and_reports_failures(
    config: Config, store: Store, whois_server: WhoisServer, rdap_server: RdapServer
) -> None:
    pauses: list[float] = []
    universe = [parse_tld(t) for t in ("nl", "gt", "xn--p1ai", "fi", "si")]
    status, out, err = run(config, store, all_=True, sleep=pauses.append, universe=universe)
    assert status == EXIT_CANNOT_RESOLVE and out == ""
    assert pauses == [1.0, 2.0, 1.0, 1.0]  # the pause after gt's error answer is doubled
    assert "[3/5] .рф (xn--p1ai) ok" in err and "[2/5] .gt FAILED" in err
    assert "5 ccTLDs: 3 resolved, 2 failed" in err
    assert ".gt: IANA whois: IANA's server reported an error" in err and ".si:" in err
    assert {t: whois_server.counts[t] for t in ("nl", "gt", "xn--p1ai", "fi", "si")} == dict.fromkeys(
        ("nl", "gt", "xn--p1ai", "fi", "si"), 1
    )
    assert store.one("SELECT COUNT(*) AS n FROM iana_snapshots WHERE record IS NOT NULL")["n"] == 3


def test_all_json_and_success(config: Config, store: Store) -> None:
    universe = [TldName("nl", "nl"), TldName("xn--p1ai", "рф")]
    status, out, err = run(config, store, all_=True, as_json=True, sleep=lambda s: None, universe=universe)
    assert status == EXIT_OK
    assert [json.loads(line)["tld"] for line in out.splitlines()] == ["nl", "xn--p1ai"]
    assert "2 ccTLDs: 2 resolved, 0 failed" in err


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal(config: Config, store: Store) -> None:
    err = Tty()
    lookup_command(
        config,
        store,
        [],
        True,
        False,
        out=io.StringIO(),
        err=err,
        sleep=lambda s: None,
        universe=[TldName("nl", "nl"), TldName("fi", "fi")],
    )
    text = err.getvalue()
    assert "\r[###############---------------] 1/2" in text and "\r[##############################] 2/2" in text


def test_config_file_points_lookup_at_local_servers(
    tmp_path: Path, whois_server: WhoisServer, rdap_server: RdapServer, dns_server: DnsServer
) -> None:
    """The pinned keys iana.whois / iana.rdap / dns.* as a deployment would write them."""
    path = tmp_path / "secirbot.yaml"
    path.write_text(
        "iana:\n"
        f"  whois: {whois_server.endpoint}\n"
        f"  rdap: {rdap_server.base_url}\n"
        "  primary: whois\n"
        "  timeout_seconds: 2\n"
        "dns:\n"
        "  nameservers: [127.0.0.1]\n"
        f"  port: {dns_server.port}\n"
        "  timeout_seconds: 1\n"
        "store:\n"
        "  path: var/test.sqlite3\n",
        encoding="utf-8",
    )
    config = load_config(path, environ={})
    store = Store(config.store.path)
    try:
        status, out, _ = run(config, store, "pm", as_json=True)
    finally:
        store.close()
    data = json.loads(out)
    assert status == EXIT_OK and data["delegated"] is True
    assert [c["email"] for c in data["contacts"]] == ["tld-admin@nic.fr", "tld-tech@nic.fr"]
    assert dns_server.counts["pm."] == 1 and whois_server.counts["pm"] == 1
