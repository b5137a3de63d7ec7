"""What the Secretariat reads: request lists, one request's timeline. Read-only views over the store."""

from __future__ import annotations

import json
from typing import Any

from .iana.names import NotACcTLD, parse_tld
from .store import Store


def _display(cctld: str) -> str:
    try:
        return parse_tld(cctld).display()
    except NotACcTLD:
        return cctld


def list_requests(store: Store, state: str | None = None) -> list[dict[str, Any]]:
    sql = ("SELECT id, state, cctld, requester, requester_name, created_at, expires_at, decision, decided_by,"
           " decided_at, mailman_status FROM requests")
    rows = store.all(sql + (" WHERE state = ? ORDER BY id" if state else " ORDER BY id"), (state,) if state else ())
    return [{**dict(r), "cctld_display": _display(r["cctld"])} for r in rows]


def show_request(store: Store, request_id: int) -> dict[str, Any] | None:
    """The whole story of one request: its fields, its approvers, every audit record, its mail."""
    request = store.one("SELECT * FROM requests WHERE id = ?", (request_id,))
    if request is None:
        return None
    data: dict[str, Any] = {**dict(request), "cctld_display": _display(request["cctld"])}
    data["approvers"] = [dict(r) for r in store.all(
        "SELECT email, roles, name, state, asked_at, expires_at, used_at, reminders_sent, next_reminder_at"
        " FROM approvers WHERE request_id = ? ORDER BY id", (request_id,))]
    data["timeline"] = []
    for row in store.all("SELECT id, at, actor, action, message_row, outbox_id, details FROM audit"
                         " WHERE request_id = ? ORDER BY id", (request_id,)):
        item = dict(row)
        item["details"] = json.loads(item["details"])
        data["timeline"].append(item)
    data["messages"] = [dict(r) for r in store.all(
        "SELECT id, processed_at, from_addr, subject, kind, detail, outcome FROM messages"
        " WHERE request_id = ? ORDER BY id", (request_id,))]
    data["outbox"] = [{**dict(r), "recipients": json.loads(r["recipients"]), "delivered": json.loads(r["delivered"]),
                       "failed": json.loads(r["failed"])} for r in store.all(
        "SELECT id, message_id, purpose, state, recipients, delivered, failed, attempts, created_at, sent_at,"
        " last_error FROM outbox WHERE request_id = ? ORDER BY id", (request_id,))]
    data["mailman_acknowledged"] = any(t["action"] == "mailman-acknowledged" for t in data["timeline"])
    snapshot = store.one("SELECT id, source, fetched_at, problem, delegated FROM iana_snapshots WHERE id = ?",
                         (request["snapshot_id"],)) if request["snapshot_id"] else None
    data["snapshot"] = dict(snapshot) if snapshot else None
    return data


_ACTIONS = {
    "request-opened": "request opened",
    "state-changed": "state changed",
    "approver-asked": "approval requested",
    "approver-reminded": "reminder sent",
    "approver-bounced": "approver address bounced",
    "approver-away": "approver is away (auto-reply)",
    "escalated": "escalated",
    "lookup-failed": "IANA lookup failed",
    "lookup-alert": "Secretariat told IANA keeps failing",
    "reply-unclear": "unclear answer, clarification asked",
    "reply-rejected": "answer rejected",
    "reply-after-decision": "answer after the decision",
    "request-decided": "DECIDED",
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
        f"  state:     {data['state']}" + (f" ({data['decision']} by {data['decided_by']} via {data['decided_via']}"
                                            f" at {data['decided_at']})" if data["decision"] else ""),
        f"  name:      {data['requester_name'] or '-'}",
        f"  created:   {data['created_at']}    expires: {data['expires_at']}",
    ]
    if data["mailman_status"]:
        lines.append(f"  mailman:   {data['mailman_status']}"
                     + ("  (Mailman acknowledged)" if data["mailman_acknowledged"] else ""))
    if data["snapshot"]:
        s = data["snapshot"]
        lines.append(f"  IANA:      snapshot {s['id']} from {s['source']} at {s['fetched_at']}"
                     + (f" - {s['problem']}" if s["problem"] else ""))
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
        extra = ", ".join(f"{k}={v}" for k, v in details.items()
                          if k in ("to", "purpose", "rule", "decision", "via", "state", "approver", "why",
                                   "problem", "error", "stage", "detail", "first_line", "sender"))
        lines.append(f"    {item['at']}  {label:<34} {item['actor']:<14} {extra}")
    return "\n".join(lines)
