#!/usr/bin/env python3
"""Derive the RDAP fixtures in this folder from the real whois records in ../whois (see ../README.md).

No archived rdap.iana.org answer for a TLD exists, so these are DERIVED: the content (manager, contacts,
name servers, DS, dates) is copied from the whois record named in each output's `remarks`, laid out as an
RFC 9083 domain object in the style of the one real IANA RDAP answer we have (example.com, 2024-04-27:
`entities` with `roles` and jCard `vcardArray`, `events`, `links`, `notices`, `rdapConformance`,
`secureDNS`, `status`). The reader below is deliberately independent of secirbot's whois parser.

    python tests/iana/data/rdap/derive.py     # rewrites the *.json files next to this script
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
WHOIS = HERE.parent / "whois"

# output name -> whois fixture it is derived from
DERIVED = {
    "nl.json": "whois-nl.txt",
    "xn--p1ai.json": "whois-xn--p1ai.txt",
    "fi.json": "whois-fi.txt",
    "jo.json": "whois-jo.txt",
    "kr.json": "sample-kr-2020.mime",
    "mx.json": "whois-mx.txt",
    "fr.json": "whois-fr.txt",
    "me.json": "whois-me.txt",
    "eh-not-assigned.json": "sample-eh-not-assigned.txt",
    "xn--mgb9awbf-no-email.json": "history-xn--mgb9awbf-empty-contacts.txt",
}


def read_whois(text: str) -> tuple[dict[str, list[str]], list[tuple[str, dict[str, list[str]]]]]:
    if text.startswith("MIME-Version:"):
        text = text.split("\r\n\r\n", 1)[1]
    top: dict[str, list[str]] = {}
    contacts: list[tuple[str, dict[str, list[str]]]] = []
    block: dict[str, list[str]] | None = None
    for line in text.lstrip("\ufeff").splitlines():
        match = re.match(r"^([a-z-]+):\s*(.*?)\s*$", line)
        if not match:
            continue
        key, value = match.groups()
        if key == "contact":
            block = {}
            contacts.append((value, block))
        elif block is not None and key in ("name", "organisation", "address", "phone", "fax-no", "e-mail"):
            block.setdefault(key, []).append(value)
        else:
            block = None
            top.setdefault(key, []).append(value)
    return top, contacts


def vcard(fn: str, org: list[str], address: list[str], phone: list[str], fax: list[str], email: list[str]) -> list:
    props: list[list] = [["version", {}, "text", "4.0"], ["fn", {}, "text", fn]]
    if org:
        props.append(["org", {}, "text", ", ".join(org)])
    if address:
        props.append(["adr", {"label": "\n".join(address)}, "text", ["", "", "", "", "", "", ""]])
    props += [["tel", {"type": "voice"}, "uri", f"tel:{p.replace(' ', '-')}"] for p in phone if p]
    props += [["tel", {"type": "fax"}, "uri", f"tel:{p.replace(' ', '-')}"] for p in fax if p]
    props += [["email", {}, "text", e] for e in email if e]
    return ["vcard", props]


def derive(whois_name: str) -> dict:
    top, contacts = read_whois((WHOIS / whois_name).read_bytes().decode("utf-8"))
    domain = top["domain"][0]
    ldh = top.get("domain-ace", [domain])[0].lower()
    entities = [
        {
            "objectClassName": "entity",
            "roles": ["registrant"],
            "vcardArray": vcard(", ".join(top.get("organisation", [])), [], top.get("address", []), [], [], []),
        }
    ]
    for role, fields in contacts:
        entities.append(
            {
                "objectClassName": "entity",
                "roles": [role],
                "vcardArray": vcard(
                    ", ".join(fields.get("name", [])) or ", ".join(fields.get("organisation", [])),
                    fields.get("organisation", []),
                    fields.get("address", []),
                    fields.get("phone", []),
                    fields.get("fax-no", []),
                    fields.get("e-mail", []),
                ),
            }
        )
    nameservers = []
    for line in top.get("nserver", []):
        host, *addresses = line.split()
        nameservers.append(
            {
                "objectClassName": "nameserver",
                "ldhName": host.lower(),
                "ipAddresses": {"v4": [a for a in addresses if ":" not in a], "v6": [a for a in addresses if ":" in a]},
            }
        )
    ds = []
    for line in top.get("ds-rdata", []):
        tag, alg, dtype, digest = line.split()
        ds.append({"keyTag": int(tag), "algorithm": int(alg), "digestType": int(dtype), "digest": digest})
    events = [
        {"eventAction": action, "eventDate": f"{top[key][0]}T00:00:00+00:00"}
        for key, action in (("changed", "last changed"), ("created", "registration"))
        if top.get(key)
    ]
    obj: dict = {
        "entities": entities,
        "events": events,
        "ldhName": ldh,
        "links": [
            {
                "href": f"https://rdap.iana.org/domain/{ldh}",
                "rel": "self",
                "type": "application/rdap+json",
                "value": f"https://rdap.iana.org/domain/{ldh}",
            }
        ],
        "nameservers": nameservers,
        "notices": [
            {
                "description": ["Terms of Service"],
                "title": "Terms of Service",
                "links": [{"href": "https://www.icann.org/privacy/tos", "rel": "alternate", "type": "text/html"}],
            }
        ],
        "objectClassName": "domain",
        "rdapConformance": ["rdap_level_0"],
        "remarks": [
            {
                "title": "DERIVED TEST FIXTURE",
                "description": [
                    f"Derived by tests/iana/data/rdap/derive.py from the real whois record "
                    f"tests/iana/data/whois/{whois_name}; not an answer captured from IANA."
                ],
            }
        ],
        "secureDNS": {"delegationSigned": bool(ds), **({"dsData": ds} if ds else {})},
        "status": [s.lower() for s in top.get("status", ["active"])],
    }
    if ldh.startswith("xn--"):
        obj["unicodeName"] = domain
    return obj


def main() -> None:
    for out, source in DERIVED.items():
        (HERE / out).write_text(json.dumps(derive(source), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"{out} <- {source}")


if __name__ == "__main__":
    main()
