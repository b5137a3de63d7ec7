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
import logging
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .config import MailmanConfig

log = logging.getLogger(__name__)


def list_id(list_address: str) -> str:
    """Mailman 3's list id: secir@lists.example.org -> secir.lists.example.org"""
    return list_address.replace("@", ".", 1)


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
    import requests

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
        # Imported here, as in iana/rdap: requests is ~60 ms of every start, and only these calls need it.
        import requests

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
        wanted = list_id(list_address)
        try:
            found = self._call("GET", f"lists/{wanted}")
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
                    f"lists/{wanted}): create it in Mailman or correct mailman.list",
                ),
            ]
        return [first, Probe("mailman-list", False, f"lists/{wanted} answered HTTP {found.status}")]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]
