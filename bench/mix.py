"""The backlog: a realistic mix of what lands in the bot's mailbox, built from real and real-shaped mail.

- New requests for the 50 ccTLDs of `bench/records/`, written three ways (subject command, a "ccTLD:" line,
  an HTML mail client), and refused ones: a ccTLD outside the pilot, a requester whose request is still open,
  a gTLD, no TLD at all.
- Replies to the bot's *real* approval requests (captured from the sink after a first run), addressed to their
  real token addresses: APPROVE and DENY from the approver, the second approver answering after the first
  decided, unclear answers, a reply from the wrong sender, an unknown token. Three client styles.
- Auto-replies and bounces: the real ones of `tests/messages/` (verbatim except for a fresh Message-ID per copy,
  so that a copy is a new message, not a duplicate), plus out-of-office replies from approvers to their token
  address and a real Postfix DSN re-addressed to an approver (so "away"/"bounced" are noted and escalate).
- Junk: the real non-request mails of `tests/messages/` and short notes from a pool of senders (help replies
  go out once per sender per day, so many are suppressed), and a few exact re-deliveries (duplicates).

Two mixes of these kinds (`MIXES`, `--mix` of bench/run.py):

- heavy (the default, issue 7): every kind above, with a large share of machine mail (auto-replies, bounces)
  and refused requests: 25 % new requests, 7.5 % refused ones, 15 % replies, 35 % auto-replies and bounces,
  15.5 % junk, 2 % duplicates.
- plain (issue 13): an ordinary day's mail. 60 % new requests for the served ccTLDs (the same three writing
  styles); 30 % genuine replies to the real approval requests (22 % APPROVE, 5 % DENY, 3 % the second
  approver's APPROVE after the first decided); 10 % other mail: 3 % real auto-replies, 2 % out-of-office
  replies from approvers, 2 % real non-request mails, 3 % short notes. No refused or malformed requests, no
  bounces, no unclear or misaddressed replies, no duplicates.

Everything is deterministic for a given mix and seed; the heavy mix is the one of issue 7, message for message.
"""

from __future__ import annotations

import email.policy
import email.utils
import random
import re
from collections import Counter
from dataclasses import dataclass
from email.message import EmailMessage

from secirbot.iana.names import TldName
from secirbot.sandbox.smtp_sink import Captured
from secirbot.tokens import TOKEN_LENGTH, find_token

from .rig import BOT, REPO

MESSAGES = REPO / "tests" / "messages"
CLIENT_DOMAIN = "mail.bench.example"

FIRST = [
    "Anna",
    "Jan",
    "Mette",
    "Luis",
    "Aiko",
    "Olga",
    "Pierre",
    "Sofia",
    "Tomás",
    "Ingrid",
    "Ravi",
    "Chen",
    "Fatima",
    "Lars",
    "Maria",
    "Jonas",
    "Elif",
    "Kofi",
    "Hanna",
    "Mateo",
    "Noor",
    "Pavel",
    "Ayumi",
    "Björn",
]
LAST = [
    "Berg",
    "Jansen",
    "Hansen",
    "García",
    "Tanaka",
    "Ivanova",
    "Dubois",
    "Rossi",
    "Novák",
    "Larsen",
    "Kumar",
    "Wei",
    "Haddad",
    "Nilsson",
    "Silva",
    "Schmidt",
    "Yılmaz",
    "Mensah",
    "Virtanen",
    "López",
    "Khan",
    "Horák",
]
ROLES = [
    "CSIRT lead",
    "incident handler",
    "security engineer",
    "head of security operations",
    "DNS operations",
    "abuse desk team lead",
]
PILOT_OUTSIDE = ["tv", "io", "ws", "ly", "ai", "gg", "fm", "to"]  # real ccTLDs that the bench pilot does not list
JUNK_SUBJECTS = [
    "Question about the list archive",
    "Conference call tomorrow",
    "Hello",
    "Invoice 2026-11",
    "Re: agenda for the next meeting",
    "Slides from the workshop",
    "Out of curiosity",
    "Re: phishing wave last week",
]
JUNK_BODIES = [
    "Hi,\n\nwhere can I find the archive of last year's posts?\n\nThanks,\n{name}\n",
    "Hello,\n\ncan we move the call to 15:00 UTC?\n\n{name}\n",
    "Please find the invoice attached.\n\nKind regards\n{name}\nAccounting\n",
    "Hi all,\n\nthe slides are on the usual share.\n\nBest,\n{name}\n",
]

