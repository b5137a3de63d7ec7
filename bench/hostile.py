"""On-demand fuzz of the message path (issue 12, "Malformed and hostile input"): random mutations of the real
mails in tests/messages/ through parse_mail, classify, read_decision and read_claim, and (with --pipeline)
through pipeline.process against a sandbox bot.

Each case takes one seed mail (an .eml file as it is, or a reply text / HTML reply wrapped in headers) and
applies one to four mutations: bytes flipped, hostile tokens inserted (NUL, CR/LF, broken encoded words,
boundaries, quote markers, APPROVE/DENY), spans deleted or repeated, a header value replaced by a hostile one
(long, 8-bit, NUL, thousands of encoded words), headers dropped or doubled, charsets and transfer encodings
swapped, boundaries changed or their closing delimiter cut, the body re-encoded as broken base64 or QP,
another seed's body spliced in, line ends changed, the message cut short, a line repeated thousands of times.
Sizes are capped by --max-bytes.

What counts as a crash: parse_mail raising anything but UnparseableMail; classify, read_decision, new_text or
read_claim raising anything; with --pipeline, process() raising, a message recorded as an internal error, or
mail queued to an address that is neither the message's sender, the Secretariat, an IANA contact of the
served records, a requester in the store nor the list's domain. A case running past --case-timeout counts as
a hang. The first case of each distinct crash (stage, exception, where raised) is saved, shrunk by removing
lines while it still fails the same way, under var/fuzz-crashes/ (the .eml and a .txt with the traceback),
and so is the slowest case.

Loopback only: with --pipeline the whois/RDAP/DNS stand-ins of secirbot.sandbox serve bench/records/ on
127.0.0.1; the bot never connects to IMAP or SMTP (mail is queued in its store, not sent).

  python bench/hostile.py --seconds 120              # two minutes, pure stages
  python bench/hostile.py --cases 500 --pipeline     # 500 cases, also through pipeline.process
  python bench/hostile.py --replay var/fuzz-crashes/crash-....eml

Prints: cases tried, refused as unparseable, kinds, crashes by signature, hangs, max / p99 / median time per
message, the slowest case, peak RSS.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import re
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import logging

from secirbot.classify import classify
from secirbot.intake import read_claim
from secirbot.message import UnparseableMail, parse_mail
from secirbot.replies import new_text, read_decision

REPO = Path(__file__).resolve().parent.parent
MESSAGES = REPO / "tests" / "messages"
BOT = "join@lists.example.org"
LIST = "secir@lists.example.org"
SECRETARIAT = "secretariat@example.org"
TOKEN_ADDRESS = "join+abcdefghijklmnopqrstuvwxyz234567@lists.example.org"
STAGES = ("parse", "classify", "decision", "claim", "pipeline")


# --- seeds -------------------------------------------------------------------------------------------


def wrap(body: bytes, subtype: str, n: int) -> bytes:
    return (
        b"From: Registry Admin <admin@nic.example>\r\nTo: "
        + TOKEN_ADDRESS.encode()
        + b"\r\nSubject: Re: [SECIR] Approval request for .nl\r\nDate: Thu, 26 Nov 2026 09:00:00 +0000\r\n"
        + b"Message-ID: <seed-%d@nic.example>\r\nMIME-Version: 1.0\r\n" % n
        + b"Content-Type: text/"
        + subtype.encode()
        + b"; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    )


def load_seeds() -> list[tuple[str, bytes]]:
    seeds = []
    for n, path in enumerate(sorted(MESSAGES.iterdir())):
        if path.suffix == ".eml":
            seeds.append((path.name, path.read_bytes()))
        elif path.suffix == ".txt":
            seeds.append((path.name, wrap(b"APPROVE\n\n" + path.read_bytes(), "plain", n)))
        elif path.suffix == ".html":
            seeds.append((path.name, wrap(path.read_bytes(), "html", n)))
    seeds.append(
        (
            "request",
            b"From: Jan Jansen <jan@registry.example>\r\nTo: "
            + BOT.encode()
            + b"\r\nSubject: subscribe .nl\r\nMessage-ID: <req@registry.example>\r\n\r\n"
            b"Name: Jan Jansen\r\nRole: CSIRT lead\r\nI handle incidents for the registry.\r\n",
        )
    )
    if len(seeds) < 20:
        raise SystemExit(f"bench: expected the test messages in {MESSAGES}, found {len(seeds)}")
    return seeds


# --- mutations -----------------------------------------------------------------------------------------

TOKENS = [
    b"\x00",
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"\r",
    b"\t",
    b" ",
    b"=",
    b"=\r\n",
    b"?=",
    b"=?",
    b"--",
    b"--\r\n",
    b"=?utf-8?b?0?=",
    b"=?utf-8?q?=ZZ?=",
    b"=?x-unknown?q?caf=E9?=",
    b"=?utf-8?b?PGFkbWluQG5pYy5ubD4=?=",
    b"\xff\xfe",
    b"\xc3",
    b"\xe2\x80\xae",
    b"\xef\xbb\xbf",
    b">",
    b"> APPROVE\r\n",
    b"APPROVE\r\n",
    b"DENY\r\n",
    b"APPROVE DENY\r\n",
    b"On Mon, 1 Dec 2026, X <x@y.example> wrote:\r\n",
    b"-----Original Message-----\r\n",
    b"<div>",
    b"<blockquote>",
    b"</blockquote>",
    b"<br>",
    b"<!--",
    b"<![CDATA[",
    b"&#0;",
    b"&#x110000;",
    b"Content-Type: multipart/mixed; boundary=x\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"subscribe .nl ",
    b".\xd1\x80\xd1\x84 ",
    b"ccTLD: xn--p1ai\r\n",
    b";",
    b'"',
    b"<",
    b"@",
    b"(",
    b"\\",
]
HEADER_NAMES = [
    b"From",
    b"To",
    b"Cc",
    b"Subject",
    b"Message-ID",
    b"Content-Type",
    b"Content-Transfer-Encoding",
    b"Auto-Submitted",
    b"Precedence",
    b"List-Id",
    b"Return-Path",
    b"In-Reply-To",
    b"References",
    b"X-Mailman-Version",
    b"X-Failed-Recipients",
    b"Delivered-To",
    b"Content-Disposition",
    b"Authentication-Results",
    b"DKIM-Signature",
    b"MIME-Version",
    b"X-Secirbot-Loop",
]
CHARSETS = [
    b"x-unknown",
    b"utf-7",
    b"utf-16",
    b"utf-32",
    b"iso-2022-jp",
    b"ks_c_5601-1987",
    b"",
    b"\xff",
    b"utf-8\x00",
    b"windows-1252",
    b"koi8-r",
    b"gb18030",
    b"big5",
    b"unknown-8bit",
    b"ascii",
]
ENCODINGS = [b"base64", b"quoted-printable", b"7bit", b"8bit", b"binary", b"x-uuencode", b"junk", b""]


def split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header section, separator, body)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        index = raw.find(sep)
        if index >= 0:
            return raw[:index], sep, raw[index + len(sep) :]
    return raw, b"", b""


def header_lines(section: bytes) -> list[bytes]:
    """Header fields with their continuation lines."""
    fields: list[bytes] = []
    for line in re.split(rb"(?<=\n)", section):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        elif line:
            fields.append(line)
    return fields


def hostile_value(rng: random.Random, limit: int) -> bytes:
    choice = rng.randrange(8)
    if choice == 0:
        return rng.choice([b"a", b"@", b"<", b"=", b"(", b" ", b'"', b","]) * rng.randrange(1, min(limit, 200_000))
    if choice == 1:
        n = rng.randrange(1, max(2, min(limit // 14, 5_000)))
        return b" ".join(rng.choice([b"=?utf-8?q?a?=", b"=?iso-8859-1?b?6Q==?=", b"=?x-bad?q?x?="]) for _ in range(n))
    if choice == 2:
        return bytes(rng.randrange(128, 256) for _ in range(rng.randrange(1, 60)))
    if choice == 3:
        return b"\x00" * rng.randrange(1, 10) + b"x"
    if choice == 4:
        encoding = rng.choice([b"b", b"q", b"x", b""])
        return b"=?" + rng.choice(CHARSETS) + b"?" + encoding + b"?" + rng.randbytes(8) + b"?="
    if choice == 5:
        return b"\r\n ".join(b"part%d" % i for i in range(rng.randrange(1, 2_000)))
    if choice == 6:
        return rng.choice(TOKENS)
    return b""


def mutate_bytes(rng: random.Random, raw: bytes, seeds: list[bytes], limit: int) -> bytes:
    if not raw:
        return rng.choice(TOKENS)
    kind = rng.randrange(6)
    i = rng.randrange(len(raw) + 1)
    j = min(len(raw), i + rng.randrange(1, 400))
    if kind == 0:  # flip bytes
        data = bytearray(raw)
        for _ in range(rng.randrange(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 1:
        return raw[:i] + rng.choice(TOKENS) + raw[i:]
    if kind == 2:
        return raw[:i] + raw[j:]
    if kind == 3:  # repeat a span
        times = rng.choice([2, 10, 100, 1_000, 10_000])
        span = raw[i:j][: max(1, limit // times)]
        return raw[:i] + span * times + raw[i:]
    if kind == 4:
        return raw[:i]
    other = rng.choice(seeds)
    return raw[:i] + other[rng.randrange(len(other) + 1) :]


def mutate_headers(rng: random.Random, raw: bytes, limit: int) -> bytes:
    section, sep, body = split(raw)
    fields = header_lines(section + b"\r\n")
    kind = rng.randrange(6)
    if kind == 0 and fields:  # a value replaced
        k = rng.randrange(len(fields))
        name = fields[k].split(b":", 1)[0]
        fields[k] = name + b": " + hostile_value(rng, limit) + b"\r\n"
    elif kind == 1:  # a header added
        added = rng.choice(HEADER_NAMES) + b": " + hostile_value(rng, limit) + b"\r\n"
        fields.insert(rng.randrange(len(fields) + 1), added)
    elif kind == 2 and fields:
        del fields[rng.randrange(len(fields))]
    elif kind == 3 and fields:
        k = rng.randrange(len(fields))
        fields.insert(rng.randrange(len(fields) + 1), fields[k] * rng.choice([1, 2, 50]))
    elif kind == 4:  # charset swapped
        section = re.sub(
            rb"charset=\"?[^\s;\"]*\"?",
            b'charset="' + rng.choice(CHARSETS) + b'"',
            b"".join(fields),
            count=1,
            flags=re.IGNORECASE,
        )
        return section.rstrip(b"\r\n") + (sep or b"\r\n\r\n") + body
    else:
        fields.append(b"Content-Transfer-Encoding: " + rng.choice(ENCODINGS) + b"\r\n")
    return b"".join(fields).rstrip(b"\r\n") + (sep or b"\r\n\r\n") + body


def mutate_structure(rng: random.Random, raw: bytes, limit: int) -> bytes:
    boundaries = re.findall(rb"boundary=\"?([^\";\r\n]+)\"?", raw, flags=re.IGNORECASE)
    kind = rng.randrange(6)
    if boundaries and kind == 0:  # the closing delimiter cut
        b = rng.choice(boundaries)
        return raw.replace(b"--" + b + b"--", b"", 1)
    if boundaries and kind == 1:  # one delimiter changed
        b = rng.choice(boundaries)
        return raw.replace(b"--" + b, b"--" + b[:-1], 1)
    if boundaries and kind == 2:  # the declared boundary changed
        b = rng.choice(boundaries)
        return raw.replace(b'boundary="' + b, b'boundary="' + rng.choice([b"", b"x", b + b"\x00", b"-" * 80]), 1)
    if kind == 3:  # nested deeper
        depth = rng.choice([5, 50, 150])
        opening = b"".join(
            b'--n%d\r\nContent-Type: multipart/mixed; boundary="n%d"\r\n\r\n' % (k, k + 1) for k in range(depth)
        )
        section, _, body = split(raw)
        return (
            section
            + b'\r\nContent-Type: multipart/mixed; boundary="n0"\r\n\r\n'
            + opening
            + b"--n%d\r\nContent-Type: text/plain\r\n\r\n" % depth
            + body
        )
    section, sep, body = split(raw)
    if kind == 4:  # the body as broken base64 or QP
        if rng.random() < 0.5:
            encoded = base64.encodebytes(body)
            encoded = encoded[: rng.randrange(len(encoded) + 1)] + rng.choice([b"", b"=", b"!!", b"\x00"])
            return section + b"\r\nContent-Transfer-Encoding: base64" + (sep or b"\r\n\r\n") + encoded
        qp = body.replace(b"=", rng.choice([b"=3D", b"=", b"=Z"]))
        return section + b"\r\nContent-Transfer-Encoding: quoted-printable" + (sep or b"\r\n\r\n") + qp
    # line ends changed
    old, new = rng.choice([(b"\r\n", b"\n"), (b"\r\n", b"\r"), (b"\n", b"\r\n"), (b"\r\n", b"\n\r")])
    return raw.replace(old, new)


def mutate_lines(rng: random.Random, raw: bytes, limit: int) -> bytes:
    lines = raw.split(b"\n")
    k = rng.randrange(len(lines))
    times = rng.choice([100, 1_000, 20_000])
    line = lines[k][: max(1, limit // times)]
    lines[k : k + 1] = [line] * times
    return b"\n".join(lines)


def mutate(rng: random.Random, raw: bytes, seeds: list[bytes], limit: int) -> bytes:
    for _ in range(rng.randrange(1, 5)):
        pick = rng.random()
        if pick < 0.35:
            raw = mutate_bytes(rng, raw, seeds, limit)
        elif pick < 0.65:
            raw = mutate_headers(rng, raw, limit)
        elif pick < 0.9:
            raw = mutate_structure(rng, raw, limit)
        else:
            raw = mutate_lines(rng, raw, limit)
        raw = raw[:limit]
    return raw


# --- running one case ----------------------------------------------------------------------------------


class CaseTimeout(BaseException):
    """A BaseException, so that process() (which catches Exception) cannot swallow it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"still running after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Failure:
    stage: str
    error: str  # "ExceptionType: message" (message cut)
    where: str  # file:line of the innermost frame
    trace: str

    @property
    def signature(self) -> str:
        return f"{self.stage}|{self.error.split(':', 1)[0]}|{self.where}"


