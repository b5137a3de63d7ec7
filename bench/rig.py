"""The benchmark's world: the tests' own private Dovecot, SMTP sink and IANA stand-ins, plus bot configurations.

The servers are the ones the test suite uses (`secirbot.sandbox`): a real `dovecot` on 127.0.0.1, an aiosmtpd
sink in a thread of this process, and the whois/RDAP/DNS stand-ins. The whois stand-in serves the 50 real
records in `bench/records/` with no artificial delay, so an IANA lookup costs one local round trip. The sink is
wrapped so that the arrival time of every accepted message is kept (for the reaction probe).

The bot itself always runs as a separate process (`python -m secirbot --config FILE run [--once]`), configured
like `tests/harness.py` does it, with rules that admit the 50 ccTLDs (see `bench_rules`).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from secirbot.iana.names import TldName, normalize_tld
from secirbot.iana.record import ParsedRecord
from secirbot.iana.whois import decode_answer, parse_whois
from secirbot.sandbox.dovecot import Dovecot, MailUser, dovecot_version
from secirbot.sandbox.iana_servers import DnsServer, RdapServer, WhoisServer
from secirbot.sandbox.smtp_sink import Captured, SmtpSink

REPO = Path(__file__).resolve().parent.parent
RECORDS = REPO / "bench" / "records"
BOT = "join@lists.example.org"
SECRETARIAT = "secretariat@example.org"
LIST = "secir@lists.example.org"
BATCH_SIZE = 50

# The raised limits of the bench's rules.yaml, printed with the results.
SEATS_PER_CCTLD = 1000
MAX_PER_CCTLD_PER_HOUR = 10_000
MAX_PER_HOUR = 1_000_000


def load_records() -> dict[TldName, bytes]:
    """The 50 whois records, by ccTLD, as the stand-in serves them (bytes, verbatim)."""
    out = {}
    for path in sorted(RECORDS.glob("whois-*.txt")):
        out[normalize_tld(path.stem.removeprefix("whois-"))] = path.read_bytes()
    if len(out) < 10:
        raise SystemExit(f"bench: expected the whois records in {RECORDS}, found {len(out)}")
    return out


def approver_addresses(records: dict[TldName, bytes]) -> dict[TldName, set[str]]:
    """The administrative and technical addresses of each record, lower-cased (who gets approval requests)."""
    out = {}
    for tld, raw in records.items():
        parsed = parse_whois(decode_answer(raw), tld)
        if not isinstance(parsed, ParsedRecord):
            raise SystemExit(f"bench: the record of {tld.ascii} is not usable: {parsed.kind}")
        out[tld] = {c.email.lower() for c in parsed.contacts if c.role in ("administrative", "technical")}
    return out


def bench_rules(cctlds: list[TldName]) -> dict[str, Any]:
    """rules.yaml for every run: the pilot lists exactly the served ccTLDs; seat cap and rate limits raised."""
    return {
        "pilot": {"enabled": True, "cctlds": [t.ascii for t in cctlds]},
        "approvers": {"roles": ["administrative", "technical"], "ask_first": ["administrative", "technical"]},
        "authentication": {"require": "none"},
        "requests": {
            "seats_per_cctld": SEATS_PER_CCTLD,
            "max_per_cctld_per_hour": MAX_PER_CCTLD_PER_HOUR,
            "max_per_hour": MAX_PER_HOUR,
        },
    }


class _Checkout:
    """Which checkout the bot processes run from: this one, or another (`--checkout`, e.g. a scratch copy
    with a candidate fix). The servers, the mix and the probes always come from this checkout."""

    path: Path = REPO


CHECKOUT = _Checkout()


def use_checkout(path: Path) -> None:
    if not (path / "secirbot" / "__main__.py").exists():
        raise SystemExit(f"bench: {path} is not a secirbot checkout")
    CHECKOUT.path = path.resolve()


def cli_env() -> dict[str, str]:
    """The environment of a bot subprocess: ours without SECIRBOT_* settings, the checkout importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECIRBOT_")}
    # An installed bot runs from bytecode (pip compiles it at install, the Docker image too); this machine's
    # PYTHONDONTWRITEBYTECODE=1 would make every start of the checkout compile all of secirbot from source
    # again (~0.2 s). So the bot keeps its bytecode, outside the checkout, from the first start on.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "secirbot-bench-pycache")
    root = str(CHECKOUT.path)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def bot_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "secirbot", "--config", str(config), *args]


