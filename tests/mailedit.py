"""Editing real mail for tests: change the decoded text of a message's text/plain and text/html parts and
re-encode each with the charset, transfer encoding and parameters (format=flowed) it had, as the client
that wrote it would have."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable

Edit = Callable[[str], str]


def rewrite(raw: bytes, plain: Edit | None = None, html_edit: Edit | None = None) -> bytes:
    """The message with its text/plain and/or text/html parts edited (each edit must find its part)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    edits = {"text/plain": plain, "text/html": html_edit}
    done = set()
    for part in msg.walk():
        edit = edits.get(part.get_content_type())
        if part.is_multipart() or edit is None:
            continue
        params = {k: v for k, v in part.get_params()[1:] if k.lower() != "charset"}
        content = edit(part.get_content())
        charset = part.get_content_charset() or "us-ascii"
        cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        try:
            content.encode(charset)
        except UnicodeEncodeError:
            charset = "utf-8"  # what the client would have had to use for these characters
        if cte in ("7bit", "8bit") and not content.isascii():
            cte = "quoted-printable"
        part.set_content(content, subtype=part.get_content_subtype(), charset=charset, cte=cte, params=params)
        done.add(part.get_content_type())
    assert done == {kind for kind, edit in edits.items() if edit is not None}, "a part to edit is missing"
    return msg.as_bytes()


def swap(*pairs: tuple[str, str]) -> Edit:
    """Replace each old text (which must be there) once; a regex (DOTALL) when old starts with 're:'."""

    def edit(text: str) -> str:
        for old, new in pairs:
            if old.startswith("re:"):
                text, count = re.subn(old[3:], lambda _m, new=new: new, text, count=1, flags=re.DOTALL)
                assert count == 1, f"{old!r} not in the sample"
            else:
                assert old in text, f"{old!r} not in the sample"
                text = text.replace(old, new, 1)
        return text

    return edit
