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
    pattern = re.compile(
        rf"{re.escape(local)}\+({_TOKEN_CHARS}{{{TOKEN_LENGTH}}})@{re.escape(domain)}", re.IGNORECASE)
    for address in recipients:
        match = pattern.fullmatch(address.strip())
        if match:
            return match.group(1).lower()
    return None