# Shares of a backlog of N messages; "junk-note" takes what rounding leaves.
HEAVY: dict[str, float] = {
    "request": 0.25,
    "request-pilot": 0.025,
    "request-pending": 0.025,
    "request-not-cctld": 0.0125,
    "request-no-cctld": 0.0125,
    "reply-approve": 0.075,
    "reply-deny": 0.02,
    "reply-unclear": 0.015,
    "reply-wrong-sender": 0.0075,
    "reply-unknown-token": 0.0075,
    "reply-second": 0.025,
    "auto-reply": 0.175,
    "auto-reply-approver": 0.025,
    "bounce": 0.135,
    "bounce-approver": 0.015,
    "junk-real": 0.075,
    "junk-note": 0.075,
    "duplicate": 0.02,
}
# An ordinary day: requests and genuine answers to approval requests, a little other mail (module docstring).
PLAIN: dict[str, float] = {
    "request": 0.60,
    "reply-approve": 0.22,
    "reply-deny": 0.05,
    "reply-second": 0.03,
    "auto-reply": 0.03,
    "auto-reply-approver": 0.02,
    "junk-real": 0.02,
    "junk-note": 0.03,
}
MIXES: dict[str, dict[str, float]] = {"heavy": HEAVY, "plain": PLAIN}
# Requests that phase A must open so that the replies, away notes and bounces of a backlog of N have targets.
TARGET_KINDS = (
    "reply-approve",
    "reply-deny",
    "reply-unclear",
    "reply-wrong-sender",
    "auto-reply-approver",
    "bounce-approver",
)


@dataclass(frozen=True)
class Item:
    label: str
    raw: bytes


@dataclass(frozen=True)
class Approval:
    """One real approval request the bot sent, as captured by the sink."""

    request_no: int
    approver: str
    reply_to: str  # the token address
    subject: str
    message_id: str
    body: str


def shares(kind: str) -> dict[str, float]:
    """The shares of mix `kind` ("heavy" or "plain") over every label of the heavy mix (0 where absent)."""
    if kind not in MIXES:
        raise ValueError(f"unknown mix {kind!r} (known: {', '.join(MIXES)})")
    chosen = MIXES[kind]
    return {label: chosen.get(label, 0.0) for label in HEAVY}


def phase_a_count(n: int, kind: str = "heavy") -> int:
    share = shares(kind)
    return max(10, round(n * sum(share[k] for k in TARGET_KINDS)) + 5)


def counts(n: int, kind: str = "heavy") -> dict[str, int]:
    """How many messages of each label a backlog of N holds; every label of the heavy mix is a key."""
    out = {label: round(n * share) for label, share in shares(kind).items()}
    out["junk-note"] += n - sum(out.values())
    return out


# --- building blocks ---------------------------------------------------------------------------------


def _message(
    sender: str, to: str, subject: str, body: str, *, html: str | None = None, headers: dict[str, str] | None = None
) -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(email.utils.localtime())
    msg["Message-ID"] = email.utils.make_msgid(domain=CLIENT_DOMAIN)
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*(\r?\n)")


