"""secirbot benchmark (issue 7): throughput against a bare ceiling, reaction time, memory, start-up.

Starts the test suite's own servers (a private Dovecot, the aiosmtpd SMTP sink, the local whois/RDAP/DNS
stand-ins serving the 50 real IANA records in bench/records/) and measures the bot as a real process:

  ceiling   a bare loop (bench/ceiling.py, its own process): batched BODY.PEEK[] fetch, stdlib parse, the same
            mails the bot sent for the backlog over one SMTP connection, MOVE. Messages per second.
  backlog   N messages waiting (requests for the 50 ccTLDs, refused requests, replies to the bot's real approval
            requests, real auto-replies and bounces, junk, duplicates); `secirbot run --once` until the inbox is
            empty. Messages per second and the ratio to the ceiling (target >= 0.9 heavy, >= 0.95 plain).
  reaction  the daemon (`secirbot run`) waits in IDLE; a request is appended; time until its first approval
            request reaches the sink. Also Dovecot's own IDLE notification delay, with a bare IDLE client.
            Target: p95(bot) <= p95(Dovecot) + 0.3 s.
  memory    peak RSS of `run --once` (200 new messages) on a store with 1k / 10k / 100k processed messages and
            100 / 1k / 10k requests (target < 120 MB, and flat).
  start     spawn of `secirbot run` to its first IMAP IDLE command, seen on the wire by a relay in front of
            Dovecot.

Not part of the test run. The bot's rules for the runs: the pilot lists the 50 served ccTLDs, the seat cap and
the request rate limits are raised (printed with the results); every new request is still resolved afresh at
the whois stand-in, as the bot's policy says.

--mix heavy|plain chooses the backlog's messages (bench/mix.py; the same N, the same seed gives the same mail;
the ceiling replays whatever the bot sent for it). heavy, the default, is issue 7's mix: 25 % new requests,
7.5 % refused or malformed ones, 15 % replies of every kind, 35 % auto-replies and bounces, 15.5 % junk, 2 %
duplicates. plain (issue 13) is an ordinary day: 60 % new requests for the served ccTLDs, 30 % genuine replies
to the bot's real approval requests (22 % APPROVE, 5 % DENY, 3 % the second approver's APPROVE after the
decision), 10 % other mail (3 % real auto-replies, 2 % approvers' out-of-office replies, 5 % junk); no bounces,
no refused requests, no duplicates. The mix is named in the report's header and in the JSON settings.

--mails-out FILE writes every mail the sink captured in the timed backlog run, normalised (bench/mails.py:
Date, Message-IDs, the bot's reply tokens, moments near the run's start, MIME boundaries replaced; every other
byte kept), sorted; `bench/compare_mails.py A B` says whether two such files hold the same mails, e.g. of two
commits run with the same mix (`--checkout DIR`).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import mails, mix, populate
from bench.probes import (
    IdleTap,
    bare_idle_delays,
    blocked_in_poll,
    run_measured,
    start_daemon,
    stop_daemon,
    wait_until,
)
from bench.profile import main as profile_main
from bench.rig import (
    BATCH_SIZE,
    BOT,
    CHECKOUT,
    MAX_PER_CCTLD_PER_HOUR,
    MAX_PER_HOUR,
    REPO,
    SEATS_PER_CCTLD,
    Rig,
    approver_addresses,
    bot_command,
    use_checkout,
)
from secirbot.sandbox.dovecot import MailUser
from secirbot.sandbox.smtp_sink import Captured
from secirbot.tokens import find_token

PHASES = ("backlog", "reaction", "memory", "start")
RUN_TIMEOUT = 900.0
CEILING_RUNS = 3


# --- results -----------------------------------------------------------------------------------------


@dataclass
class Backlog:
    messages: int
    bot_seconds: float
    bot_runs: int
    ceiling_seconds: float  # the median of the ceiling runs
    ceiling_runs: list[float]
    imap_only: dict[str, float]  # msg/s of the bare IMAP loop (fetch + move only), for scale
    ceiling_internal_seconds: float
    mails_sent: int
    ceiling_sent: int
    whois_queries: int
    dns_queries: int
    rdap_queries: int
    append_seconds: float
    phase_a_requests: int
    phase_a_seconds: float
    empty_run_seconds: float
    left_in_inbox: int
    mix: dict[str, int]
    outcomes: dict[str, int]
    purposes: dict[str, int]

    @property
    def bot_rate(self) -> float:
        return self.messages / self.bot_seconds

    @property
    def ceiling_rate(self) -> float:
        return self.messages / self.ceiling_seconds

    @property
    def ratio(self) -> float:
        return self.bot_rate / self.ceiling_rate


@dataclass
class Reaction:
    bot: list[float]
    dovecot: list[float]


@dataclass
class MemoryRow:
    messages: int
    requests: int
    store_mb: float
    populate_seconds: float
    run_seconds: float
    peak_rss_mb: float
    returncode: int


@dataclass
class Start:
    new_store: float
    restarts: list[float]
    big_store: float | None = None
    big_store_messages: int = 0


@dataclass
class Results:
    machine: dict[str, Any]
    settings: dict[str, Any]
    backlog: Backlog | None = None
    reaction: Reaction | None = None
    memory: list[MemoryRow] = field(default_factory=list)
    start: Start | None = None


# --- helpers -----------------------------------------------------------------------------------------


RATIO_TARGETS = {"heavy": 0.9, "plain": 0.95}  # backlog / ceiling, issue 13
START_TARGET_SECONDS = 0.5  # spawn -> first IDLE, issue 13


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor(),
        "memory_gib": round(memory_gib, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()}",
    }


def append_all(user: MailUser, raws: list[bytes]) -> float:
    """APPEND each message to INBOX over one session; returns the seconds it took."""
    started = time.monotonic()
    with user.session() as client:
        for raw in raws:
            client.append("INBOX", raw)
    return time.monotonic() - started


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def counted(db: Path, sql: str, params: tuple = ()) -> dict[str, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return {str(key): int(n) for key, n in conn.execute(sql, params)}


def scalar(db: Path, sql: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute(sql).fetchone()[0] or 0)


def run_once(config: Path, log: Path, profile: tuple[str, Path] | None = None) -> tuple[float, int]:
    """`secirbot --config CONFIG run --once` to its end: (wall seconds, peak RSS in KiB). `profile`:
    (py-spy | pyinstrument, output file) records it under that profiler."""
    cmd = bot_command(config, "run", "--once")
    if profile is not None and profile[0] == "py-spy":
        cmd = [
            "py-spy",
            "record",
            "--idle",
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(profile[1]),
            "--",
            *cmd,
        ]
    elif profile is not None:
        cmd = [sys.executable, "-m", "pyinstrument", "--renderer", "text", "--outfile", str(profile[1]), *cmd[1:]]
    done = run_measured(cmd, log, RUN_TIMEOUT)
    if done.returncode != 0:
        raise SystemExit(f"bench: `secirbot run --once` exited {done.returncode}; see {log}")
    return done.seconds, done.max_rss_kb


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def checkout_commit(path: Path) -> str:
    """The commit the checkout's HEAD is at (read only; uncommitted changes are not seen), or "?"."""
    try:
        done = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return "?"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "?"


