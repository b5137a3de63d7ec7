"""Approver tokens: minting, the reply address that carries one, finding one in an inbound message.

A token is 160 random bits in lower-case base32 (mail software may lower-case a local part, so the
alphabet is case-insensitive). It travels only in the reply address `bot+TOKEN@domain` of the one approval
request it was minted for; the store keeps only its SHA-256, so a copy of the database holds no live token.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from secirbot.message import InboundMail

TOKEN_BYTES = 20
TOKEN_LENGTH = 32  # base32 characters for 20 bytes, no padding
_TOKEN_CHARS = "[a-z2-7]"


def mint() -> str:
    return base64.b32encode(secrets.token_bytes(TOKEN_BYTES)).decode("ascii").lower().rstrip("=")


def digest(token: str) -> str:
    return hashlib.sha256(token.lower().encode("ascii")).hexdigest()


def reply_address(bot_address: str, token: str) -> str:
    local, domain = bot_address.rsplit("@", 1)
    return f"{local}+{token}@{domain}"


def find_token(recipients: Iterable[str], bot_address: str) -> str | None:
    """The token of the first recipient address of the form bot+TOKEN@domain, lower-cased, else None."""
    local, domain = bot_address.rsplit("@", 1)
    pattern = re.compile(rf"{re.escape(local)}\+({_TOKEN_CHARS}{{{TOKEN_LENGTH}}})@{re.escape(domain)}", re.IGNORECASE)
    for address in recipients:
        match = pattern.fullmatch(address.strip())
        if match:
            return match.group(1).lower()
    return None


@dataclass(frozen=True)
class ReplyToken:
    """Where a reply's token was read, so that the sender check can ask whether that header is signed."""

    token: str | None
    header: str | None  # the header it came from ('To', 'Cc' or the envelope header)
    trusted_header: bool  # True: written by our own receiving server (imap.envelope_header)
    problem: str | None = None  # why no token is taken although one is there (several, repeated header)


def reply_token(mail: InboundMail, bot_address: str, envelope_header: str | None) -> ReplyToken:
    """The token that addresses this reply, read from one place only.

    With `envelope_header` (the envelope recipient our receiving server records, e.g. Delivered-To), the
    top-most copy of that header, which our server wrote; anything below it came with the message. Without
    it, To and Cc, each of which must appear at most once, naming one token at most: an unsigned To
    prepended to a DKIM-signed approval must not re-aim it at another request (issue: first hit of six
    headers won). Delivered-To / X-Original-To are never read unless configured: anyone can write them."""
    if envelope_header:
        values = mail.message.get_all(envelope_header) or []
        if not values:
            return ReplyToken(None, None, True)
        found = find_token(mail.addresses_in_value(values[:1]), bot_address)
        return ReplyToken(found, envelope_header if found else None, True)
    seen: dict[str, str] = {}
    for name in ("To", "Cc"):
        token = find_token(mail.addresses_in(name), bot_address)
        if token is None:
            continue
        if len(mail.message.get_all(name) or []) > 1:
            return ReplyToken(None, None, False, f"{name} appears more than once")
        seen.setdefault(token, name)
        for address in mail.addresses_in(name):
            other = find_token([address], bot_address)
            if other is not None and other != token:
                return ReplyToken(None, None, False, f"{name} names more than one token address")
    if len(seen) > 1:
        return ReplyToken(None, None, False, "To and Cc name different token addresses")
    if not seen:
        return ReplyToken(None, None, False)
    token, header = next(iter(seen.items()))
    return ReplyToken(token, header, False)
