"""Mailman 3's REST API at the edge: add an approved member, list and moderate pending subscriptions.

Used by the `mailman3-rest` dialect (the subscription itself, queued in the outbox like a mail) and, with
any dialect, whenever `mailman.rest_url` is set: the list's pending subscription requests are checked, so
that nobody joins through the list's own -join address or web form without having been vetted here.
The password is sent only in the Authorization header and never appears in a log line or an error.
Moderation tokens are secrets too: the store keeps only their hash. `MailmanRest.probe` is what
`secirbot check --connect` asks: does the login work, does the list exist.

`mailman.rest_url` is the API's base as config loading normalised it (`config.normalize_rest_url`: the
`/3.1` that mailmanclient and the Mailman docs write is taken off); this module adds `/3.1/` itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests

from . import membership, roster
from .config import MailmanConfig
from .mailman import list_id as mailman_list_id
from .outbox import Attempt
from .store import from_iso

if TYPE_CHECKING:
    import sqlite3

    from .bot import Bot

log = logging.getLogger(__name__)


class RestUnavailable(Exception):
    """Mailman could not be reached, or answered 5xx: try again later."""


@dataclass(frozen=True)
class Probe:
    """One check of `secirbot check --connect`: its name, whether it passed, one line of what was found."""

    name: str
    ok: bool
    said: str


def _reason(exc: BaseException) -> str:
    """Why a request failed, without its text (which repeats the URL, and any user:password@ in it):
    the class, and the operating system's words if a socket error is behind it."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.strerror and not isinstance(cause, requests.RequestException):
            return f"{type(exc).__name__}: {cause.strerror}"
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