def failure(stage: str, exc: BaseException) -> Failure:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} ({frames[-1].name})" if frames else "?"
    ours = [f for f in frames if "/secirbot/" in f.filename]
    if ours and ours[-1] is not frames[-1]:
        where += f" via {Path(ours[-1].filename).name}:{ours[-1].lineno}"
    return Failure(stage, f"{type(exc).__name__}: {str(exc)[:200]}", where, "".join(traceback.format_exception(exc)))


class Pipeline:
    """A sandbox bot (temp store, IANA stand-ins on 127.0.0.1, the bench's rules) for pipeline.process."""

    def __init__(self, work: Path) -> None:
        import yaml

        from bench.rig import approver_addresses, bench_rules, load_records
        from secirbot.config import load_config
        from secirbot.rules import load_rules
        from secirbot.sandbox.iana_servers import DnsServer, RdapServer, WhoisServer
        from secirbot.sandbox.ports import free_port
        from secirbot.wiring import build

        records = load_records()
        cctlds = list(records)
        self.servers = [
            WhoisServer({t.ascii: raw for t, raw in records.items()}),
            RdapServer({}),
            DnsServer(delegated={t.ascii for t in cctlds}),
        ]
        for server in self.servers:
            server.__enter__()
        whois, rdap, dns = self.servers
        closed = free_port()  # IMAP and SMTP are never contacted: process() only queues mail
        data = {
            "imap": {"host": "127.0.0.1", "port": closed, "security": "none", "username": "fuzz", "password": "x"},
            "smtp": {"host": "127.0.0.1", "port": closed, "security": "none"},
            "addresses": {"bot": BOT, "secretariat": SECRETARIAT},
            "mailman": {"dialect": "mailman3", "list": LIST},
            "iana": {"whois": whois.endpoint, "rdap": rdap.base_url, "timeout_seconds": 2},
            "dns": {"nameservers": ["127.0.0.1"], "port": dns.port, "timeout_seconds": 1},
            "store": {"path": str(work / "fuzz.sqlite3")},
            "rules": "rules.yaml",
            "templates": str(REPO / "templates"),
        }
        (work / "secirbot.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        (work / "rules.yaml").write_text(yaml.safe_dump(bench_rules(cctlds), allow_unicode=True), encoding="utf-8")
        config = load_config(work / "secirbot.yaml", environ={})
        self.bot = build(config, load_rules(config.rules))
        self.contacts = {a for addresses in approver_addresses(records).values() for a in addresses}
        self.uid = 0
        self.tokens = self._open_requests(cctlds[:8])

    def _open_requests(self, cctlds: list[Any]) -> list[tuple[bytes, bytes]]:
        """Open one real request per ccTLD, so that replies reach live approvers: (approver, reply address)."""
        import email

        for i, tld in enumerate(cctlds):
            raw = (
                f"From: Requester {i} <req{i}@cert{i}.example>\r\nTo: {BOT}\r\nSubject: subscribe .{tld.ascii}\r\n"
                f"Message-ID: <open-{i}@cert{i}.example>\r\n\r\nName: Requester {i}\r\nRole: CSIRT\r\n"
            ).encode()
            self.run(raw, f"req{i}@cert{i}.example")
        from secirbot.schedule import run_due_jobs

        run_due_jobs(self.bot)  # the first IANA lookups: the approvers are asked
        pairs = []
        for row in self.bot.store.all("SELECT recipients, payload FROM outbox WHERE kind = 'mail'"):
            msg = email.message_from_bytes(bytes(row["payload"]))
            reply_to = str(msg.get("Reply-To") or "")
            if "+" in reply_to:
                for rcpt in json.loads(row["recipients"]):
                    pairs.append((rcpt.encode(), reply_to.strip("<> ").encode()))
        if not pairs:
            raise SystemExit(
                "bench: the sandbox bot opened no request with approvers; see its store in "
                + str(self.bot.config.store.path)
            )
        return pairs

    def close(self) -> None:
        self.bot.store.close()
        for server in self.servers:
            server.__exit__(None, None, None)

    def allowed(self, sender: str | None) -> set[str]:
        requesters = {r["requester"].lower() for r in self.bot.store.all("SELECT requester FROM requests")}
        return {SECRETARIAT, *self.contacts, *requesters, *([sender.lower()] if sender else [])}

    def run(self, raw: bytes, sender: str | None) -> Failure | None:
        from secirbot.pipeline import Origin, process

        self.uid += 1
        last = self.bot.store.one("SELECT COALESCE(MAX(id), 0) AS n FROM outbox")["n"]
        try:
            where = process(self.bot, Origin("INBOX", 1, self.uid), raw)
        except Exception as exc:
            return failure("pipeline", exc)
        row = self.bot.store.one("SELECT outcome, reason FROM messages WHERE folder = 'INBOX' AND uid = ?", (self.uid,))
        if row is None or where not in ("processed", "failed"):
            return Failure("pipeline", f"NotRecorded: filed as {where!r}", "pipeline.process", "")
        if (row["reason"] or "").startswith("internal error"):
            reason = row["reason"]
            return Failure(
                "pipeline", reason.removeprefix("internal error: ")[:200], "recorded as internal error", reason
            )
        allowed = self.allowed(sender)
        for out in self.bot.store.all("SELECT recipients FROM outbox WHERE id > ? AND kind = 'mail'", (last,)):
            for rcpt in json.loads(out["recipients"]):
                domain = rcpt.lower().rpartition("@")[2]
                if rcpt.lower() not in allowed and domain != LIST.split("@")[1]:
                    return Failure("pipeline", f"UnexpectedRecipient: {rcpt!r}", "outbox", "")
        return None


def run_case(raw: bytes, pipeline: Pipeline | None) -> tuple[Failure | None, str]:
    """(the failure, if any; what the message was: unparseable, or kind/detail)."""
    stage = "parse"
    try:
        try:
            mail = parse_mail(raw)
        except UnparseableMail:
            mail = None
        if mail is None:
            outcome = "unparseable"
        else:
            stage = "classify"
            cls = classify(mail, bot_address=BOT, list_address=LIST)
            outcome = f"{cls.kind.value}/{cls.detail}"
            stage = "decision"
            read_decision(mail)
            stage = "claim"
            read_claim(mail, new_text(mail), 2000)
    except CaseTimeout:
        raise
    except Exception as exc:
        return failure(stage, exc), "crash"
    if pipeline is not None:
        found = pipeline.run(raw, mail.from_addr if mail else None)
        if found is not None:
            return found, outcome
    return None, outcome


def shrink(raw: bytes, fails_the_same: Callable[[bytes], bool], budget_seconds: float = 20.0) -> bytes:
    """Remove runs of lines (halving, ddmin-like) while the case still fails the same way."""
    deadline = time.monotonic() + budget_seconds
    lines = raw.split(b"\n")
    chunk = max(1, len(lines) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        start, removed = 0, False
        while start < len(lines) and time.monotonic() < deadline:
            candidate = lines[:start] + lines[start + chunk :]
            if candidate and fails_the_same(b"\n".join(candidate)):
                lines, removed = candidate, True
            else:
                start += chunk
        if not removed:
            chunk //= 2
    return b"\n".join(lines)


# --- the run -------------------------------------------------------------------------------------------


@dataclass
class Results:
    cases: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)
    first: dict[str, tuple[Failure, Path]] = field(default_factory=dict)
    hangs: int = 0
    times: list[float] = field(default_factory=list)
    slowest: tuple[float, int, Path | None] = (0.0, -1, None)
    pipeline: Counter[str] = field(default_factory=Counter)  # what process() recorded, by detail


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def save(out: Path, name: str, raw: bytes, text: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.eml"
    path.write_bytes(raw)
    (out / f"{name}.txt").write_text(text, encoding="utf-8")
    return path


def fuzz(args: argparse.Namespace) -> Results:
    seeds = load_seeds()
    seed_bytes = [raw for _, raw in seeds]
    out = Path(args.out)
    results = Results()
    work = Path(tempfile.mkdtemp(prefix="secirbot-fuzz-"))
    pipeline = Pipeline(work) if args.pipeline else None
    slow_raw = b""
    started = time.monotonic()
    try:
        while results.cases < args.cases and time.monotonic() - started < args.seconds:
            index = results.cases
            rng = random.Random(f"{args.seed}:{index}")
            name, base = seeds[rng.randrange(len(seeds))]
            if pipeline is not None and TOKEN_ADDRESS.encode() in base:  # a reply from a live approver
                approver, reply_to = rng.choice(pipeline.tokens)
                base = base.replace(TOKEN_ADDRESS.encode(), reply_to).replace(b"admin@nic.example", approver)
            if pipeline is not None:  # a Message-ID of its own, or most cases would be filed as duplicates
                base = re.sub(
                    rb"(?im)^message-id:[^\r\n]*", b"Message-ID: <fuzz-%d@fuzz.example>" % index, base, count=1
                )
            raw = mutate(rng, base, seed_bytes, args.max_bytes)
            t0 = time.perf_counter()
            try:
                with time_limit(args.case_timeout):
                    found, outcome = run_case(raw, pipeline)
            except CaseTimeout as exc:
                found, outcome = failure("hang", exc), "hang"
                results.hangs += 1
            elapsed = time.perf_counter() - t0
            results.cases += 1
            results.times.append(elapsed)
            results.outcomes[outcome] += 1
            if elapsed > results.slowest[0]:
                results.slowest = (elapsed, index, None)
                slow_raw = raw
            if found is not None:
                results.crashes[found.signature] += 1
                if found.signature not in results.first:
                    results.first[found.signature] = (found, save_crash(out, found, raw, name, index, args))
        if results.slowest[1] >= 0:
            path = save(
                out,
                "slowest",
                slow_raw,
                f"case {results.slowest[1]} (seed {args.seed}), {results.slowest[0]:.3f} s, {len(slow_raw)} bytes\n",
            )
            results.slowest = (results.slowest[0], results.slowest[1], path)
    finally:
        results.seconds = time.monotonic() - started
        if pipeline is not None:
            for row in pipeline.bot.store.all(
                "SELECT outcome, kind, detail, COUNT(*) AS n FROM messages GROUP BY outcome, kind, detail"
            ):
                detail = re.sub(r" \d+$", "", row["detail"] or "")
                results.pipeline[f"{row['outcome']} {row['kind']}/{detail}"] += row["n"]
            pipeline.close()
    return results


def save_crash(out: Path, found: Failure, raw: bytes, seed_name: str, index: int, args: argparse.Namespace) -> Path:
    digest = hashlib.sha256(found.signature.encode()).hexdigest()[:8]
    label = re.sub(r"[^A-Za-z0-9]+", "-", f"{found.stage}-{found.error.split(':', 1)[0]}")[:60]
    small = raw
    if found.stage not in ("hang", "pipeline") and not args.no_shrink:

        def same(candidate: bytes) -> bool:
            try:
                with time_limit(args.case_timeout):
                    again, _ = run_case(candidate, None)
            except CaseTimeout:
                return False
            return again is not None and again.signature == found.signature

        small = shrink(raw, same)
    text = (
        f"{found.stage}: {found.error}\nraised at {found.where}\nseed mail {seed_name}, case {index} "
        f"(--seed {args.seed}); {len(raw)} bytes, shrunk to {len(small)}\n\n{found.trace}"
    )
    return save(out, f"crash-{label}-{digest}", small, text)


def report(results: Results, args: argparse.Namespace) -> str:
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = results.times
    lines = [
        f"secirbot hostile-input fuzz: seed {args.seed}, {'parse+classify+decision+claim'}"
        f"{' + pipeline.process' if args.pipeline else ''}, max {args.max_bytes:,} bytes a case",
        f"cases tried          {results.cases:,} in {results.seconds:.1f} s",
        f"refused (unparseable) {results.outcomes['unparseable']:,}",
        f"crashes              {sum(results.crashes.values()):,} ({len(results.crashes)} distinct)",
        f"hangs (> {args.case_timeout:.0f} s)        {results.hangs}",
        f"time per message     max {max(times, default=0):.3f} s, p99 {percentile(times, 99):.3f} s, "
        f"median {percentile(times, 50) * 1000:.1f} ms",
        f"peak RSS             {rss_mb:.1f} MB",
    ]
    if results.slowest[2] is not None:
        lines.append(f"slowest case         #{results.slowest[1]}, {results.slowest[0]:.3f} s: {results.slowest[2]}")
    if results.crashes:
        lines.append("crashes by signature (first repro):")
        for signature, count in results.crashes.most_common():
            found, path = results.first[signature]
            lines.append(f"  {count:6,}  {found.stage}: {found.error[:100]}")
            lines.append(f"          at {found.where}\n          {path}")
    top = ", ".join(f"{k} {v}" for k, v in results.outcomes.most_common(12))
    lines.append(f"classified as: {top}")
    if results.pipeline:
        top = ", ".join(f"{k} {v}" for k, v in results.pipeline.most_common(14))
        lines.append(f"pipeline recorded: {top}")
    return "\n".join(lines)


def replay(path: Path, pipeline: bool) -> int:
    raw = path.read_bytes()
    work = Path(tempfile.mkdtemp(prefix="secirbot-fuzz-"))
    bot = Pipeline(work) if pipeline else None
    try:
        started = time.perf_counter()
        found, outcome = run_case(raw, bot)
        print(f"{path}: {len(raw):,} bytes, {outcome}, {time.perf_counter() - started:.3f} s")
    finally:
        if bot is not None:
            bot.close()
    if found is None:
        print("no failure")
        return 0
    print(f"{found.stage}: {found.error}\nraised at {found.where}\n\n{found.trace}")
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python bench/hostile.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="stop after N cases (default 100000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after S seconds (default 60)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the mutations (default 2026)")
    parser.add_argument("--max-bytes", type=int, default=2_000_000, help="size cap of a case (default 2000000)")
    parser.add_argument("--case-timeout", type=float, default=30.0, help="a case running longer is a hang (30 s)")
    parser.add_argument(
        "--pipeline", action="store_true", help="also run each case through pipeline.process against a sandbox bot"
    )
    parser.add_argument("--out", default=str(REPO / "var" / "fuzz-crashes"), help="where repros go")
    parser.add_argument("--no-shrink", action="store_true", help="save crashing cases as they are")
    parser.add_argument("--replay", type=Path, metavar="FILE", help="run one saved case and print what it does")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.disable(logging.CRITICAL)  # the libraries log every malformed part; the figures are the output
    if args.replay:
        return replay(args.replay, args.pipeline)
    if args.cases < 1 or args.seconds <= 0:
        raise SystemExit("bench: --cases and --seconds must be positive")
    results = fuzz(args)
    print(report(results, args))
    return 1 if results.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
