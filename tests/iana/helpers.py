"""Helpers shared by the IANA tests: where the data is and which local server answers what.

Which TLD answers what (all real records from ./data/whois unless said otherwise, see data/README.md):
usable ones under their own name; the not-usable kinds under ccTLDs from the packaged list so that
`lookup` gets as far as asking: gt = error text, ad = empty, bh = 0 objects, tk = "Domain tk. not found.",
xn--node = status NEW, gw = pre-2010 format, si = truncated, xn--mgb9awbf = contact blocks without fields;
de = NL's record (wrong domain); eh = Not assigned. RDAP (derived fixtures) answers for nl, xn--p1ai, fi,
jo, kr, mx, fr, me, and 404 for the rest.
"""

from __future__ import annotations

from pathlib import Path

from secirbot.iana.whois import decode_answer

DATA = Path(__file__).resolve().parent / "data"

WHOIS_FILES = {
    "nl": "whois-nl.txt",
    "xn--p1ai": "whois-xn--p1ai.txt",
    "fi": "whois-fi.txt",
    "jo": "whois-jo.txt",
    "kr": "sample-kr-2020.mime",
    "mx": "whois-mx.txt",
    "cc": "whois-cc.txt",
    "tl": "whois-tl.txt",
    "fr": "whois-fr.txt",
    "pm": "whois-pm.txt",
    "in": "whois-in.txt",
    "xn--h2brj9c": "whois-xn--h2brj9c.txt",
    "ax": "whois-ax.txt",
    "me": "whois-me.txt",
    "is": "whois-is.txt",
    "va": "whois-va.txt",
    "xn--mgberp4a5d4ar": "whois-xn--mgberp4a5d4ar.txt",
    "xn--fiqs8s": "whois-xn--fiqs8s.txt",
    "be": "sample-be-bom.txt",
    "gt": "history-gt-error.txt",
    "ad": "history-ad-empty.txt",
    "bh": "history-bh-0-objects.txt",
    "tk": "history-tk-not-found.txt",
    "xn--node": "history-xn--node-new.txt",
    "gw": "history-gw-old-format-latin1.txt",
    "si": "history-si-truncated.txt",
    "xn--mgb9awbf": "history-xn--mgb9awbf-empty-contacts.txt",
    "de": "whois-nl.txt",
    "eh": "sample-eh-not-assigned.txt",
}
RDAP_FILES = {tld: f"{tld}.json" for tld in ("nl", "xn--p1ai", "fi", "jo", "kr", "mx", "fr", "me")}


def whois_bytes(name: str) -> bytes:
    """A fixture's bytes as a whois server would send them (a .mime capture loses its MIME headers)."""
    data = (DATA / "whois" / name).read_bytes()
    if name.endswith(".mime"):
        data = data.split(b"\r\n\r\n", 1)[1]
    return data


def whois_text(name: str) -> str:
    return decode_answer(whois_bytes(name))


def rdap_text(name: str) -> str:
    return (DATA / "rdap" / name).read_text(encoding="utf-8")