class MailmanRest:
    def __init__(self, config: MailmanConfig):
        if not config.rest_url:
            raise ValueError("mailman.rest_url is not set")
        self.base = config.rest_url.rstrip("/")
        # For messages: without any user:password@ someone may have written into the URL.
        scheme, _, rest = self.base.partition("://")
        netloc, slash, path = rest.partition("/")
        self.shown = f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"
        self.auth = (config.rest_user or "", config.rest_password or "")
        self.timeout = config.rest_timeout_seconds

    def _call(self, method: str, path: str, data: dict[str, Any] | None = None) -> Answer:
        url = f"{self.base}/3.1/{path}"
        shown = f"{self.shown}/3.1/{path}"
        try:
            response = requests.request(method, url, data=data, auth=self.auth, timeout=self.timeout)
        except requests.RequestException as exc:
            # Never the exception's text: it repeats the URL; the auth tuple is never in either.
            raise RestUnavailable(f"Mailman REST {method} {shown}: {_reason(exc)}") from None
        if response.status_code >= 500:
            raise RestUnavailable(f"Mailman REST {method} {shown}: HTTP {response.status_code}")
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = response.text[:500]
        return Answer(response.status_code, body)

    def add_member(self, list_id: str, address: str, display_name: str) -> Answer:
        """Subscribe with every confirmation pre-done: 201 = member now, 409 = already member/pending."""
        return self._call(
            "POST",
            "members",
            {
                "list_id": list_id,
                "subscriber": address,
                "display_name": display_name,
                "pre_verified": "true",
                "pre_confirmed": "true",
                "pre_approved": "true",
            },
        )

    def remove_member(self, list_id: str, address: str) -> Answer:
        """Unsubscribe, as the list's administrator (rest/members.py on_delete: 204 removed, 202 waiting for a
        confirmation or a moderator, 404 no such member). pre_approved/pre_confirmed: the removal was
        decided here; Mailman must not ask the member to confirm it."""
        member = urllib.parse.quote(address, safe="@")
        return self._call("DELETE", f"lists/{list_id}/member/{member}?pre_approved=true&pre_confirmed=true")

    def member_addresses(self, list_id: str) -> list[tuple[str, str]]:
        """(address, display name) of every regular member of the list (GET lists/LIST_ID/roster/member)."""
        answer = self._call("GET", f"lists/{list_id}/roster/member")
        if answer.status != 200:
            raise RestUnavailable(f"Mailman REST lists/{list_id}/roster/member: HTTP {answer.status}")
        entries = (answer.body or {}).get("entries", [])
        return [(str(e.get("email", "")), str(e.get("display_name") or "")) for e in entries if e.get("email")]

    def is_member(self, list_id: str, address: str) -> bool:
        answer = self._call("POST", "members/find", {"list_id": list_id, "subscriber": address, "role": "member"})
        return answer.status == 200 and bool((answer.body or {}).get("total_size"))

    def pending_subscriptions(self, list_id: str, token_owner: str = "moderator") -> list[dict[str, Any]]:
        """The list's subscription requests waiting for `token_owner` (Mailman 3.3 rest/sub_moderation.py).

        Only "moderator" requests are a moderator's to decide. A "subscriber" request still waits for the
        person's own confirmation: accepting it would confirm the address for them (`IndividualRequest`
        calls `ISubscriptionManager.confirm` whoever owns the token), and its token is replaced when they
        confirm, so it would also be reported twice."""
        answer = self._call("GET", f"lists/{list_id}/requests?token_owner={token_owner}")
        if answer.status != 200:
            raise RestUnavailable(f"Mailman REST lists/{list_id}/requests: HTTP {answer.status}")
        return [e for e in (answer.body or {}).get("entries", []) if e.get("type", "subscription") == "subscription"]

    def moderate(self, list_id: str, token: str, action: str) -> int:
        return self._call("POST", f"lists/{list_id}/requests/{token}", {"action": action}).status

    def probe(self, list_address: str) -> list[Probe]:
        """Log in (GET system/versions) and look the list up (GET lists/LIST_ID): one Probe each. The
        list is not looked up when the login failed (the answer would only repeat that)."""
        user = self.auth[0]
        try:
            login = self._call("GET", "system/versions")
        except RestUnavailable as exc:
            return [
                Probe("mailman-rest", False, f"{exc}: check mailman.rest_url and that Mailman's REST runner is up"),
                Probe("mailman-list", False, f"{list_address} not checked: Mailman's REST API is unreachable"),
            ]
        if login.status == 401:
            said = (
                f"{self.shown}/3.1/ refused the login of user {user!r} (HTTP 401): check mailman.rest_user "
                "and mailman.rest_password (or SECIRBOT_MAILMAN_REST_PASSWORD)"
            )
        elif login.status == 404:
            said = (
                f"{self.shown}/3.1/system/versions: HTTP 404: no Mailman 3 REST API 3.1 there; "
                "check mailman.rest_url (e.g. http://localhost:8001)"
            )
        elif login.status != 200:
            said = f"{self.shown}/3.1/system/versions answered HTTP {login.status}"
        else:
            version = (
                (login.body or {}).get("mailman_version", "Mailman") if isinstance(login.body, dict) else "Mailman"
            )
            said = f"logged in to {self.shown}/3.1/ as {user!r} ({version})"
        first = Probe("mailman-rest", login.status == 200, said)
        if not first.ok:
            return [first, Probe("mailman-list", False, f"{list_address} not checked: the REST login failed")]
        list_id = mailman_list_id(list_address)
        try:
            found = self._call("GET", f"lists/{list_id}")
        except RestUnavailable as exc:
            return [first, Probe("mailman-list", False, str(exc))]
        if found.status == 200:
            body = found.body if isinstance(found.body, dict) else {}
            return [
                first,
                Probe("mailman-list", True, f"{list_address} exists ({body.get('member_count', '?')} member(s))"),
            ]
        if found.status == 404:
            return [
                first,
                Probe(
                    "mailman-list",
                    False,
                    f"Mailman has no list {list_address} (HTTP 404 for "
                    f"lists/{list_id}): create it in Mailman or correct mailman.list",
                ),
            ]
        return [first, Probe("mailman-list", False, f"lists/{list_id} answered HTTP {found.status}")]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def rest_attempt(bot: Bot, row: sqlite3.Row) -> Attempt:
    """Outbox handler for a queued REST subscription: make the call, map the answer to an Attempt whose
    `after` records the request's Mailman state in the same transaction as the outbox row."""
    call = json.loads(row["payload"])
    if call.get("action") == "remove":
        return _removal_attempt(bot, row, call)
    target = json.loads(row["recipients"])
    request_id = row["request_id"]

    def record(status: str, action: str, **details: Any) -> None:
        bot.ledger.set_mailman_status(request_id, status, now=bot.now())
        bot.store.audit(action, at=bot.now(), request_id=request_id, outbox_id=row["id"], **details)

    try:
        answer = MailmanRest(bot.config.mailman).add_member(
            call["list_id"], call["address"], call.get("display_name", "")
        )
    except (RestUnavailable, ValueError) as exc:
        # The outbox turns this deferral into a failure once give_up_after has passed (Outbox._record);
        # then the request must not keep saying "queued".
        error = str(exc)
        last = bot.now() - from_iso(row["created_at"]) >= bot.rules.outbox.give_up_after
        return Attempt(
            deferred=target,
            error=error,
            after=(lambda: record("failed", "mailman-failed", error=error)) if last else None,
        )

    if answer.status == 201:
        return Attempt(delivered=target, after=lambda: record("member", "mailman-member", http=201))
    if answer.status == 202:  # Mailman still wants a confirmation: the pre_* flags were not honoured
        return Attempt(delivered=target, after=lambda: record("pending", "mailman-pending", http=202))
    if answer.status == 409:

        def conflict() -> None:
            record("conflict", "mailman-conflict", http=409, said=str(answer.body)[:300])
            bot.outbox.queue_mail(
                purpose="mailman-conflict",
                template="mailman_conflict.txt",
                context={
                    "address": call["address"],
                    "request_id": request_id,
                    "said": str(answer.body)[:300],
                    "list_address": bot.config.mailman.list,
                },
                to=[bot.secretariat],
                request_id=request_id,
            )

        return Attempt(delivered=target, after=conflict)
    return Attempt(
        failed=target,
        error=f"Mailman REST answered HTTP {answer.status}: {str(answer.body)[:300]}",
        after=lambda: record("failed", "mailman-failed", http=answer.status),
    )