def with_new_message_id(raw: bytes, number: int) -> bytes:
    """A real message with only its top-level Message-ID replaced (added if it had none)."""
    cut = min((i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0), default=len(raw))
    head, rest = raw[:cut], raw[cut:]
    eol = b"\r\n" if b"\r\n" in head[:2000] else b"\n"
    new = b"Message-ID: <bench-%d-%s@%s>" % (
        number,
        email.utils.make_msgid().strip("<>").split("@")[0].encode(),
        CLIENT_DOMAIN.encode(),
    )
    if _MESSAGE_ID.search(head + eol):
        head = _MESSAGE_ID.sub(lambda m: new + m.group(1), head + eol, count=1)[: -len(eol)]
    else:
        head = new + eol + head
    return head + rest


def real_messages(prefixes: tuple[str, ...]) -> list[bytes]:
    return [p.read_bytes() for p in sorted(MESSAGES.glob("*.eml")) if p.name.startswith(prefixes)]


class People:
    """Deterministic names and addresses."""

    def __init__(self, rng: random.Random, tag: str):
        self.rng = rng
        self.tag = tag
        self.count = 0

    def person(self, org: str) -> tuple[str, str]:
        self.count += 1
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        local = f"{first}.{last}".lower().encode("ascii", "ignore").decode() or "staff"
        return f"{first} {last}", f"{local}.{self.tag}{self.count}@{org}"


def request_mail(rng: random.Random, name: str, address: str, cctld: str, style: int) -> bytes:
    """A request as people write them; `cctld` as the requester writes it ("nl", "рф", "com", "")."""
    role = rng.choice(ROLES)
    sender = f"{name} <{address}>"
    if style == 0 or not cctld:
        subject = f"subscribe .{cctld}" if cctld else "Subscription request"
        body = (
            f"Name: {name}\nRole: {role}\n\nI handle security incidents for the registry"
            f"{' of .' + cctld if cctld else ''} and would like to join the list.\n\n-- \n{name}\n{role}\n"
        )
        return _message(sender, BOT, subject, body)
    if style == 1:
        body = (
            f"Hello,\n\nI would like to join the ccTLD security list.\n\nccTLD: {cctld}\nName: {name}\n"
            f"Role: {role}\n\nBest regards\n{name}\n"
        )
        return _message(sender, BOT, "Request to join the ccTLD security list", body)
    text = (
        f"Dear colleagues,\n\nplease consider my membership for .{cctld}.\nName: {name}\nRole: {role}\n\n"
        f"Kind regards,\n{name}\n"
    )
    html = "<html><body>" + "".join(f"<p>{line}</p>" for line in text.splitlines() if line) + "</body></html>"
    return _message(sender, BOT, f"Membership request for .{cctld}", text, html=html)


def reply_mail(approval: Approval, sender: str, first_line: str, style: int) -> bytes:
    """A reply to an approval request as mail clients write it: to its Reply-To, threaded, quoting it."""
    quoted = "\n".join("> " + line for line in approval.body.splitlines())
    when = email.utils.format_datetime(email.utils.localtime())
    headers = {"In-Reply-To": approval.message_id, "References": approval.message_id}
    subject = "Re: " + approval.subject
    if style == 0:
        body = f"{first_line}\n\nOn {when}, {BOT} wrote:\n{quoted}\n"
        return _message(sender, approval.reply_to, subject, body, headers=headers)
    if style == 1:  # Outlook: an "Original Message" block, text and HTML
        body = (
            f"{first_line}\n\n-----Original Message-----\nFrom: {BOT}\nSent: {when}\n"
            f"To: {approval.approver}\nSubject: {approval.subject}\n\n{approval.body}\n"
        )
        html = (
            f"<html><body><div>{first_line}</div><div><br></div><div style='border-top:solid #E1E1E1 1pt'>"
            f"<b>From:</b> {BOT}<br><b>Subject:</b> {approval.subject}</div>"
            f"<pre>{approval.body}</pre></body></html>"
        )
        return _message(sender, approval.reply_to, "RE: " + approval.subject, body, html=html, headers=headers)
    body = f"{first_line}\n\nSent from my phone\n\n> On {when}, {BOT} wrote:\n{quoted}\n"
    return _message(sender, approval.reply_to, subject, body, headers=headers)


