"""What the Secretariat reads: request lists, one request's timeline. Read-only views over the store."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from .confirmations import all_revets
from .iana.names import NotACcTLD, parse_tld
from .ledger import OPEN_STATES, Ledger, RequestState
from .roster import counts_by_cctld, members
from .store import Store, from_iso, iso


def _display(cctld: str) -> str:
    try:
        return parse_tld(cctld).display()
    except NotACcTLD:
        return cctld


_LISTED = (
    "id",
    "state",
    "cctld",
    "requester",
    "requester_name",
    "created_at",
    "expires_at",
    "decision",
    "decided_by",
    "decided_at",
    "mailman_status",
)


def list_requests(store: Store, state: str | None = None) -> list[dict[str, Any]]:
    if state is not None and state not in RequestState.__members__.values():
        return []
    rows = Ledger(store).requests(states=[RequestState(state)] if state else [])
    return [{**{k: r.as_dict()[k] for k in _LISTED}, "cctld_display": _display(r.cctld)} for r in rows]


def show_request(store: Store, request_id: int) -> dict[str, Any] | None:
    """The whole story of one request: its fields, its approvers, every audit record, its mail."""
    ledger = Ledger(store)
    request = ledger.find_request(request_id)
    if request is None:
        return None
    data: dict[str, Any] = {**request.as_dict(), "cctld_display": _display(request.cctld)}
    data["approvers"] = [
        {k: v for k, v in a.as_dict().items() if k not in ("id", "request_id", "email_key")}
        for a in ledger.approvers(request_id)
    ]
    data["timeline"] = []
    for row in store.all(
        "SELECT id, at, actor, action, message_row, outbox_id, details FROM audit WHERE request_id = ? ORDER BY id",
        (request_id,),
    ):
        item = dict(row)
        item["details"] = json.loads(item["details"])
        data["timeline"].append(item)
    data["messages"] = [
        dict(r)
        for r in store.all(
            "SELECT id, processed_at, from_addr, subject, kind, detail, outcome FROM messages"
            " WHERE request_id = ? ORDER BY id",
            (request_id,),
        )
    ]
    data["outbox"] = [
        {
            **dict(r),
            "recipients": json.loads(r["recipients"]),
            "delivered": json.loads(r["delivered"]),
            "failed": json.loads(r["failed"]),
        }
        for r in store.all(
            "SELECT id, message_id, purpose, state, recipients, delivered, failed, attempts, created_at, sent_at,"
            " last_error FROM outbox WHERE request_id = ? ORDER BY id",
            (request_id,),
        )
    ]
    data["mailman_acknowledged"] = any(t["action"] == "mailman-acknowledged" for t in data["timeline"])
    snapshot = (
        store.one(
            "SELECT id, source, fetched_at, problem, delegated FROM iana_snapshots WHERE id = ?",
            (request.snapshot_id,),
        )
        if request.snapshot_id
        else None
    )
    data["snapshot"] = dict(snapshot) if snapshot else None
    return data


_ACTIONS = {
    "request-opened": "request opened",
    "state-changed": "state changed",
    "approver-asked": "approval requested",
    "approver-reminded": "reminder sent",
    "approver-bounced": "approver address bounced",
    "approver-away": "approver is away (auto-reply)",
    "approver-not-mine": "approver answered NOT MINE (no decision)",
    "escalated": "escalated",
    "lookup-failed": "IANA lookup failed",
    "lookup-alert": "Secretariat told IANA keeps failing",
    "reply-unclear": "unclear answer, clarification asked",
    "reply-rejected": "answer rejected",
    "reply-after-decision": "answer after the decision",
    "request-decided": "DECIDED",
    "delegated-answer": "answer on a contact's behalf",
    "delegation-objected": "OBJECTED to the delegated answer",
    "member-added": "on the roster",
    "mailman-acknowledged": "Mailman acknowledged",
    "mailman-member": "Mailman: member",
    "mailman-conflict": "Mailman: already pending or member",
    "mail-queued": "mail queued",
    "mail-sent": "mail sent",
    "rest-queued": "Mailman REST call queued",
    "rest-done": "Mailman REST call done",
    "delivery-deferred": "delivery deferred",
    "delivery-failed": "delivery FAILED",
    "message-processed": "message processed",
}


def render_timeline(data: dict[str, Any]) -> str:
    lines = [
        f"Request #{data['id']}: {data['requester']} for {data['cctld_display']}",
        f"  state:     {data['state']}"
        + (
            f" ({data['decision']} by {data['decided_by']} via {data['decided_via']} at {data['decided_at']})"
            if data["decision"]
            else ""
        ),
        f"  name:      {data['requester_name'] or '-'}",
        f"  created:   {data['created_at']}    expires: {data['expires_at']}",
    ]
    if data["mailman_status"]:
        lines.append(
            f"  mailman:   {data['mailman_status']}"
            + ("  (Mailman acknowledged)" if data["mailman_acknowledged"] else "")
        )
    if data["snapshot"]:
        s = data["snapshot"]
        lines.append(
            f"  IANA:      snapshot {s['id']} from {s['source']} at {s['fetched_at']}"
            + (f" - {s['problem']}" if s["problem"] else "")
        )
    if data["claim"]:
        lines.append("  their words (unverified):")
        lines.extend(f"    | {ln}" for ln in data["claim"].splitlines()[:12])
    lines.append("  approvers:")
    for a in data["approvers"] or [{"email": "(none asked)", "roles": "", "state": "", "reminders_sent": 0}]:
        lines.append(f"    {a['email']:<40} {a['roles']:<28} {a['state']:<8} reminders: {a['reminders_sent']}")
    lines.append("  timeline:")
    for item in data["timeline"]:
        details = item["details"]
        label = _ACTIONS.get(item["action"], item["action"])
        said = []
        checks = details.get("checks") if isinstance(details.get("checks"), dict) else {}
        if "delegated_by" in details or checks.get("delegated_for"):
            # "delegated by P for C" and which authentication of P passed (issue 14: the audit and show say so).
            who = details.get("delegated_by") or item["actor"]
            passed = "; ".join(f"{k}: {v}" for k, v in checks.items() if k in ("authres", "dkim"))
            said.append(
                f"delegated by {who} for {details.get('delegated_for') or checks.get('delegated_for')}"
                + (f" (authentication {passed})" if passed else "")
            )
        extra = ", ".join(
            said
            + [
                f"{k}={v}"
                for k, v in details.items()
                if k
                in (
                    "to",
                    "purpose",
                    "rule",
                    "decision",
                    "via",
                    "state",
                    "approver",
                    "why",
                    "problem",
                    "error",
                    "stage",
                    "detail",
                    "first_line",
                    "sender",
                    "takes_effect_at",
                    "objector",
                )
            ]
        )
        lines.append(f"    {item['at']}  {label:<34} {item['actor']:<14} {extra}")
    return "\n".join(lines)


def digest_context(bot: Any) -> dict[str, Any]:
    """The weekly digest for the Secretariat: every open request and what it waits for."""
    now = bot.now()
    open_requests = []
    for request in bot.ledger.requests(states=OPEN_STATES):
        approvers = bot.ledger.approvers(request.id)
        open_requests.append(
            {
                "id": request.id,
                "requester": request.requester,
                "cctld_display": _display(request.cctld),
                "state": str(request.state),
                "age_days": (now - from_iso(request.created_at)).days,
                "expires": request.expires_at,
                "approvers": [f"{a.email} ({a.state}, {a.reminders_sent} reminders)" for a in approvers],
            }
        )
    week_ago = iso(now - timedelta(days=7))
    decided = bot.ledger.decided_since(week_ago)
    quarantined = bot.store.one(
        "SELECT COUNT(*) AS n FROM messages WHERE outcome = 'failed' AND processed_at >= ?", (week_ago,)
    )["n"]
    undeliverable = bot.store.one(
        "SELECT COUNT(*) AS n FROM outbox WHERE state = 'failed' AND created_at >= ?", (week_ago,)
    )["n"]
    members = sum(counts_by_cctld(bot.store).values())
    return {
        "open": open_requests,
        "decided_this_week": decided,
        "quarantined_this_week": quarantined,
        "undeliverable_this_week": undeliverable,
        "members": members,
        "bot": bot.bot_address,
        "list_address": bot.config.mailman.list,
    }


def cctld_report(store: Store, pilot: list[str]) -> dict[str, Any]:
    """Per ccTLD: when invited, how many requests in which state, how many members; and which invited or
    pilot ccTLDs have no member yet."""
    rows: dict[str, dict[str, Any]] = {}

    def entry(cctld: str) -> dict[str, Any]:
        return rows.setdefault(
            cctld,
            {
                "cctld": cctld,
                "cctld_display": _display(cctld),
                "invited_at": None,
                "invited": [],
                "requests": 0,
                "open": 0,
                "approved": 0,
                "denied": 0,
                "expired": 0,
                "members": 0,
                "revetted_at": None,
                "in_pilot": cctld in pilot,
            },
        )

    for cctld in pilot:
        entry(cctld)
    for inv in store.all("SELECT cctld, invited_at, recipients FROM invitations ORDER BY invited_at"):
        item = entry(inv["cctld"])
        item["invited_at"] = inv["invited_at"]
        item["invited"] = json.loads(inv["recipients"])
    for cctld, state, n in Ledger(store).counts_by_cctld():
        item = entry(cctld)
        item["requests"] += n
        key = "open" if state in OPEN_STATES else str(state)
        if key in item:
            item[key] += n
    for cctld, n in counts_by_cctld(store).items():
        entry(cctld)["members"] = n
    for cctld, at in all_revets(store).items():
        entry(cctld)["revetted_at"] = at
    table = sorted(rows.values(), key=lambda r: r["cctld"])
    not_joined = [r["cctld_display"] for r in table if r["members"] == 0 and (r["invited_at"] or r["in_pilot"])]
    return {"cctlds": table, "not_joined": not_joined}


def render_report(report: dict[str, Any]) -> str:
    lines = [
        f"{'CCTLD':<22} {'INVITED':<21} {'REQ':>4} {'OPEN':>5} {'DENIED':>7} {'EXPIRED':>8} {'MEMBERS':>8}  RE-VETTED"
    ]
    for r in report["cctlds"]:
        lines.append(
            f"{r['cctld_display']:<22} {r['invited_at'] or '-':<21} {r['requests']:>4} {r['open']:>5} "
            f"{r['denied']:>7} {r['expired']:>8} {r['members']:>8}  {(r['revetted_at'] or '-')[:10]}"
        )
    lines.append("")
    lines.append("not yet joined: " + (", ".join(report["not_joined"]) or "none"))
    return "\n".join(lines)


EXPORT_FIELDS = (
    "request_id",
    "email",
    "name",
    "cctld",
    "cctld_unicode",
    "approved_by",
    "approved_at",
    "approved_via",
    "iana_snapshot_id",
    "iana_source",
    "iana_fetched_at",
    "mailman_status",
)


def roster(store: Store) -> list[dict[str, Any]]:
    """Every member on the list with how they were vetted, for migration to the final trust system. A member
    imported from an existing list has no request: its `approved_by` says where it was imported from."""
    out = []
    ledger = Ledger(store)
    for member in members(store, include_removed=False):
        r = ledger.find_request(member.request_id) if member.request_id is not None else None
        snapshot = (
            store.one("SELECT source, fetched_at FROM iana_snapshots WHERE id = ?", (r.snapshot_id,))
            if r is not None and r.snapshot_id is not None
            else None
        )
        name = parse_tld(member.cctld) if member.cctld else None  # '' = found in Mailman, not yet placed
        out.append(
            {
                "request_id": member.request_id if member.request_id is not None else "",
                "email": member.address,
                "name": member.name,
                "cctld": name.ascii if name else "",
                "cctld_unicode": name.unicode if name else "",
                "approved_by": member.approved_by,
                "approved_at": r.decided_at if r is not None else member.since,
                "approved_via": r.decided_via if r is not None else member.source.value,
                "iana_snapshot_id": r.snapshot_id if r is not None else "",
                "iana_source": (snapshot["source"] or "") if snapshot is not None else "",
                "iana_fetched_at": (snapshot["fetched_at"] or "") if snapshot is not None else "",
                "mailman_status": (r.mailman_status or "") if r is not None else "",
            }
        )
    return sorted(out, key=lambda item: (item["request_id"] == "", item["request_id"] or 0, item["email"]))