def _removal_attempt(bot: Bot, row: sqlite3.Row, call: dict[str, Any]) -> Attempt:
    """Outbox handler for a queued REST removal (membership.remove): the roster follows Mailman's answer."""
    target = json.loads(row["recipients"])
    address = call["address"]

    def member() -> Any:
        return roster.on_list(bot.store, address)

    def removed(how: str) -> None:
        current = member()
        if current is not None:
            membership.confirmed(bot, current, how=how, actor=call.get("actor", "bot"))

    try:
        answer = MailmanRest(bot.config.mailman).remove_member(call["list_id"], address)
    except (RestUnavailable, ValueError) as exc:
        error = str(exc)
        return Attempt(deferred=target, error=error)
    if answer.status == 204:
        return Attempt(delivered=target, after=lambda: removed("Mailman REST: member deleted (HTTP 204)"))
    if answer.status == 404:
        return Attempt(delivered=target, after=lambda: removed("Mailman REST: not a member of the list (HTTP 404)"))

    def waiting() -> None:
        # 202: Mailman holds the removal for a confirmation or a moderator: still leaving; a person looks.
        current = member()
        bot.store.audit("mailman-remove-held", at=bot.now(), outbox_id=row["id"], address=address, http=answer.status)
        if current is not None:
            bot.outbox.queue_mail(
                purpose="removal-secretariat",
                template="removal_secretariat.txt",
                context=membership.notice_context(
                    bot, current, asked_by=call.get("asked_by", "someone"), reason=call.get("reason", "")
                ),
                to=[bot.secretariat],
                request_id=current.request_id,
            )

    if answer.status == 202:
        return Attempt(delivered=target, after=waiting)
    return Attempt(
        failed=target,
        error=f"Mailman REST answered HTTP {answer.status} to removing {address}: {str(answer.body)[:300]}",
        after=waiting,
    )