class Rig:
    """Dovecot + SMTP sink + whois/RDAP/DNS stand-ins, started together and closed together."""

    def __init__(self, workdir: Path, pool_size: int = 12):
        self.workdir = workdir
        self.records = load_records()
        self.cctlds = list(self.records)
        self.dovecot = Dovecot(pool_size=pool_size, user_prefix="bench")
        self.sink = SmtpSink()
        self.whois = WhoisServer({t.ascii: raw for t, raw in self.records.items()})
        self.rdap = RdapServer({})
        self.dns = DnsServer(delegated={t.ascii for t in self.cctlds})
        self.arrivals: list[float] = []  # time.monotonic() of each accepted message, in sink order
        self.arrived = threading.Condition()
        self._started: list[Callable[[], None]] = []

    def start(self) -> Rig:
        self.dovecot.start()
        self._started.append(self.dovecot.close)
        self._time_sink()
        self.sink.start()
        self._started.append(self.sink.stop)
        for server in (self.whois, self.rdap, self.dns):
            server.__enter__()
            self._started.append(lambda s=server: s.__exit__(None, None, None))  # type: ignore[misc]
        return self

    def close(self) -> None:
        while self._started:
            stop = self._started.pop()
            try:
                stop()
            except Exception as exc:  # closing must go on with the other servers
                print(f"bench: while closing: {exc}", file=sys.stderr)

    def _time_sink(self) -> None:
        """Note the moment each message is accepted; aiosmtpd reads handle_DATA per connection, so an
        instance attribute set before the first connection is what it calls."""
        handler = self.sink._handler
        original: Callable[..., Awaitable[str]] = handler.handle_DATA

        async def timed(server: Any, session: Any, envelope: Any) -> str:
            reply = await original(server, session, envelope)
            if reply.startswith("250"):
                with self.arrived:
                    self.arrivals.append(time.monotonic())
                    self.arrived.notify_all()
            return reply

        handler.handle_DATA = timed  # type: ignore[method-assign]

    def sent(self) -> list[Captured]:
        return self.sink.messages

    def clear_sink(self) -> None:
        with self.arrived:
            self.sink.clear()
            self.arrivals.clear()

    def reset_counts(self) -> None:
        self.whois.reset()
        self.dns.reset()
        self.rdap.reset()

    def whois_queries(self) -> int:
        return sum(self.whois.counts.values())

    def dns_queries(self) -> int:
        return sum(self.dns.counts.values())

    def new_user(self) -> MailUser:
        return self.dovecot.new_user()

    def dovecot_version(self) -> str:
        return dovecot_version()

    def write_config(
        self, name: str, user: MailUser, *, imap_port: int | None = None, store: Path | None = None
    ) -> Path:
        """A configuration directory `workdir/name` with secirbot.yaml and rules.yaml; returns the yaml."""
        folder = self.workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        server = user.server
        data = {
            "imap": {
                "host": server.host,
                "port": imap_port or server.imap_port,
                "security": "none",
                "username": user.name,
                "password": user.password,
                "batch_size": BATCH_SIZE,
            },
            "smtp": {"host": self.sink.host, "port": self.sink.port, "security": "none"},
            "addresses": {"bot": BOT, "secretariat": SECRETARIAT},
            "mailman": {"dialect": "mailman3", "list": LIST},
            "iana": {"whois": self.whois.endpoint, "rdap": self.rdap.base_url, "timeout_seconds": 5},
            "dns": {"nameservers": ["127.0.0.1"], "port": self.dns.port, "timeout_seconds": 2},
            "store": {"path": str(store or folder / "secirbot.sqlite3")},
            "rules": "rules.yaml",
            "templates": str(CHECKOUT.path / "templates"),
        }
        config = folder / "secirbot.yaml"
        config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        (folder / "rules.yaml").write_text(
            yaml.safe_dump(bench_rules(self.cctlds), allow_unicode=True), encoding="utf-8"
        )
        return config
