"""Who may approve for a ccTLD: the contacts IANA's Root Zone Database lists for it.

`names` says which names are ccTLDs, `whois` and `rdap` fetch and validate IANA's record, `delegation`
checks the root NS as a sanity signal, `resolver` ties them together with the store (snapshots, cache,
one query in flight per TLD) and `lookup_cmd` is the `secirbot lookup` command.
"""

from __future__ import annotations

from secirbot.iana.names import NotACcTLD, NotDelegated, TldName, all_cctlds, is_cctld, normalize_tld
from secirbot.iana.record import Approver, Contact, IanaRecord, Unusable

__all__ = [
    "Approver",
    "Contact",
    "IanaRecord",
    "NotACcTLD",
    "NotDelegated",
    "TldName",
    "Unusable",
    "all_cctlds",
    "is_cctld",
    "normalize_tld",
]