def check_pending(bot: Bot) -> dict[str, int]:
    """Accept pending subscriptions of addresses vetted here; report (and, if the rules say so, reject)
    the others. Each pending request is reported once."""
    config = bot.config.mailman
    client = MailmanRest(config)
    list_id = mailman_list_id(config.list)
    counts = {"accepted": 0, "reported": 0, "rejected": 0}
    for entry in client.pending_subscriptions(list_id):
        address, token = str(entry.get("email", "")), str(entry.get("token", ""))
        if not token:
            continue
        digest = token_digest(token)
        vetted = bot.ledger.latest_approved(address.lower())
        if vetted is not None:
            status = client.moderate(list_id, token, "accept")
            with bot.store.transaction():
                if status == 204:  # rest/sub_moderation.py: accepted = subscribed now
                    bot.ledger.set_mailman_status(vetted, "member", now=bot.now())
                bot.store.audit(
                    "mailman-moderation-accepted",
                    at=bot.now(),
                    request_id=vetted,
                    address=address,
                    token=digest,
                    http=status,
                )
            counts["accepted"] += 1
            continue
        seen = bot.store.one(
            "SELECT 1 FROM audit WHERE action = 'mailman-unvetted' AND details LIKE ?", (f'%"token": "{digest}"%',)
        )
        if seen is not None:
            continue
        reject = bot.rules.mailman.reject_unvetted
        rejected = client.moderate(list_id, token, "reject") if reject else None
        with bot.store.transaction():
            bot.store.audit(
                "mailman-unvetted", at=bot.now(), address=address, token=digest, rejected=bool(reject), http=rejected
            )
            bot.outbox.queue_mail(
                purpose="mailman-unvetted",
                template="mailman_unvetted.txt",
                context={
                    "address": address,
                    "display_name": entry.get("display_name") or "",
                    "when": str(entry.get("request_date", "")),
                    "rejected": bool(reject),
                    "list_address": config.list,
                    "bot": bot.bot_address,
                },
                to=[bot.secretariat],
            )
        counts["reported"] += 1
        counts["rejected"] += bool(reject)
    return counts


def compare_roster(bot: Bot) -> dict[str, int]:
    """Members added or removed in Mailman behind the bot's back show up (on `check_pending_every`).

    Mailman's REST answer is authenticated, unlike a notice by mail, so the roster follows it: a member
    gone from Mailman is `removed` (the one who was `leaving` is confirmed), and an address Mailman has
    that the roster does not is added as source `mailman` (its ccTLD inferred from its domain, else left
    empty for the Secretariat to place). A member whose subscription is still under way is left alone.
    The Secretariat hears of each change once."""
    config = bot.config.mailman
    found = MailmanRest(config).member_addresses(mailman_list_id(config.list))
    counts = {"gone": 0, "added": 0}
    with bot.store.transaction():
        gone, unknown = roster.found_in_mailman(bot.store, [address for address, _ in found])
        names = {address.lower(): name for address, name in found}
        removed, added = [], []
        for member in gone:
            status = None
            if member.request_id is not None:
                status = bot.ledger.mailman_status(member.request_id)
            settled = member.state is roster.MemberState.LEAVING or member.source is not roster.Source.ADMITTED
            if not (settled or status == "member"):
                continue  # approved, but Mailman has not made it a member yet (confirmation, moderation)
            membership.confirmed(bot, member, how="not a member in Mailman any more (Mailman REST roster)")
            removed.append(member.address)
        for address in unknown:
            roster.found_unvetted(bot.store, address, names.get(address.lower(), ""), now=bot.now())
            added.append(address)
        if removed or added:
            bot.store.audit("mailman-roster-compared", at=bot.now(), removed=removed, added=added)
            bot.outbox.queue_mail(
                purpose="mailman-roster",
                template="mailman_roster_changed.txt",
                context={"removed": removed, "added": added, "list_address": config.list, "bot": bot.bot_address},
                to=[bot.secretariat],
            )
    counts["gone"], counts["added"] = len(removed), len(added)
    return counts
