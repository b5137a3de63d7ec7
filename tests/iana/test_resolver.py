"""IanaResolver against local whois/RDAP/DNS servers and a real Store: sources, snapshots, cache, locking."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from secirbot.config import Config, DnsConfig, IanaConfig
from secirbot.iana.names import TldName, normalize_tld, parse_tld
from secirbot.iana.resolver import IanaResolver, load_problem, load_snapshot
from secirbot.sandbox.iana_servers import DnsServer, RdapServer, WhoisServer, free_port
from secirbot.store import Store
from tests.iana.helpers import whois_text

NL = TldName("nl", "nl")
RF = TldName("xn--p1ai", "рф")


def rows(store: Store) -> list[dict]:
    return [dict(r) for r in store.all("SELECT * FROM iana_snapshots ORDER BY id")]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_whois_primary(
    resolver: IanaResolver, store: Store, whois_server: WhoisServer, rdap_server: RdapServer
) -> None:
    result = resolver.resolve(NL)
    assert result.ok and result.source == "whois" and result.problem is None
    assert [a.email for a in result.record.approvers()] == ["admin@sidn.nl", "tech@sidn.nl"]
    assert result.delegated is True and result.record.delegated is True
    assert whois_server.counts["nl"] == 1 and sum(rdap_server.counts.values()) == 0
    [row] = rows(store)
    assert row["id"] == result.snapshot_id
    assert row["tld"] == "nl" and row["source"] == "whois" and row["problem"] is None
    assert row["raw"] == whois_text("whois-nl.txt")
    assert row["delegated"] == 1
    assert json.loads(row["record"])["contacts"][1]["email"] == "tech@sidn.nl"
    assert load_snapshot(store, result.snapshot_id) == result.record


def test_idn_in_both_forms(resolver: IanaResolver, whois_server: WhoisServer) -> None:
    for spelling in (".рф", "XN--P1AI"):
        result = resolver.resolve(normalize_tld(spelling))
        assert result.ok and result.record.tld == RF
    assert whois_server.counts["xn--p1ai"] == 2  # the A-label goes on the wire


@pytest.mark.parametrize("mode", ["error", "empty"])
def test_fallback_to_rdap_when_whois_is_unusable(
    resolver: IanaResolver, store: Store, whois_server: WhoisServer, mode: str
) -> None:
    whois_server.modes["nl"] = mode
    result = resolver.resolve(NL)
    assert result.ok and result.source == "rdap"
    assert [(a.source, a.problem.kind if a.problem else None) for a in result.attempts] == [
        ("whois", mode),
        ("rdap", None),
    ]
    first, second = rows(store)
    assert first["source"] == "whois" and first["record"] is None
    assert json.loads(first["problem"])["kind"] == mode
    assert second["id"] == result.snapshot_id and second["source"] == "rdap"
    assert json.loads(second["raw"])["ldhName"] == "nl"
    assert load_problem(store, first["id"]).kind == mode


def test_fallback_when_whois_is_unreachable(store: Store, rdap_server: RdapServer, dns_server: DnsServer) -> None:
    config = Config(
        iana=IanaConfig(whois=f"127.0.0.1:{free_port()}", rdap=rdap_server.base_url, timeout_seconds=1),
        dns=DnsConfig(nameservers=("127.0.0.1",), port=dns_server.port, timeout_seconds=1),
    )
    result = IanaResolver(config, store).resolve(NL)
    assert result.ok and result.source == "rdap"
    assert result.attempts[0].problem.kind == "unreachable"


def test_rdap_primary(config: Config, store: Store, whois_server: WhoisServer, rdap_server: RdapServer) -> None:
    config = dataclasses.replace(config, iana=dataclasses.replace(config.iana, primary="rdap"))
    result = IanaResolver(config, store).resolve(RF)
    assert result.ok and result.source == "rdap" and result.record.tld.unicode == "рф"
    assert sum(whois_server.counts.values()) == 0 and rdap_server.counts["xn--p1ai"] == 1


def test_rdap_primary_falls_back_to_whois_on_500(config: Config, store: Store, rdap_server: RdapServer) -> None:
    config = dataclasses.replace(config, iana=dataclasses.replace(config.iana, primary="rdap"))
    rdap_server.modes["nl"] = "500"
    result = IanaResolver(config, store).resolve(NL)
    assert result.ok and result.source == "whois"
    assert result.attempts[0].problem.kind == "error" and "HTTP 500" in result.attempts[0].problem.detail


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
        ("eh", "not-assigned"),
    ],
)
def test_nothing_usable_from_either_source(resolver: IanaResolver, store: Store, tld: str, kind: str) -> None:
    result = resolver.resolve(parse_tld(tld))
    assert not result.ok and result.record is None
    # whois's telling answer is reported, not RDAP's 404
    assert result.problem.kind == kind and result.source == "whois"
    assert [a.source for a in result.attempts] == ["whois", "rdap"]
    assert result.attempts[1].problem.kind == "not-found"
    assert len(rows(store)) == 2 and all(r["record"] is None for r in rows(store))
    assert load_snapshot(store, result.snapshot_id) is None
    assert load_problem(store, result.snapshot_id).kind == kind


def test_network_trouble_never_raises(store: Store) -> None:
    closed = free_port()
    config = Config(
        iana=IanaConfig(whois=f"127.0.0.1:{closed}", rdap=f"http://127.0.0.1:{closed}", timeout_seconds=1),
        dns=DnsConfig(enabled=False),
    )
    result = IanaResolver(config, store).resolve(NL)
    assert not result.ok and result.problem.kind == "unreachable"
    assert result.delegated is None
    assert [r["source"] for r in rows(store)] == ["whois", "rdap"]  # even "no answer" leaves a snapshot
    assert all(r["raw"] == "" for r in rows(store))


def test_whois_that_hangs_times_out(
    resolver: IanaResolver, config: Config, whois_server: WhoisServer, store: Store
) -> None:
    config = dataclasses.replace(config, iana=dataclasses.replace(config.iana, timeout_seconds=1))
    whois_server.modes["fi"] = "hang"
    result = IanaResolver(config, store).resolve(TldName("fi", "fi"))
    assert result.ok and result.source == "rdap"
    assert result.attempts[0].problem.kind == "unreachable" and "timed out" in result.attempts[0].problem.detail


def test_dns_signal_false_is_recorded_but_does_not_block(resolver: IanaResolver, store: Store) -> None:
    result = resolver.resolve(TldName("va", "va"))  # the DNS rig says VA is not in the root
    assert result.ok and result.delegated is False
    assert rows(store)[0]["delegated"] == 0


def test_dns_unreachable_is_unknown(config: Config, store: Store, dns_server: DnsServer) -> None:
    dns_server.drop = True
    result = IanaResolver(config, store).resolve(NL)
    assert result.ok and result.delegated is None and rows(store)[0]["delegated"] is None


def test_fresh_always_asks_again(resolver: IanaResolver, whois_server: WhoisServer, store: Store) -> None:
    first, second = resolver.resolve(NL), resolver.resolve(NL, fresh=True)
    assert whois_server.counts["nl"] == 2 and first.snapshot_id != second.snapshot_id
    assert len(rows(store)) == 2


def test_cache_within_ttl_and_not_after(config: Config, store: Store, whois_server: WhoisServer) -> None:
    clock = Clock()
    resolver = IanaResolver(config, store, now=clock)
    first = resolver.resolve(NL, fresh=False)  # nothing cached yet: asks
    clock.now += timedelta(hours=23, minutes=59)
    cached = resolver.resolve(NL, fresh=False)
    assert cached.cached and cached.snapshot_id == first.snapshot_id and cached.record == first.record
    assert whois_server.counts["nl"] == 1
    clock.now += timedelta(minutes=2)  # now older than the default 24 h
    again = resolver.resolve(NL, fresh=False)
    assert not again.cached and whois_server.counts["nl"] == 2


def test_unusable_answers_are_never_served_from_cache(resolver: IanaResolver, whois_server: WhoisServer) -> None:
    resolver.resolve(parse_tld("gt"), fresh=False)
    result = resolver.resolve(parse_tld("gt"), fresh=False)
    assert not result.cached and whois_server.counts["gt"] == 2


def test_ttl_zero_disables_cache(config: Config, store: Store, whois_server: WhoisServer) -> None:
    config = dataclasses.replace(config, iana=dataclasses.replace(config.iana, cache_ttl_seconds=0))
    resolver = IanaResolver(config, store)
    resolver.resolve(NL, fresh=False)
    resolver.resolve(NL, fresh=False)
    assert whois_server.counts["nl"] == 2


def test_at_most_one_query_in_flight_per_tld(resolver: IanaResolver, whois_server: WhoisServer, store: Store) -> None:
    whois_server.delay["nl"] = 0.3
    whois_server.delay["fi"] = 0.3
    results: list = []
    start = threading.Barrier(6)

    def ask(name: TldName) -> None:
        start.wait()
        results.append(resolver.resolve(name))

    threads = [threading.Thread(target=ask, args=(n,)) for n in [NL] * 4 + [TldName("fi", "fi")] * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 6 and all(r.ok for r in results)
    assert whois_server.peak["nl"] == 1 and whois_server.peak["fi"] == 1
    # the callers that waited reused the answer instead of asking again
    assert whois_server.counts["nl"] == 1 and whois_server.counts["fi"] == 1
    assert sum(r.shared for r in results) == 4
    assert len({r.snapshot_id for r in results if r.tld == NL}) == 1
    assert len(rows(store)) == 2


def test_resolve_each_paces_and_backs_off(
    resolver: IanaResolver, whois_server: WhoisServer, rdap_server: RdapServer
) -> None:
    pauses: list[float] = []
    resolver.sleep = pauses.append
    whois_server.modes["fi"] = "error"
    rdap_server.modes["fi"] = "500"
    whois_server.modes["jo"] = "error"
    rdap_server.modes["jo"] = "500"
    names = [NL, TldName("fi", "fi"), TldName("jo", "jo"), TldName("mx", "mx"), RF]
    results = list(resolver.resolve_each(names, interval=1.0))
    assert [r.ok for r in results] == [True, False, False, True, True]
    assert pauses == [1.0, 2.0, 4.0, 1.0]


def test_resolve_each_never_faster_than_one_second(resolver: IanaResolver) -> None:
    pauses: list[float] = []
    resolver.sleep = pauses.append
    list(resolver.resolve_each([NL, RF], interval=0.01))
    assert pauses == [1.0]


def test_resolve_each_backs_off_even_when_the_fallback_answered(
    resolver: IanaResolver, whois_server: WhoisServer
) -> None:
    pauses: list[float] = []
    resolver.sleep = pauses.append
    whois_server.modes["nl"] = "error"  # RDAP answers for nl, but whois is struggling: slow down anyway
    results = list(resolver.resolve_each([NL, RF, TldName("fi", "fi")]))
    assert all(r.ok for r in results) and results[0].source == "rdap"
    assert pauses == [2.0, 1.0]
