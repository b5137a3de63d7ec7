"""Sample template contexts: one per template, shaped exactly as the bot passes them.

`secirbot check` renders every template with these (a typo in a template is found before a request
needs it), and the tests use them to check every text the bot can send.
"""

from __future__ import annotations

from typing import Any

from .config import Config
from .newtext import REPLY_MARKER
from .rules import Rules, load_rules
from .workflow import context_for

SAMPLE_REQUEST = {
    "id": 42,
    "cctld": "xn--p1ai",
    "requester": "ivan.petrov@cctld.example",
    "requester_name": "Иван Петров",
    "claim": "Role: CSIRT lead\nI run incident response for the registry.",
    "state": "pending",
    "created_at": "2026-11-26T07:00:00Z",
    "expires_at": "2026-12-10T07:00:00Z",
    "decision": "APPROVE",
    "decided_by": "admin@cctld.example",
    "decided_at": "2026-11-27T09:30:00Z",
    "decision_reason": "",
    "decided_via": "mail",
}


def sample_contexts(config: Config, rules: Rules | None = None) -> dict[str, dict[str, Any]]:
    if rules is None:
        rules = load_rules(config.rules) if config.rules.exists() else Rules()
    base = context_for(config, rules, SAMPLE_REQUEST)
    plain = {
        "bot": config.addresses.bot,
        "secretariat": config.addresses.secretariat,
        "list_address": config.mailman.list,
    }
    approver = {"email": "Admin@cctld.example", "name": "Anna Admin", "roles": ["administrative", "technical"]}
    approvers = [
        {
            "email": "admin@cctld.example",
            "roles": "administrative",
            "state": "asked",
            "asked_at": "2026-11-26T07:00:00Z",
            "reminders_sent": 2,
        }
    ]
    removal = {
        **plain,
        "address": "jan@cctld.example",
        "name": "Jan Jansen",
        "cctld": "рф",
        "dialect": "mailman3",
        "done": False,
        "unasked": False,
        "asked_by": "",
        "reason": "",
        "actor": "cli:ana",
        "said": "",
    }
    return {
        "approval_request.txt": {
            **base,
            "approver": approver,
            "organisation": "Coordination Center for TLD RU",
            "marker": REPLY_MARKER,
            "reminder": 1,
        },
        "request_copy.txt": {**base, "asked": ["admin@cctld.example", "tech@cctld.example"], "note": ""},
        "request_received.txt": {**base, "delayed": False, "asked": 2},
        "decision_recorded.txt": {**base, "approver": approver},
        "not_mine_recorded.txt": {**base, "approver": approver, "recorded_at": "2026-11-27 09:30 UTC"},
        "request_problem.txt": {**plain, "reason": "several-cctlds", "names": ["nl", "рф"]},
        "request_refused.txt": {
            **plain,
            "rule": "pilot",
            "detail": "not invited",
            "cctld": "рф",
            "cctld_display": ".рф (xn--p1ai)",
            "open_request_id": None,
            "seats": 3,
        },
        "help.txt": {**plain, "detail": "help"},
        "clarify.txt": {**base, "approver": approver, "why": "the first line of your reply was 'approved?'"},
        "reply_not_accepted.txt": {**plain, "rule": "from-mismatch"},
        "reply_rejected_secretariat.txt": {
            **base,
            "approver": approver,
            "rule": "from-mismatch",
            "sender": "someone@else.example",
            "checks": {"from": "mismatch"},
        },
        "already_decided.txt": {**base, "approver": approver},
        "approved_requester.txt": {**base, "dialect": config.mailman.dialect},
        "denied_requester.txt": {**base, "reason": "Not our staff."},
        "decision_secretariat.txt": {
            **base,
            "via": "mail",
            "checks": {"from": "matches"},
            "rule": "token+from",
            "snapshot": {"id": 7, "source": "whois", "fetched": "2026-11-26 07:00 UTC"},
        },
        "decision_approvers.txt": {**base, "approver": approver},
        "withdrawn_requester.txt": base,
        "delegated_notice.txt": {
            **base,
            "approver": approver,
            "delegate": "ivan@cctld.example",
            "contact": "hostmaster@cctld.example",
            "takes_effect": "2026-11-29 09:30 UTC",
        },
        "delegation_objected.txt": {
            **base,
            "approver": approver,
            "delegate": "ivan@cctld.example",
            "contact": "hostmaster@cctld.example",
            "objector": "admin@cctld.example",
        },
        "remove_confirm.txt": {
            **plain,
            "address": "jan@cctld.example",
            "cctld": ".рф (xn--p1ai)",
            "since": "2026-01-05",
            "asker": "admin@cctld.example",
            "contact": "admin@cctld.example",
            "expires": "2026-12-10 09:30 UTC",
        },
        "remove_refused.txt": {**plain, "address": "jan@cctld.example"},
        "revet.txt": {
            **plain,
            "approver": approver,
            "contact": "admin@cctld.example",
            "cctld": ".рф (xn--p1ai)",
            "why": "the yearly re-vetting",
            "members": [{"address": "jan@cctld.example", "name": "Jan", "since": "2026-01-05T10:00:00Z"}],
        },
        "members_answer.txt": {
            **plain,
            "cctld": ".рф (xn--p1ai)",
            "contact": "admin@cctld.example",
            "kind": "revet",
            "removed": ["jan@cctld.example"],
            "not_members": ["x@cctld.example"],
            "unclear": "",
        },
        "mailman_roster_changed.txt": {
            **plain,
            "removed": ["gone@cctld.example"],
            "added": ["walked-in@gmail.com"],
        },
        "leave_not_member.txt": {**plain, "address": "someone@cctld.example"},
        "leave_unverified.txt": {
            **plain,
            "address": "jan@cctld.example",
            "why": "dmarc-required",
            "to_secretariat": True,
        },
        "member_removed.txt": {**removal, "done": False, "asked_by": "The member", "reason": "asked to leave"},
        "removal_secretariat.txt": {**removal, "done": False, "asked_by": "The Secretariat", "reason": "changed jobs"},
        "withdrawn_notice.txt": {
            **base,
            "approver": None,
            "asked": ["admin@cctld.example"],
            "withdrawn_at": "2026-11-27 09:30 UTC",
        },
        "delivery_failed.txt": {
            **plain,
            "purpose": "approval-request",
            "failed": ["admin@cctld.example"],
            "error": "550 5.1.1 no such user",
            "message_id": "<x@example>",
            "request_id": 42,
            "when": "2026-11-26 07:00 UTC",
        },
        "lookup_failing.txt": {**base, "problem": "unreachable: timed out", "attempts": 25, "waited_hours": 24},
        "imap_auth_failed.txt": {
            **plain,
            "host": "mail.example.org",
            "port": 993,
            "username": "join",
            "problem": "IMAP login as 'join' on mail.example.org:993 was refused: [AUTHENTICATIONFAILED]",
            "retry_minutes": 5,
        },
        "escalation_secretariat.txt": {**base, "why": "no answer", "approvers": approvers},
        "expired_requester.txt": base,
        "expired_secretariat.txt": {**base, "approvers": approvers},
        "digest.txt": {
            "open": [
                {
                    "id": 42,
                    "requester": "ivan.petrov@cctld.example",
                    "cctld_display": ".рф (xn--p1ai)",
                    "state": "pending",
                    "age_days": 3,
                    "expires": "2026-12-10T07:00:00Z",
                    "approvers": ["admin@cctld.example (asked, 1 reminders)"],
                }
            ],
            "decided_this_week": 2,
            "quarantined_this_week": 0,
            "undeliverable_this_week": 1,
            "members": 5,
            "bot": config.addresses.bot,
            "list_address": config.mailman.list,
        },
        "contacts_changed.txt": {
            "cctld_display": ".nl",
            "contacts": [{"email": "new@sidn.example", "roles": ["administrative"]}],
            "requests": [
                {"id": 42, "requester": "x@y.example", "removed": ["old@sidn.example"], "asked": ["new@sidn.example"]}
            ],
            "members": [
                {
                    "id": 7,
                    "requester": "m@sidn.example",
                    "decided_by": "old@sidn.example",
                    "decided_at": "2026-01-01T00:00:00Z",
                }
            ],
            "snapshot": {"id": 9, "source": "whois", "fetched": "2026-11-26 07:00 UTC"},
            "bot": config.addresses.bot,
            "secretariat": config.addresses.secretariat,
        },
        "invitation.txt": {
            "cctld_display": ".рф (xn--p1ai)",
            "cctld": "xn--p1ai",
            "contact": {"email": "ru-adm@cctld.example", "name": "Admin group"},
            "organisation": "Coordination Center",
            "bot": config.addresses.bot,
            "secretariat": config.addresses.secretariat,
            "list_address": config.mailman.list,
            "seats": 3,
        },
        "reply_budget.txt": {**plain, "limit": 60},
        "token_guessing.txt": {**plain, "count": 20, "limit": 20},
        "request_stuck.txt": {**base, "reason": "TemplateError: template request_received.txt: ...", "retry": "1 hour"},
        "message_quarantined.txt": {
            "bot": config.addresses.bot,
            "secretariat": config.addresses.secretariat,
            "list_address": config.mailman.list,
            "sender": "admin@cctld.example",
            "subject": "Re: Approval needed",
            "message_id": "<x@example>",
            "reason": "internal error: KeyError: 'x'",
            "row": 7,
            "folder": "Failed",
        },
        "mailman_conflict.txt": {
            "address": "ivan.petrov@cctld.example",
            "request_id": 42,
            "said": "Member already subscribed",
            "list_address": config.mailman.list,
        },
        "mailman_unvetted.txt": {
            "address": "walk-in@example.net",
            "display_name": "",
            "when": "2026-11-26T07:00",
            "rejected": False,
            "list_address": config.mailman.list,
            "bot": config.addresses.bot,
        },
    }
