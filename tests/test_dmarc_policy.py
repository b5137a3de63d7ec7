"""`authentication.require: adaptive` (secirbot.dmarc_policy): the approver's DMARC policy decides how much a
reply must prove.

Pure tests read records and choose levels through an injected TXT lookup. The production lookup is tested
against the local DNS server (secirbot.sandbox.iana_servers.DnsServer), and the end-to-end tests run the
whole bot (real Dovecot, the SMTP sink, the IANA stand-ins, the same DNS server answering the DMARC records
and the DKIM key) with the shipped authentication defaults: no trusted authserv-id, require adaptive.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dkim
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from secirbot.cli import main
from secirbot.config import DnsConfig
from secirbot.dmarc_policy import (
    CachedLookup,
    DmarcLookupError,
    DmarcPolicies,
    Effective,
    TxtLookup,
    make_txt_lookup,
)
from secirbot.rules import load_rules
from secirbot.sandbox.iana_servers import DnsServer
from tests.clients import client_reply
from tests.flow import ADMIN_FROM, NL_ADMIN, assert_undecided, body, flat, one, open_request, request, summary
from tests.harness import REPO, SECRETARIAT, World

APPROVER = "admin@sidn.nl"
NOT_ACCEPTED = "Your answer could not be accepted"
REJECTED = "Rejected answer to request #1 (.nl): dmarc-required"
SHIPPED = {"authserv_id": None, "require": "adaptive"}  # the shipped rules.yaml, as the issue found it


def zone(records: dict[str, list[bytes]], failing: tuple[str, ...] = ()) -> TxtLookup:
    """A TXT lookup over a dict; names in `failing` time out; it records every name it was asked."""

    def lookup(name: str) -> list[bytes]:
        lookup.asked.append(name)  # type: ignore[attr-defined]
        if name in failing:
            raise DmarcLookupError("Timeout: The DNS operation timed out")
        return list(records.get(name, []))

    lookup.asked = []  # type: ignore[attr-defined]
    return lookup


def adaptive(records: dict[str, list[bytes]], approver: str = APPROVER, failing: tuple[str, ...] = ()) -> Effective:
    return DmarcPolicies(zone(records, failing)).effective("adaptive", approver)


# --- pure: which level for which record --------------------------------------------------------------------


@pytest.mark.parametrize(
    "record, level, note",
    [
        (b"v=DMARC1; p=reject; rua=mailto:dmarc@sidn.nl", "dmarc", "p=reject at _dmarc.sidn.nl: dmarc required"),
        (b"v=DMARC1; p=quarantine", "dmarc", "p=quarantine at _dmarc.sidn.nl: dmarc required"),
        (b"v=DMARC1; p=none; rua=mailto:dmarc@sidn.nl", "none", "p=none at _dmarc.sidn.nl: token and From suffice"),
        # pct only samples which failures a receiver acts on; a forger just sends again. Ignored.
        (b"v=DMARC1; p=reject; pct=0", "dmarc", "p=reject at _dmarc.sidn.nl: dmarc required"),
        # Tag names and policy values are case-insensitive (RFC 7489 ABNF), and whitespace around "=" is allowed.
        (b"v = DMARC1 ; P = Reject ;", "dmarc", "p=reject at _dmarc.sidn.nl: dmarc required"),
        # Unknown tags are ignored (RFC 7489 6.3), a value may contain "=".
        (
            b"v=DMARC1; p=reject; np=reject; rua=mailto:a@b.example?subject=x",
            "dmarc",
            "p=reject at _dmarc.sidn.nl: dmarc required",
        ),
    ],
    ids=["reject", "quarantine", "none", "pct-ignored", "case-and-spaces", "unknown-tags"],
)
def test_the_published_policy_chooses_the_level(record: bytes, level: str, note: str) -> None:
    assert adaptive({"_dmarc.sidn.nl": [record]}) == Effective(level, note)


def test_no_record_at_the_domain_or_its_organisational_domain_means_none() -> None:
    effective = DmarcPolicies(lookup := zone({})).effective("adaptive", "admin@mail.sidn.nl")
    assert effective == Effective(
        "none", "no DMARC record at _dmarc.mail.sidn.nl nor _dmarc.sidn.nl: token and From suffice"
    )
    assert lookup.asked == ["_dmarc.mail.sidn.nl", "_dmarc.sidn.nl"]  # type: ignore[attr-defined]


def test_txt_records_that_are_not_dmarc_records_are_discarded() -> None:
    # An SPF record published at _dmarc by mistake, and a lower-case version tag ("DMARC1" is case-sensitive).
    assert adaptive({"_dmarc.sidn.nl": [b"v=spf1 -all", b"v=dmarc1; p=reject"]}) == Effective(
        "none", "no DMARC record at _dmarc.sidn.nl: token and From suffice"
    )


def test_two_dmarc_records_are_no_policy_at_all() -> None:
    # RFC 7489 6.6.3 step 5: discovery ends with no policy, so no receiver enforces either record.
    effective = adaptive({"_dmarc.sidn.nl": [b"v=DMARC1; p=reject", b"v=DMARC1; p=quarantine"]})
    assert effective == Effective(
        "none", "2 DMARC records at _dmarc.sidn.nl: none is valid (RFC 7489 6.6.3): token and From suffice"
    )


@pytest.mark.parametrize(
    "record, shown",
    [
        (b"v=DMARC1; p=rejected", "p=rejected"),
        (b"v=DMARC1; rua=mailto:dmarc@sidn.nl", "no p="),
        (b"v=DMARC1; p=reject; sp=bogus", "p=reject; sp=bogus"),
    ],
    ids=["bad-p", "no-p", "bad-sp"],
)
def test_a_record_without_a_valid_policy_means_none(record: bytes, shown: str) -> None:
    # RFC 7489 6.6.3 step 6: receivers act as if p=none (with a valid rua) or apply no DMARC: the same here.
    assert adaptive({"_dmarc.sidn.nl": [record]}) == Effective(
        "none", f"DMARC record at _dmarc.sidn.nl has no valid policy ({shown}): token and From suffice"
    )


@pytest.mark.parametrize(
    "record, why",
    [
        (b"v=DMARC1; p=reject; junk", "'junk' is not a tag=value"),
        (b"v=DMARC1;; p=reject", "empty tag between two ';'"),
        (b"v=DMARC1; p=none; p=reject", "duplicate tag p"),
        (b"v=DMARC1; p=none; P=reject", "duplicate tag p"),
    ],
    ids=["tag-without-value", "empty-tag", "duplicate-tag", "duplicate-tag-other-case"],
)
def test_a_malformed_dmarc_record_fails_closed(record: bytes, why: str) -> None:
    # Receivers may ignore the syntax error and apply p= anyway (RFC 7489 6.3): we cannot tell, so dmarc.
    assert adaptive({"_dmarc.sidn.nl": [record]}) == Effective(
        "dmarc", f"DMARC record at _dmarc.sidn.nl unreadable ({why}): treated as dmarc (fail closed)"
    )


@pytest.mark.parametrize(
    "record, level, note",
    [
        (b"v=DMARC1; p=reject; sp=none", "none", "sp=none at _dmarc.sidn.nl for mail.sidn.nl: token and From suffice"),
        (
            b"v=DMARC1; p=none; sp=quarantine",
            "dmarc",
            "sp=quarantine at _dmarc.sidn.nl for mail.sidn.nl: dmarc required",
        ),
        (b"v=DMARC1; p=reject", "dmarc", "p=reject at _dmarc.sidn.nl for mail.sidn.nl: dmarc required"),
    ],
    ids=["sp-none-overrides-p-reject", "sp-quarantine-overrides-p-none", "no-sp-p-applies"],
)
def test_a_subdomain_without_a_record_falls_back_to_the_organisational_domain_and_its_sp(
    record: bytes, level: str, note: str
) -> None:
    assert adaptive({"_dmarc.sidn.nl": [record]}, approver="admin@mail.sidn.nl") == Effective(level, note)


def test_the_subdomains_own_record_wins_and_sp_does_not_apply_to_it() -> None:
    records = {"_dmarc.mail.sidn.nl": [b"v=DMARC1; p=reject; sp=none"], "_dmarc.sidn.nl": [b"v=DMARC1; p=none"]}
    lookup = zone(records)
    effective = DmarcPolicies(lookup).effective("adaptive", "admin@mail.sidn.nl")
    assert effective == Effective("dmarc", "p=reject at _dmarc.mail.sidn.nl: dmarc required")
    assert lookup.asked == ["_dmarc.mail.sidn.nl"]  # type: ignore[attr-defined]


def test_a_public_suffix_has_no_organisational_domain_to_fall_back_to() -> None:
    lookup = zone({"_dmarc.co.uk": [b"v=DMARC1; p=reject"]})
    assert DmarcPolicies(lookup).effective("adaptive", "admin@example.co.uk").level == "none"
    assert lookup.asked == ["_dmarc.example.co.uk"]  # type: ignore[attr-defined]  # never _dmarc.co.uk


@pytest.mark.parametrize(
    "approver, failing, name",
    [
        (APPROVER, ("_dmarc.sidn.nl",), "_dmarc.sidn.nl"),
        ("admin@mail.sidn.nl", ("_dmarc.sidn.nl",), "_dmarc.sidn.nl"),  # the fall-back lookup fails
    ],
    ids=["domain", "organisational-domain"],
)
def test_dns_that_cannot_answer_fails_closed(approver: str, failing: tuple[str, ...], name: str) -> None:
    assert adaptive({}, approver=approver, failing=failing) == Effective(
        "dmarc", f"DNS cannot answer for {name} (Timeout: The DNS operation timed out): treated as dmarc (fail closed)"
    )


def test_an_internationalised_approver_domain_is_looked_up_by_its_a_labels() -> None:
    effective = adaptive({"_dmarc.xn--d1acufc.xn--p1ai": [b"v=DMARC1; p=reject"]}, approver="admin@домен.рф")
    assert effective == Effective("dmarc", "p=reject at _dmarc.xn--d1acufc.xn--p1ai: dmarc required")


@pytest.mark.parametrize("require", ["none", "dmarc", "dkim"])
def test_the_fixed_levels_are_kept_as_they_are_without_any_lookup(require: str) -> None:
    lookup = zone({}, failing=("_dmarc.sidn.nl",))
    assert DmarcPolicies(lookup).effective(require, APPROVER) == Effective(require, None)
    assert lookup.asked == []  # type: ignore[attr-defined]


def test_dns_switched_off_by_configuration_acts_as_none_and_says_so() -> None:
    assert make_txt_lookup(DnsConfig(enabled=False)) is None
    assert DmarcPolicies(None).effective("adaptive", APPROVER) == Effective(
        "none", "not looked up: dns.enabled is false: token and From suffice"
    )


def test_answers_are_cached_for_the_configured_time_but_failures_are_not() -> None:
    clock = [datetime(2026, 11, 26, 9, 0, tzinfo=UTC)]
    records: dict[str, list[bytes]] = {"_dmarc.sidn.nl": [b"v=DMARC1; p=reject"]}
    failing: list[str] = []
    asked: list[str] = []

    def lookup(name: str) -> list[bytes]:
        asked.append(name)
        if name in failing:
            raise DmarcLookupError("SERVFAIL")
        return list(records.get(name, []))

    policies = DmarcPolicies(CachedLookup(lookup, timedelta(hours=1), lambda: clock[0]))
    assert policies.effective("adaptive", APPROVER).level == "dmarc"
    records["_dmarc.sidn.nl"] = [b"v=DMARC1; p=none"]
    clock[0] += timedelta(minutes=59)
    assert policies.effective("adaptive", "tech@SIDN.nl").level == "dmarc"  # still the cached answer
    assert asked == ["_dmarc.sidn.nl"]
    clock[0] += timedelta(minutes=2)
    assert policies.effective("adaptive", APPROVER).level == "none"  # expired: asked again
    failing.append("_dmarc.example.org")
    clock[0] += timedelta(hours=2)
    assert policies.effective("adaptive", "x@example.org").level == "dmarc"  # fail closed ...
    failing.clear()
    assert policies.effective("adaptive", "x@example.org").level == "none"  # ... and asked again at once
    assert asked == ["_dmarc.sidn.nl", "_dmarc.sidn.nl", "_dmarc.example.org", "_dmarc.example.org"]


# --- the production lookup against the local DNS server ---------------------------------------------------


@pytest.fixture
def dns_server(_dns_server: DnsServer) -> Iterator[DnsServer]:
    _dns_server.reset()
    yield _dns_server
    _dns_server.reset()


def test_the_production_lookup_reads_all_records_and_tells_failure_from_absence(dns_server: DnsServer) -> None:
    long_record = b"v=DMARC1; p=reject; rua=" + b",".join(b"mailto:r%d@sidn.nl" % i for i in range(40))
    assert len(long_record) > 255  # two strings on the wire, one record once joined
    dns_server.txt["_dmarc.sidn.nl"] = [long_record, b"v=spf1 -all"]
    dns_server.servfail.add("_dmarc.broken.nl")
    lookup = make_txt_lookup(DnsConfig(nameservers=("127.0.0.1",), port=dns_server.port, timeout_seconds=1))
    assert lookup is not None
    assert sorted(lookup("_dmarc.sidn.nl")) == sorted([long_record, b"v=spf1 -all"])
    assert lookup("_dmarc.nowhere.nl") == []  # NOERROR, no TXT
    assert lookup("_dmarc.sidn.invalid") == []  # NXDOMAIN
    with pytest.raises(DmarcLookupError, match="NoNameservers"):
        lookup("_dmarc.broken.nl")


# --- end to end: the bot with the shipped defaults ----------------------------------------------------------

SELECTOR = b"sel2026"


@pytest.fixture(scope="module")
def dkim_key() -> tuple[bytes, bytes]:
    """(PKCS#1 private key PEM, DNS TXT record) made for this run."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def sign(raw: bytes, private: bytes) -> bytes:
    return (
        dkim.sign(
            raw, SELECTOR, b"sidn.nl", private, include_headers=[b"from", b"to", b"subject", b"date", b"message-id"]
        )
        + raw
    )


def shipped_defaults(world: World) -> None:
    world.rules["authentication"] = dict(SHIPPED)


def policy_checks(world: World) -> list[dict[str, str]]:
    return [t["details"]["checks"] for t in request(world)["timeline"] if t["action"] == "reply-rejected"]


def test_the_shipped_rules_are_adaptive_without_a_trusted_authserv_id() -> None:
    auth = load_rules(REPO / "rules.yaml").authentication
    assert (auth.authserv_id, auth.require, auth.dmarc_cache) == (None, "adaptive", timedelta(hours=1))


def test_forged_from_to_an_approver_whose_domain_publishes_p_reject_decides_nothing(world: World) -> None:
    shipped_defaults(world)
    world.dns.txt["_dmarc.sidn.nl"] = [b"v=DMARC1; p=reject; rua=mailto:dmarc@sidn.nl"]
    opened = open_request(world)
    # Someone holding admin@sidn.nl's token writes From: admin@sidn.nl from elsewhere: no signature, and our
    # server vouches for nothing.
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"))
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [(NL_ADMIN, NOT_ACCEPTED), (SECRETARIAT, REJECTED)]
    assert "we could not confirm that it really comes from the address the request was sent to" in flat(
        one(sent, NL_ADMIN)
    )
    assert "Check:     dmarc_policy: p=reject at _dmarc.sidn.nl: dmarc required" in body(one(sent, SECRETARIAT))
    assert_undecided(world, sent)
    assert policy_checks(world) == [
        {
            "from": "matches",
            "authres": "not trusted: no authserv_id configured",
            "dkim": "no DKIM signature",
            "dmarc_policy": "p=reject at _dmarc.sidn.nl: dmarc required",
            "token": "read from To (1 copy)",
        }
    ]


def test_control_forged_from_to_an_approver_whose_domain_has_no_dmarc_record_decides(world: World) -> None:
    # What adaptive does not defend, on purpose: without a policy the domain's own mail need not pass DMARC,
    # so requiring it would refuse genuine approvers. `secirbot check` warns about exactly this.
    shipped_defaults(world)
    opened = open_request(world)
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"))
    world.run_once()
    sent = world.sent()
    assert body(one(sent, "secir-request@lists.example.org")).splitlines()[0] == (
        "join address=jan@registry.example digest=no"
    )
    data = request(world)
    assert (data["state"], data["decided_by"]) == ("approved", NL_ADMIN)


def test_dkim_signed_genuine_reply_to_a_p_reject_domain_decides_and_the_policy_is_looked_up_once(
    world: World, dkim_key: tuple[bytes, bytes]
) -> None:
    private, record = dkim_key
    shipped_defaults(world)
    world.dns.txt["_dmarc.sidn.nl"] = [b"v=DMARC1; p=reject"]
    world.dns.txt["sel2026._domainkey.sidn.nl"] = [record]  # the key, from the same DNS server
    opened = open_request(world)
    approval = opened.approvals[NL_ADMIN].message
    world.deliver(client_reply("apple-mail", approval, ADMIN_FROM, "APPROVE"))  # unsigned first: refused
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [(NL_ADMIN, NOT_ACCEPTED), (SECRETARIAT, REJECTED)]
    assert_undecided(world, sent)
    world.clock.advance(minutes=10)
    world.deliver(sign(client_reply("apple-mail", approval, ADMIN_FROM, "APPROVE"), private))
    world.run_once()
    sent = world.sent()
    assert body(one(sent, "secir-request@lists.example.org")).splitlines()[0] == (
        "join address=jan@registry.example digest=no"
    )
    data = request(world)
    assert (data["state"], data["decided_by"]) == ("approved", NL_ADMIN)
    assert world.dns.counts["_dmarc.sidn.nl."] == 1  # the second reply used the cached policy


def test_dns_servfail_for_the_policy_fails_closed(world: World) -> None:
    shipped_defaults(world)
    world.dns.servfail.add("_dmarc.sidn.nl")
    opened = open_request(world)
    world.deliver(client_reply("gmail", opened.approvals[NL_ADMIN].message, ADMIN_FROM, "APPROVE"))
    world.run_once()
    sent = world.sent()
    assert summary(sent) == [(NL_ADMIN, NOT_ACCEPTED), (SECRETARIAT, REJECTED)]
    assert_undecided(world, sent)
    (checks,) = policy_checks(world)
    assert checks["dmarc_policy"].startswith("DNS cannot answer for _dmarc.sidn.nl (NoNameservers")
    assert checks["dmarc_policy"].endswith(": treated as dmarc (fail closed)")


# --- secirbot check ----------------------------------------------------------------------------------------

PRODUCTION = {
    "imap": {"host": "mail.example.net", "username": "bot", "password": "x"},
    "smtp": {"host": "smtp.example.net"},
}


def check_warnings(
    folder: Path, capsys: pytest.CaptureFixture[str], authentication: dict[str, object], settings: dict[str, object]
) -> list[str]:
    """The warning lines `secirbot check` prints for these settings and authentication rules."""
    rules = {"pilot": {"enabled": True, "cctlds": ["nl"]}, "authentication": authentication}
    (folder / "rules.yaml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    config = folder / "secirbot.yaml"
    config.write_text(yaml.safe_dump({**settings, "templates": str(REPO / "templates")}), encoding="utf-8")
    assert main(["--config", str(config), "check"]) == 0
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning: ")]


@pytest.fixture
def _no_secirbot_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("SECIRBOT_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize(
    "authentication, settings, expected",
    [
        (
            {"authserv_id": None, "require": "adaptive"},
            PRODUCTION,
            "warning: authentication.authserv_id is not set, so no Authentication-Results is trusted: for"
            " approvers whose domain publishes no DMARC quarantine/reject policy, a leaked reply token plus a"
            " forged From decides a request",
        ),
        (
            {"authserv_id": None, "require": "none"},
            PRODUCTION,
            "warning: authentication.require is none and no authserv_id is set: a leaked reply token plus a forged From"
            " decides a request for every approver; use adaptive (the default) and set authserv_id",
        ),
        (
            {"authserv_id": "mx.lists.example.org", "require": "adaptive"},
            {**PRODUCTION, "dns": {"enabled": False}},
            "warning: dns.enabled is false: authentication.require adaptive cannot look up DMARC policies and acts as"
            " none for every approver",
        ),
        ({"authserv_id": "mx.lists.example.org", "require": "adaptive"}, PRODUCTION, None),
        ({"authserv_id": None, "require": "none"}, {}, None),  # the sandbox: all its mail is local
    ],
    ids=["adaptive-no-authserv-id", "none-no-authserv-id", "adaptive-dns-off", "trusted-authserv-id", "sandbox"],
)
@pytest.mark.usefixtures("_no_secirbot_environment")
def test_check_says_what_the_authentication_rules_leave_exposed(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    authentication: dict[str, object],
    settings: dict[str, object],
    expected: str | None,
) -> None:
    assert check_warnings(tmp_path, capsys, authentication, settings) == ([expected] if expected else [])
