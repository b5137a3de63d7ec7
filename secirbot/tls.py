"""The TLS client context that IMAP and SMTP share: built once per setting and process."""

from __future__ import annotations

import functools
import ssl


@functools.lru_cache(maxsize=8)
def tls_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    """One context per setting and process: loading the system's CA store costs ~50 ms each time."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