_SUBJECT = re.compile(r"\[#(\d+)\]\s*$")


def approvals_from(captured: list[Captured]) -> dict[int, list[Approval]]:
    """The approval requests among captured mail, by request number."""
    out: dict[int, list[Approval]] = {}
    for mail in captured:
        reply_to = mail.message["Reply-To"]
        if not reply_to or not find_token([str(reply_to)], BOT):
            continue
        subject = str(mail.message["Subject"])
        if "Approval needed:" not in subject:  # the requester's acknowledgement has a reply address too
            continue
        match = _SUBJECT.search(subject)
        body = mail.message.get_body(("plain",))
        if match is None or body is None:
            continue
        out.setdefault(int(match.group(1)), []).append(
            Approval(
                int(match.group(1)),
                mail.rcpt_tos[0],
                str(reply_to),
                subject,
                str(mail.message["Message-ID"]),
                body.get_content(),
            )
        )
    return out


# --- phase A and the backlog ---------------------------------------------------------------------------


def opening_requests(cctlds: list[TldName], count: int, seed: int) -> list[tuple[str, bytes]]:
    """Phase A: `count` valid requests spread over the ccTLDs. Returns (requester address, raw)."""
    rng = random.Random(seed)
    people = People(rng, "a")
    out = []
    for i in range(count):
        tld = cctlds[i % len(cctlds)]
        name, address = people.person(f"security.{tld.ascii}.bench.example")
        out.append((address, request_mail(rng, name, address, tld.unicode, i % 3)))
    return out