# --- phases ------------------------------------------------------------------------------------------


def phase_backlog(
    rig: Rig,
    n: int,
    seed: int,
    work: Path,
    profile: tuple[str, Path] | None,
    kind: str = "heavy",
    mails_out: Path | None = None,
) -> tuple[Backlog, list[mix.Item], list[bytes]]:
    """Phase A, then the backlog of mix `kind` and the ceiling. `mails_out`: where to write the mails of the
    timed run, normalised (bench/mails.py)."""
    user = rig.new_user()
    config = rig.write_config("backlog", user)
    db = config.parent / "secirbot.sqlite3"

    empty_seconds, _ = run_once(config, work / "backlog-empty.log")
    opening = mix.opening_requests(rig.cctlds, mix.phase_a_count(n, kind), seed)
    say(f"backlog: phase A, {len(opening)} requests through the bot to get real approval requests")
    append_all(user, [raw for _, raw in opening])
    phase_a_seconds, _ = run_once(config, work / "backlog-phase-a.log")
    phase_a_sent = list(rig.sent())
    approvals = mix.approvals_from(phase_a_sent)
    if not approvals:
        raise SystemExit("bench: phase A produced no approval requests; see backlog-phase-a.log")
    rig.clear_sink()
    rig.reset_counts()
    last_message = scalar(db, "SELECT MAX(id) FROM messages")
    last_outbox = scalar(db, "SELECT MAX(id) FROM outbox")
    before = {folder: set(user.uids(folder)) for folder in ("Processed", "Failed")}

    items = mix.backlog(n, rig.cctlds, approvals, [address for address, _ in opening], seed, kind)
    say(f"backlog: appending {len(items)} messages ({kind} mix)")
    append_seconds = append_all(user, [item.raw for item in items])

    say("backlog: secirbot run --once")
    started = datetime.now(UTC)
    runs: list[float] = []
    while True:
        seconds, _ = run_once(config, work / f"backlog-run-{len(runs) + 1}.log", profile if not runs else None)
        runs.append(seconds)
        left = len(user.uids("INBOX"))
        if left == 0 or len(runs) >= 5:
            break
    sent = list(rig.sent())
    whois, dns, rdap = rig.whois_queries(), rig.dns_queries(), sum(rig.rdap.counts.values())
    if mails_out is not None:
        ctx = mails.Context(started)
        ctx.add_inbound((f"in:{i} {item.label}", item.raw) for i, item in enumerate(items, 1))
        ctx.add_inbound((f"a-in:{i}", raw) for i, (_, raw) in enumerate(opening, 1))
        ctx.add_sent(phase_a_sent)
        ctx.add_sent(sent)
        ctx.add_purposes(db)
        header = [
            f"secirbot bench mails: mix {kind}, seed {seed}, {len(items)} messages",
            f"bot from {CHECKOUT.path} at {checkout_commit(CHECKOUT.path)}",
        ]
        written = mails.write(mails_out, sent, ctx, header)
        say(f"backlog: {written} mails written to {mails_out}")
    outcomes = counted(
        db,
        "SELECT kind || ' / ' || CASE WHEN kind = 'duplicate' THEN outcome"
        " WHEN instr(detail, ':') > 0 AND kind != 'reply'"
        " THEN substr(detail, 1, instr(detail, ':') - 1) ELSE detail END AS what, COUNT(*)"
        " FROM messages WHERE id > ? GROUP BY what ORDER BY COUNT(*) DESC",
        (last_message,),
    )
    purposes = counted(
        db, "SELECT purpose, COUNT(*) FROM outbox WHERE id > ? GROUP BY purpose ORDER BY COUNT(*) DESC", (last_outbox,)
    )

    # The ceiling: the same messages back in INBOX (copied on the server), the same mails to send.
    with user.session() as client:
        for folder, old in before.items():
            client.select_folder(folder)
            new = sorted(set(client.search("ALL")) - old)
            if new:
                client.copy(new, "INBOX")
    payloads = [m.data for m in sent[:500]]
    ceilings, imap_only = measure_ceiling(rig, user, sent, len(items), work)
    ceiling_seconds, ceiling_inner, ceiling_sent = sorted(ceilings)[len(ceilings) // 2]
    result = Backlog(
        messages=len(items),
        bot_seconds=sum(runs),
        bot_runs=len(runs),
        ceiling_seconds=ceiling_seconds,
        ceiling_runs=[c[0] for c in ceilings],
        imap_only=imap_only,
        ceiling_internal_seconds=ceiling_inner,
        mails_sent=len(sent),
        ceiling_sent=ceiling_sent,
        whois_queries=whois,
        dns_queries=dns,
        rdap_queries=rdap,
        append_seconds=append_seconds,
        phase_a_requests=len(opening),
        phase_a_seconds=phase_a_seconds,
        empty_run_seconds=empty_seconds,
        left_in_inbox=left,
        mix=dict(mix.composition(items)),
        outcomes=outcomes,
        purposes=purposes,
    )
    rig.clear_sink()
    return result, items, payloads


def measure_ceiling(
    rig: Rig, user: MailUser, sent: list[Captured], n: int, work: Path
) -> tuple[list[tuple[float, float, int]], dict[str, float]]:
    """The bare loop on the backlog now waiting in INBOX, CEILING_RUNS times, sending `sent` (the bot's mails);
    then, for scale, the IMAP part alone. Returns [(wall s, loop s, mails sent)] and {name: msg/s}."""
    mails_file, spec_file, out_file = work / "ceiling-mails.pkl", work / "ceiling.json", work / "ceiling-out.json"
    with mails_file.open("wb") as f:
        pickle.dump([(m.mail_from, m.rcpt_tos, m.data) for m in sent], f)
    server = user.server
    base = {
        "host": server.host,
        "port": server.imap_port,
        "user": user.name,
        "password": user.password,
        "folder": "INBOX",
        "done": "CeilingDone",
        "batch": BATCH_SIZE,
        "smtp_host": rig.sink.host,
        "smtp_port": rig.sink.port,
        "mails": str(mails_file),
        "out": str(out_file),
    }

    def loop(spec: dict[str, Any], log: Path) -> tuple[float, float]:
        spec_file.write_text(json.dumps(spec))
        done = run_measured([sys.executable, str(REPO / "bench" / "ceiling.py"), str(spec_file)], log, RUN_TIMEOUT)
        if done.returncode != 0:
            raise SystemExit(f"bench: the ceiling loop exited {done.returncode}; see {log}")
        with user.session() as client:  # the same messages back in INBOX for the next run
            client.select_folder("CeilingDone")
            client.move(client.search("ALL"), "INBOX")
        return done.seconds, float(json.loads(out_file.read_text())["seconds"])

    runs = []
    for attempt in range(1, CEILING_RUNS + 1):
        rig.clear_sink()
        say(f"backlog: the ceiling loop, run {attempt} of {CEILING_RUNS}")
        wall, inner = loop(base, work / f"ceiling-{attempt}.log")
        runs.append((wall, inner, len(rig.sent())))
        if len(rig.sent()) != len(sent):
            raise SystemExit(f"bench: the ceiling loop sent {len(rig.sent())} mails, not {len(sent)}")
    imap_only = {}
    for name, batch in (("batched", BATCH_SIZE), ("one per round trip", 1)):
        say(f"backlog: the bare IMAP loop, {name}")
        _, inner = loop({**base, "batch": batch, "parse": False, "send": False}, work / f"imap-{batch}.log")
        imap_only[name] = n / inner
    rig.clear_sink()
    with user.session() as client:
        client.select_folder("INBOX")
        client.move(client.search("ALL"), "CeilingDone")
    return runs, imap_only


def phase_reaction(rig: Rig, samples: int, seed: int, work: Path) -> Reaction:
    say(f"reaction: Dovecot's own IDLE delay, {samples} samples with a bare IDLE client")
    rng = random.Random(seed + 3)
    people = mix.People(rng, "r")
    probe = rig.new_user()

    def note(i: int) -> bytes:
        name, address = people.person("probe.bench.example")
        return mix.request_mail(rng, name, address, "nl", 0)

    dovecot = bare_idle_delays(probe, samples, note, seed)

    say(f"reaction: the daemon in IDLE, {samples} requests")
    user = rig.new_user()
    config = rig.write_config("reaction", user)
    log = work / "reaction-daemon.log"
    approvers = approver_addresses(rig.records)
    rig.clear_sink()
    proc = start_daemon(config, log)
    delays = []
    try:
        wait_until(lambda: "connected to" in log.read_text(errors="replace"), 60, "the daemon to connect")
        wait_until(lambda: blocked_in_poll(proc.pid, 5), 30, "the daemon to wait in IDLE")
        with user.session() as appender:
            for i in range(samples):
                time.sleep(0.2 + rng.random())  # a random phase of Dovecot's check interval, as for the probe
                tld = rig.cctlds[i % len(rig.cctlds)]
                name, address = people.person(f"cert.{tld.ascii}.bench.example")
                raw = mix.request_mail(rng, name, address, tld.unicode, i % 3)
                expected = len(approvers[tld]) + 2  # approval requests, the Secretariat's copy, the ack
                with rig.arrived:
                    first = len(rig.arrivals)
                started = time.monotonic()
                appender.append("INBOX", raw)
                with rig.arrived:
                    if not rig.arrived.wait_for(lambda: len(rig.arrivals) >= first + expected, 60):  # noqa: B023
                        raise SystemExit(f"bench: the daemon did not answer request {i + 1}; see {log}")
                    arrivals = rig.arrivals[first:]
                mails = rig.sent()[first:]
                times = [
                    t
                    for t, m in zip(arrivals, mails, strict=False)
                    if m.rcpt_tos[0].lower() in approvers[tld]
                    and m.message["Reply-To"]
                    and find_token([str(m.message["Reply-To"])], BOT)
                ]
                if not times:
                    raise SystemExit(f"bench: no approval request among the mails for request {i + 1}")
                delays.append(times[0] - started)
                wait_until(lambda: blocked_in_poll(proc.pid), 30, "the daemon to wait in IDLE again")
    finally:
        code = stop_daemon(proc)
    if code != 0:
        say(f"reaction: the daemon exited {code} after SIGTERM; see {log}")
    rig.clear_sink()
    return Reaction(bot=delays, dovecot=dovecot)


def phase_memory(
    rig: Rig, sizes: list[int], items: list[mix.Item], payloads: list[bytes], work: Path
) -> tuple[list[MemoryRow], MailUser]:
    user = rig.new_user()
    fresh = [item for item in items if item.label != "duplicate"][:200]
    rows = []
    for size in sizes:
        requests = max(1, size // 10)
        folder = work / f"memory-{size}"
        folder.mkdir(parents=True, exist_ok=True)
        store = folder / "store.sqlite3"
        say(f"memory: a store with {size:,} messages and {requests:,} requests")
        started = time.monotonic()
        populate.populate(store, size, requests, items, payloads, rig.records, populate.utc_now())
        populate_seconds = time.monotonic() - started
        os.sync()  # the populated store on disk, so that its write-back does not land in the measured run
        config = rig.write_config(f"memory-{size}", user, store=store)
        append_all(user, [item.raw for item in fresh])
        done = run_measured(bot_command(config, "run", "--once"), folder / "run.log", RUN_TIMEOUT)
        rows.append(
            MemoryRow(
                size,
                requests,
                store.stat().st_size / 2**20,
                populate_seconds,
                done.seconds,
                done.max_rss_kb / 1024,
                done.returncode,
            )
        )
        rig.clear_sink()
    return rows, user


def phase_start(rig: Rig, runs: int, work: Path, big_store: tuple[Path, int, MailUser] | None) -> Start:
    say(f"start: {runs} starts of `secirbot run`, first IDLE seen on the wire")
    user = rig.new_user()
    tap = IdleTap((user.server.host, user.server.imap_port))
    times = []
    big = None
    try:
        config = rig.write_config("start", user, imap_port=tap.port)
        plan = [(config, f"start-{i + 1}") for i in range(runs)]
        if big_store is not None:
            # The mailbox the big store belongs to (the memory runs'), so its UIDVALIDITY is the known one.
            plan.append(
                (rig.write_config("start-big", big_store[2], imap_port=tap.port, store=big_store[0]), "start-big")
            )
        for cfg, name in plan:
            seen = len(tap.idles)
            started = time.monotonic()
            proc = start_daemon(cfg, work / f"{name}.log")
            try:
                idle_at = tap.wait_for_idle(seen + 1, 60)
            finally:
                code = stop_daemon(proc)
            if code != 0:
                say(f"start: the daemon exited {code} after SIGTERM; see {work / (name + '.log')}")
            if name == "start-big":
                big = idle_at - started
            else:
                times.append(idle_at - started)
    finally:
        tap.close()
    return Start(
        new_store=times[0], restarts=times[1:], big_store=big, big_store_messages=big_store[1] if big_store else 0
    )


# --- report ------------------------------------------------------------------------------------------


def fmt_s(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def report(results: Results) -> str:
    m, s = results.machine, results.settings
    lines = [
        f"secirbot benchmark, {s['date']}",
        f"machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['system']}, "
        f"Python {m['python']} ({m['implementation']}), {s['dovecot']}",
        f"rules for the runs (raised for the bench): pilot = the {s['cctlds']} ccTLDs of bench/records, "
        f"seats_per_cctld {SEATS_PER_CCTLD}, max_per_cctld_per_hour {MAX_PER_CCTLD_PER_HOUR}, "
        f"max_per_hour {MAX_PER_HOUR}; imap.batch_size {BATCH_SIZE}; whois stand-in without delay",
        f"backlog mix: {s['mix']} (seed {s['seed']}, {s['messages']:,} messages)",
        *([f"bot run from the checkout {s['checkout']}"] if s["checkout"] != str(REPO) else []),
        *(
            [f"PROFILED with {s['profile']}: the backlog figures include the profiler's overhead"]
            if s["profile"]
            else []
        ),
        "",
        f"| {'measure':<62} | {'result':<44} | {'target':<28} | met |",
        f"|{'-' * 64}|{'-' * 46}|{'-' * 30}|-----|",
    ]

    def row(measure: str, result: str, target: str = "", met: bool | None = None) -> None:
        flag = "" if met is None else ("yes" if met else "NO")
        lines.append(f"| {measure:<62} | {result:<44} | {target:<28} | {flag:<3} |")

    b = results.backlog
    if b is not None:
        row(
            f"Ceiling: bare loop, {b.messages:,} msgs, {b.ceiling_sent:,} mails on 1 SMTP conn",
            f"{b.ceiling_rate:,.0f} msg/s ({fmt_s(b.ceiling_seconds)}, median of {len(b.ceiling_runs)})",
        )
        row(
            f"Backlog: `run --once` x{b.bot_runs}, {b.messages:,} msgs -> {b.mails_sent:,} mails",
            f"{b.bot_rate:,.0f} msg/s ({fmt_s(b.bot_seconds)})",
        )
        low, high = min(b.ceiling_runs) / b.bot_seconds, max(b.ceiling_runs) / b.bot_seconds
        # Issue 7 asked for 0.5; issue 13 for 0.9 on the heavy mix and 0.95 on the plain one.
        target = RATIO_TARGETS[results.settings.get("mix", "heavy")]
        row(
            "Backlog / ceiling",
            f"{b.ratio:.2f} (against each ceiling run: {low:.2f}-{high:.2f})",
            f">= {target}",
            b.ratio >= target,
        )
        for name, rate in b.imap_only.items():
            row(f"  for scale: bare IMAP loop (fetch + move), {name}", f"{rate:,.0f} msg/s (loop time)")
    r = results.reaction
    if r is not None:
        bot_p95, dove_p95 = percentile(r.bot, 95), percentile(r.dovecot, 95)
        row(
            f"Reaction: append -> approval request at the sink ({len(r.bot)})",
            f"median {statistics.median(r.bot):.3f} s, p95 {bot_p95:.3f} s",
            f"p95 <= {dove_p95 + 0.3:.3f} s",
            bot_p95 <= dove_p95 + 0.3,
        )
        row(
            f"Dovecot IDLE notification, bare IDLE client ({len(r.dovecot)})",
            f"median {statistics.median(r.dovecot):.3f} s, p95 {dove_p95:.3f} s",
        )
        row("Reaction p95 minus Dovecot p95", f"{bot_p95 - dove_p95:+.3f} s", "<= 0.3 s", bot_p95 - dove_p95 <= 0.3)
    if results.memory:
        top = results.memory[-1]
        row(
            f"Memory: peak RSS, `run --once`, {top.messages:,} msgs / {top.requests:,} requests",
            f"{top.peak_rss_mb:.1f} MB",
            "< 120 MB",
            top.peak_rss_mb < 120 and top.returncode == 0,
        )
        growth = results.memory[-1].peak_rss_mb - results.memory[0].peak_rss_mb
        row(
            f"Memory: {results.memory[0].messages:,} -> {top.messages:,} msgs",
            " -> ".join(f"{x.peak_rss_mb:.1f}" for x in results.memory) + f" MB ({growth:+.1f} MB)",
            "flat (< +10 MB)",
            growth < 10,
        )
    st = results.start
    if st is not None:
        restarts = st.restarts or [st.new_store]
        row(
            f"Start: spawn -> first IDLE, restart ({len(restarts)})",
            f"median {statistics.median(restarts):.2f} s, max {max(restarts):.2f} s",
            f"< {START_TARGET_SECONDS} s",
            statistics.median(restarts) < START_TARGET_SECONDS,
        )
        row("Start: spawn -> first IDLE, new store", fmt_s(st.new_store))
        if st.big_store is not None:
            row(f"Start: spawn -> first IDLE, store of {st.big_store_messages:,} msgs", fmt_s(st.big_store))

    if b is not None:
        lines += [
            "",
            "backlog details:",
            "  mix: " + ", ".join(f"{k} {v}" for k, v in sorted(b.mix.items(), key=lambda kv: -kv[1])),
            "  outcomes (kind / detail): " + ", ".join(f"{k} {v}" for k, v in b.outcomes.items()),
            "  mails by purpose: " + ", ".join(f"{k} {v}" for k, v in b.purposes.items()),
            f"  IANA: {b.whois_queries} whois queries (one per new request: resolved afresh, no cache), "
            f"{b.dns_queries} DNS queries, {b.rdap_queries} RDAP queries",
            f"  phase A (not timed): {b.phase_a_requests} requests in {fmt_s(b.phase_a_seconds)}; "
            f"appending the backlog took {fmt_s(b.append_seconds)}; `run --once` on an empty inbox "
            f"(process start-up, login, scheduled work, exit) {fmt_s(b.empty_run_seconds)}",
            f"  the bot's time is wall time of the process(es), start-up included; without that fixed "
            f"cost: {b.messages / max(0.001, b.bot_seconds - b.empty_run_seconds):,.0f} msg/s",
            "  ceiling runs (wall, its own process): "
            + ", ".join(fmt_s(x) for x in b.ceiling_runs)
            + f"; the median run's loop itself {fmt_s(b.ceiling_internal_seconds)}; "
            f"messages left in INBOX after the bot: {b.left_in_inbox}",
        ]
    if results.memory:
        lines += ["", "memory details (each run: 200 new messages of the backlog mix; store rows written with SQL):"]
        for x in results.memory:
            lines.append(
                f"  {x.messages:>7,} msgs {x.requests:>6,} requests  store {x.store_mb:7.1f} MB  "
                f"peak RSS {x.peak_rss_mb:6.1f} MB  run {fmt_s(x.run_seconds)}  "
                f"(populate {fmt_s(x.populate_seconds)}, exit {x.returncode})"
            )
    if r is not None:
        lines += [
            "",
            "reaction samples (s): bot " + " ".join(f"{x:.3f}" for x in r.bot),
            "                      dovecot " + " ".join(f"{x:.3f}" for x in r.dovecot),
        ]
    if st is not None:
        lines += [
            "",
            "start: observed as the first ' IDLE' command the bot sends, by a TCP relay in front of "
            "Dovecot; samples (s): " + " ".join(f"{x:.2f}" for x in [st.new_store, *st.restarts]),
        ]
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description=__doc__.split("\n\n")[0],
        epilog="Without options: the full run (about 3 minutes on 2 cores).",
    )
    parser.add_argument("--messages", type=int, default=2000, metavar="N", help="backlog size (default 2000)")
    parser.add_argument("--samples", type=int, default=20, help="reaction samples (default 20)")
    parser.add_argument(
        "--memory-sizes",
        default="1000,10000,100000",
        metavar="A,B,C",
        help="processed messages in the store for the memory runs (requests: a tenth)",
    )
    parser.add_argument(
        "--starts",
        type=int,
        default=5,
        help="restarts of `secirbot run` on an existing store (default 5; plus one on a new store)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 300 messages, 5 samples, stores of 1k and 10k, 3 starts"
    )
    parser.add_argument(
        "--only",
        default=",".join(PHASES),
        metavar="PHASES",
        help=f"comma-separated subset of {','.join(PHASES)} (ceiling is part of backlog)",
    )
    parser.add_argument("--seed", type=int, default=2026, help="seed of the message mix (default 2026)")
    parser.add_argument(
        "--mix",
        choices=tuple(mix.MIXES),
        default="heavy",
        help="the backlog's message mix (default heavy): heavy = issue 7's mix, 25%% new requests, 7.5%% refused "
        "ones, 15%% replies (APPROVE, DENY, second approver, unclear, wrong sender, unknown token), 35%% "
        "auto-replies and bounces, 15.5%% junk, 2%% duplicates; plain = an ordinary day, 60%% new requests, "
        "30%% genuine replies (22%% APPROVE, 5%% DENY, 3%% the second approver), 10%% auto-replies "
        "(5%%, 2%% of them approvers' out-of-office) and junk (5%%); no bounces, no refused requests",
    )
    parser.add_argument(
        "--mails-out",
        type=Path,
        metavar="FILE",
        help="after the timed backlog run, write every mail the sink captured in it to FILE, normalised "
        "(dates, Message-IDs, reply tokens, MIME boundaries replaced; see bench/mails.py), for "
        "bench/compare_mails.py A B",
    )
    parser.add_argument(
        "--checkout",
        type=Path,
        metavar="DIR",
        help="run the bot from this checkout (e.g. a scratch copy with a candidate fix); "
        "servers, mix and probes stay this one's",
    )
    parser.add_argument(
        "--profile",
        choices=("py-spy", "pyinstrument"),
        help="record the timed backlog run under this profiler (pip install it first; its "
        "figures then include the profiler's overhead)",
    )
    parser.add_argument(
        "--profile-out",
        type=Path,
        default=Path("bench-profile.txt"),
        metavar="FILE",
        help="where --profile writes (default ./bench-profile.txt)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (stores, logs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.messages, args.samples, args.memory_sizes, args.starts = 300, 5, "1000,10000", 3
    phases = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"bench: unknown phase(s) {', '.join(sorted(unknown))}")
    sizes = [int(x) for x in args.memory_sizes.split(",") if x.strip()]
    if args.mails_out and "backlog" not in phases:
        raise SystemExit("bench: --mails-out writes the mails of the backlog run; add backlog to --only")
    if args.checkout:
        use_checkout(args.checkout)
    profile = (args.profile, args.profile_out.resolve()) if args.profile else None
    work = Path(tempfile.mkdtemp(prefix="secirbot-bench-"))
    rig = Rig(work)
    results = Results(
        machine=machine(),
        settings={
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "messages": args.messages,
            "samples": args.samples,
            "memory_sizes": sizes,
            "starts": args.starts,
            "seed": args.seed,
            "mix": args.mix,
            "mails_out": str(args.mails_out) if args.mails_out else "",
            "cctlds": len(rig.cctlds),
            "dovecot": "",
            "quick": args.quick,
            "checkout": str(CHECKOUT.path),
            "profile": args.profile or "",
        },
    )
    say(f"work folder {work}")
    try:
        rig.start()
        results.settings["dovecot"] = "Dovecot " + rig.dovecot_version().split()[0]
        items: list[mix.Item] = []
        payloads: list[bytes] = []
        if "backlog" in phases or "memory" in phases:
            if "backlog" in phases:
                results.backlog, items, payloads = phase_backlog(
                    rig, args.messages, args.seed, work, profile, args.mix, args.mails_out
                )
            else:
                items, payloads = standalone_items(rig, args.seed, args.mix)
        if "reaction" in phases:
            results.reaction = phase_reaction(rig, args.samples, args.seed, work)
        memory_user = None
        if "memory" in phases:
            results.memory, memory_user = phase_memory(rig, sizes, items, payloads, work)
        if "start" in phases:
            big = None
            if memory_user is not None:
                big = (work / f"memory-{sizes[-1]}" / "store.sqlite3", sizes[-1], memory_user)
            results.start = phase_start(rig, args.starts + 1, work, big)
    finally:
        rig.close()
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    text = report(results)
    print(text)
    if profile is not None and profile[0] == "py-spy" and profile[1].exists():
        print(f"\nprofile of the backlog run ({profile[1]}):")
        profile_main([str(profile[1]), "--top", "25"])
    elif profile is not None:
        print(f"\nprofile of the backlog run: {profile[1]}")
    if args.json:
        data = asdict(results)
        if results.backlog is not None:
            b = results.backlog
            data["backlog"].update(bot_rate=b.bot_rate, ceiling_rate=b.ceiling_rate, ratio=b.ratio)
        Path(args.json).write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


def standalone_items(rig: Rig, seed: int, kind: str = "heavy") -> tuple[list[mix.Item], list[bytes]]:
    """Backlog mail for the memory runs when the backlog phase is skipped: replies go to unknown tokens."""
    fake = {
        1: [
            mix.Approval(
                1,
                "admin@nic.example",
                "join+" + "a" * 32 + "@lists.example.org",
                "Approval needed [#1]",
                "<x@lists.example.org>",
                "Hello",
            )
        ]
    }
    items = mix.backlog(1000, rig.cctlds, fake, ["someone@example.net"], seed, kind)
    return items, [item.raw for item in items[:200]]


if __name__ == "__main__":
    sys.exit(main())