def backlog(
    n: int,
    cctlds: list[TldName],
    approvals: dict[int, list[Approval]],
    pending_requesters: list[str],
    seed: int,
    kind: str = "heavy",
) -> list[Item]:
    """N messages of mix `kind` in arrival order (see the module docstring for what they are)."""
    rng = random.Random(seed + 1)
    want = counts(n, kind)
    people = People(rng, "b")
    items: dict[str, list[Item]] = {label: [] for label in want}
    serial = iter(range(1, 10 * n + 100))

    for i in range(want["request"]):
        tld = cctlds[rng.randrange(len(cctlds))]
        name, address = people.person(f"cert.{tld.ascii}.bench.example")
        items["request"].append(Item("request", request_mail(rng, name, address, tld.unicode, i % 3)))
    for i in range(want["request-pilot"]):
        name, address = people.person("cert.other.bench.example")
        items["request-pilot"].append(
            Item("request-pilot", request_mail(rng, name, address, PILOT_OUTSIDE[i % len(PILOT_OUTSIDE)], i % 2))
        )
    for i in range(want["request-pending"]):
        address = pending_requesters[i % len(pending_requesters)]
        tld = cctlds[rng.randrange(len(cctlds))]
        items["request-pending"].append(Item("request-pending", request_mail(rng, "Again", address, tld.unicode, 0)))
    for i in range(want["request-not-cctld"]):
        name, address = people.person("example.com")
        items["request-not-cctld"].append(
            Item("request-not-cctld", request_mail(rng, name, address, ["com", "org", "net"][i % 3], 0))
        )
    for _ in range(want["request-no-cctld"]):
        name, address = people.person("example.net")
        items["request-no-cctld"].append(Item("request-no-cctld", request_mail(rng, name, address, "", 0)))

    # Replies and approver mail: each target request is used by one kind only.
    targets = sorted(approvals)
    rng.shuffle(targets)
    cursor = 0

    def take() -> list[Approval]:
        nonlocal cursor
        chosen = approvals[targets[cursor % len(targets)]]
        cursor += 1
        return chosen

    decided: list[list[Approval]] = []
    for label, first_line in (("reply-approve", "APPROVE"), ("reply-deny", "DENY\nNot one of our staff.")):
        for i in range(want[label]):
            group = take()
            decided.append(group)
            items[label].append(Item(label, reply_mail(group[0], group[0].approver, first_line, i % 3)))
    for i in range(want["reply-unclear"]):
        group = take()
        items["reply-unclear"].append(
            Item(
                "reply-unclear",
                reply_mail(
                    group[0],
                    group[0].approver,
                    "I think this is fine, but let me check with my colleague first.",
                    i % 3,
                ),
            )
        )
    for i in range(want["reply-wrong-sender"]):
        group = take()
        items["reply-wrong-sender"].append(
            Item("reply-wrong-sender", reply_mail(group[0], f"someone.{i}@freemail.bench.example", "APPROVE", i % 3))
        )
    for i in range(want["auto-reply-approver"]):
        group = take()
        approval = group[i % len(group)]
        body = "I am out of the office until Monday with limited access to e-mail.\n"
        items["auto-reply-approver"].append(
            Item(
                "auto-reply-approver",
                _message(
                    approval.approver,
                    approval.reply_to,
                    "Automatic reply: " + approval.subject,
                    body,
                    headers={"Auto-Submitted": "auto-replied", "In-Reply-To": approval.message_id},
                ),
            )
        )
    postfix_dsn = (MESSAGES / "bounce-postfix-dsn.eml").read_bytes()
    for _ in range(want["bounce-approver"]):
        group = take()
        approval = group[-1]
        raw = postfix_dsn.replace(b"kijitora@example.org", approval.approver.encode())
        items["bounce-approver"].append(Item("bounce-approver", with_new_message_id(raw, next(serial))))
    any_approval = next(iter(approvals.values()))[0]
    for _ in range(want["reply-unknown-token"]):
        token = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(TOKEN_LENGTH))
        fake = Approval(
            0,
            "x@bench.example",
            BOT.replace("@", f"+{token}@"),
            any_approval.subject,
            any_approval.message_id,
            any_approval.body,
        )
        name, address = people.person("old-staff.bench.example")
        items["reply-unknown-token"].append(Item("reply-unknown-token", reply_mail(fake, address, "APPROVE", 0)))

    for label, prefixes in (
        ("auto-reply", ("autoreply-",)),
        ("bounce", ("bounce-",)),
        ("junk-real", ("msg-", "fwd-", "reply-", "report-")),
    ):
        pool = real_messages(prefixes)
        for i in range(want[label]):
            items[label].append(Item(label, with_new_message_id(pool[i % len(pool)], next(serial))))
    senders = [people.person("partner.bench.example") for _ in range(max(1, want["junk-note"] * 2 // 3))]
    for i in range(want["junk-note"]):
        name, address = senders[rng.randrange(len(senders))]
        body = JUNK_BODIES[i % len(JUNK_BODIES)].format(name=name)
        items["junk-note"].append(
            Item("junk-note", _message(f"{name} <{address}>", BOT, JUNK_SUBJECTS[i % len(JUNK_SUBJECTS)], body))
        )

    # Arrival order: independent mail shuffled; a second approver's answer and a re-delivery come later
    # than what they follow.
    order = [item for label, batch in items.items() if label not in ("reply-second", "duplicate") for item in batch]
    rng.shuffle(order)
    position = {id(item): i for i, item in enumerate(order)}
    later: list[tuple[int, Item]] = []
    approve_items = items["reply-approve"] + items["reply-deny"]
    with_two = [(g, it) for g, it in zip(decided, approve_items, strict=True) if len(g) > 1]
    for i in range(want["reply-second"]):
        if not with_two:
            break
        group, first = with_two[i % len(with_two)]
        later.append(
            (position[id(first)], Item("reply-second", reply_mail(group[1], group[1].approver, "APPROVE", i % 3)))
        )
    for _ in range(want["duplicate"]):
        original = order[rng.randrange(len(order))]
        later.append((position[id(original)], Item("duplicate", original.raw)))
    for after, item in sorted(later, key=lambda pair: -pair[0]):
        order.insert(rng.randint(after + 1, len(order)), item)
    return order


def composition(items: list[Item]) -> Counter[str]:
    return Counter(item.label for item in items)
