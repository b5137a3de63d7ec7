"""secirbot.authenticity: From, our own Authentication-Results, and DKIM verified here with a test key.

Replies are built from a real client message (tests/messages, see README.md there), signed with dkimpy
using an RSA key made for this run; the public key is served by the injected DNS function, or, for
make_dnsfunc, by a small DNS server on localhost.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dkim.canonicalization import CanonicalizationPolicy
from dkim.crypto import parse_pem_private_key

from secirbot.authenticity import (
    DnsLookupError,
    SenderCheck,
    check_sender,
    is_aligned,
    make_dnsfunc,
)
from secirbot.config import DnsConfig
from secirbot.message import parse_mail
from secirbot.replies import Verdict, read_decision

MESSAGES = Path(__file__).parent / "messages"
OUR_ID = "mx.lists.example.org"
APPROVER = "admin@nic.nl"
SELECTOR = b"sel2025"
REPLY_TEXT = (
    "APPROVE\n\nOn Mon, 3 Mar 2025 at 10:00, SECIR join bot <join+tok@lists.example.org> wrote:\n\n"
    "> ##- Please type your reply above this line -##\n> Jane Doe asks to join SECIR for .NL.\n"
)

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE_PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
)
KEY_RECORD = b"v=DKIM1; k=rsa; p=" + base64.b64encode(
    KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
)
SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id"]


def reply(
    from_header: str = f"Registry Admin <{APPROVER}>",
    text: str = REPLY_TEXT,
    sample: str = "reply-gmail-web-multipart.eml",
) -> bytes:
    """A real reply (tests/messages; Gmail multipart by default) turned into an approver's answer, with CRLF
    line ends as it travels."""
    msg = email.message_from_bytes((MESSAGES / sample).read_bytes(), policy=email.policy.default)
    msg.replace_header("From", from_header)
    msg.replace_header("To", "join+abcdefghijklmnopqrstuvwxyz234567@lists.example.org")
    msg.replace_header("Subject", "Re: [SECIR] Approval request for .NL")
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            part.set_content(text, charset="us-ascii", cte="7bit")
        elif part.get_content_type() == "text/html":
            part.set_content(text.replace("\n", "<br>\n"), subtype="html", charset="us-ascii", cte="7bit")
    return msg.as_bytes(policy=email.policy.SMTP)


def signed(raw: bytes, domain: bytes = b"nic.nl", *, length: bool = False, algorithm: bytes = b"rsa-sha256") -> bytes:
    return (
        dkim.sign(
            raw,
            SELECTOR,
            domain,
            PRIVATE_PEM,
            include_headers=SIGNED_HEADERS,
            length=length,
            signature_algorithm=algorithm,
        )
        + raw
    )


def signed_without_from(raw: bytes, domain: bytes = b"nic.nl") -> bytes:
    """dkim.sign refuses to leave From unsigned; a sender's signer need not. Same steps, From left out."""
    signer = dkim.DKIM(raw)
    canon = CanonicalizationPolicy.from_c_value(b"relaxed/simple")
    signer.hasher = hashlib.sha256
    include = (b"to", b"subject", b"date", b"message-id")
    body_hash = base64.b64encode(hashlib.sha256(canon.canonicalize_body(signer.body)).digest())
    fields = [
        (b"v", b"1"),
        (b"a", b"rsa-sha256"),
        (b"c", b"relaxed/simple"),
        (b"d", domain),
        (b"s", SELECTOR),
        (b"h", b" : ".join(include)),
        (b"bh", body_hash),
        (b"b", b"0" * 60),
    ]
    value = signer.gen_header(fields, include, canon, b"DKIM-Signature", parse_pem_private_key(PRIVATE_PEM))
    return b"DKIM-Signature: " + value + raw


def with_authres(raw: bytes, *values: str) -> bytes:
    """Authentication-Results headers prepended, the first value top-most, as receiving servers add them."""
    return b"".join(f"Authentication-Results: {v}\r\n".encode() for v in values) + raw


def keys_for(*domains: str) -> Callable[[bytes], bytes]:
    records = {SELECTOR + b"._domainkey." + d.encode() + b".": KEY_RECORD for d in domains}
    return lambda name: records.get(name, b"")


def check(
    raw: bytes,
    *,
    require: str = "dkim",
    expected: str = APPROVER,
    authserv_id: str | None = OUR_ID,
    dnsfunc: Callable[[bytes], bytes] | None = None,
) -> SenderCheck:
    return check_sender(
        parse_mail(raw),
        expected_from=expected,
        authserv_id=authserv_id,
        require=require,
        dnsfunc=dnsfunc if dnsfunc is not None else keys_for("nic.nl"),
    )


# --- passing ----------------------------------------------------------------------------------------------


def test_signed_reply_from_the_approver_passes_dkim() -> None:
    result = check(signed(reply()))
    assert result == SenderCheck(
        ok=True,
        failure=None,
        checks={"from": "matches", "authres": f"no Authentication-Results from {OUR_ID}", "dkim": "pass d=nic.nl"},
    )


def test_from_comparison_ignores_case_and_display_name() -> None:
    result = check(signed(reply('"Admin, .NL Registry" <Admin@NIC.nl>')), expected="ADMIN@nic.NL")
    assert result.ok, result


def test_require_none_without_any_authentication_results_passes() -> None:
    result = check(reply(), require="none", dnsfunc=keys_for())
    assert (result.ok, result.checks["from"]) == (True, "matches")
    assert "dkim" not in result.checks


def test_require_none_without_authserv_id_trusts_no_header() -> None:
    raw = with_authres(reply(), f"{OUR_ID}; dmarc=fail header.from=nic.nl")
    result = check(raw, require="none", authserv_id=None)
    assert result.ok
    assert result.checks["authres"] == "not trusted: no authserv_id configured"


def test_require_dmarc_accepts_our_dmarc_pass() -> None:
    raw = with_authres(
        reply(),
        f"{OUR_ID}; spf=pass smtp.mailfrom=nic.nl; dkim=pass header.d=nic.nl; "
        "dmarc=pass (p=reject dis=none) header.from=nic.nl",
    )
    result = check(raw, require="dmarc", dnsfunc=keys_for())
    assert result.ok
    assert result.checks["authres"] == "dmarc=pass header.from=nic.nl"


def test_require_dmarc_falls_back_to_an_aligned_dkim_signature() -> None:
    result = check(signed(reply()), require="dmarc")
    assert result.ok
    assert result.checks["dkim"] == "pass d=nic.nl"


def test_parent_domain_signature_aligns_with_a_subdomain_from() -> None:
    raw = signed(reply("Admin <admin@mail.nic.nl>"), b"nic.nl")
    assert check(raw, expected="admin@mail.nic.nl").ok


# --- From -------------------------------------------------------------------------------------------------


def test_forwarded_by_someone_else_fails_even_with_a_good_signature() -> None:
    result = check(signed(reply("Colleague <colleague@nic.nl>")))
    assert not result.ok
    assert result.failure == f"From colleague@nic.nl is not the approver's address {APPROVER}"
    assert "dkim" not in result.checks


def test_display_name_holding_the_approvers_address_is_not_the_address() -> None:
    raw = signed(reply(f'"{APPROVER}" <evil@evil.example>'), b"evil.example")
    result = check(raw, dnsfunc=keys_for("evil.example"))
    assert not result.ok
    assert result.checks["from"] == f"evil@evil.example is not {APPROVER}"


def test_encoded_word_display_name_holding_the_approvers_address_is_not_the_address() -> None:
    # RFC 2047 decoding must come after address parsing, or "<admin@nic.nl>" appears out of a display name.
    # Set as raw bytes: the stdlib's header folding would decode the encoded word when serialising.
    genuine = reply("Evil <evil@evil.example>")
    raw = signed(
        genuine.replace(
            b"From: Evil <evil@evil.example>", b"From: =?utf-8?q?=3Cadmin=40nic.nl=3E?= <evil@evil.example>", 1
        ),
        b"evil.example",
    )
    result = check(raw, require="none", dnsfunc=keys_for("evil.example"))
    assert not result.ok
    assert result.checks["from"] == f"evil@evil.example is not {APPROVER}"


@pytest.mark.parametrize(
    "from_header",
    [
        f"{APPROVER}, evil@evil.example",
        f"{APPROVER} <evil@evil.example>",  # parsers disagree about which one is meant
        f"Approvers: {APPROVER}, evil@evil.example;",
        "undisclosed-recipients:;",
        "admin",
    ],
)
def test_from_must_name_exactly_one_address(from_header: str) -> None:
    result = check(signed(reply(from_header)), require="none")
    assert not result.ok
    assert result.failure == "the From header does not name exactly one address"


def test_two_from_headers_fail() -> None:
    raw = signed(reply())
    header_end = raw.index(b"\r\n\r\n")
    raw = raw[:header_end] + b"\r\nFrom: evil@evil.example" + raw[header_end:]
    result = check(raw, require="none")
    assert (result.ok, result.failure) == (False, "2 From headers")


# --- Authentication-Results -------------------------------------------------------------------------------


def test_our_dmarc_fail_rejects_whatever_else_passes() -> None:
    raw = with_authres(signed(reply()), f"{OUR_ID}; dkim=pass header.d=nic.nl; dmarc=fail header.from=nic.nl")
    for require in ("none", "dmarc", "dkim"):
        result = check(raw, require=require)
        assert not result.ok, require
        assert result.failure == "our server's Authentication-Results: dmarc=fail header.from=nic.nl"


@pytest.mark.parametrize("verdict", ["quarantine", "reject"])
def test_dmarc_policy_results_that_mean_fail(verdict: str) -> None:
    raw = with_authres(reply(), f"{OUR_ID}; dmarc={verdict} header.from=nic.nl")
    assert not check(raw, require="none").ok


def test_dmarc_fail_with_a_comment_claiming_pass_is_a_fail() -> None:
    raw = with_authres(reply(), f"{OUR_ID}; dmarc=fail (previous dmarc=pass) header.from=nic.nl")
    result = check(raw, require="none")
    assert not result.ok
    assert result.checks["authres"] == "dmarc=fail header.from=nic.nl"


def test_authentication_results_of_another_server_are_ignored() -> None:
    raw = with_authres(reply(), "mx.evil.example; dkim=pass header.d=nic.nl; dmarc=pass header.from=nic.nl")
    result = check(raw, require="dmarc", dnsfunc=keys_for())
    assert not result.ok
    assert result.checks["authres"] == f"no Authentication-Results from {OUR_ID}"
    assert result.failure == "neither a DMARC pass from our server nor an aligned DKIM signature"


def test_lower_header_claiming_our_id_cannot_override_a_fail_above() -> None:
    raw = with_authres(reply(), f"{OUR_ID}; dmarc=fail header.from=nic.nl", f"{OUR_ID}; dmarc=pass header.from=nic.nl")
    assert not check(raw, require="dmarc", dnsfunc=keys_for()).ok


def test_lower_header_claiming_our_id_cannot_add_a_pass() -> None:
    raw = with_authres(reply(), f"{OUR_ID}; spf=pass smtp.mailfrom=nic.nl", f"{OUR_ID}; dmarc=pass header.from=nic.nl")
    result = check(raw, require="dmarc", dnsfunc=keys_for())
    assert not result.ok
    assert result.checks["authres"] == f"no dmarc result from {OUR_ID}"


def test_our_header_below_a_foreign_one_is_still_ours() -> None:
    raw = with_authres(
        reply(), "mx.evil.example; dmarc=fail header.from=nic.nl", f"{OUR_ID}; dmarc=pass header.from=nic.nl"
    )
    assert check(raw, require="dmarc", dnsfunc=keys_for()).ok


def test_dmarc_pass_for_another_domain_is_no_pass() -> None:
    raw = with_authres(reply(), f"{OUR_ID}; dmarc=pass header.from=evil.example")
    assert not check(raw, require="dmarc", dnsfunc=keys_for()).ok


def test_unreadable_trusted_header_fails_closed() -> None:
    raw = with_authres(reply(), f"{OUR_ID}; dmarc=")
    result = check(raw, require="none")
    assert not result.ok
    assert result.checks["authres"].startswith(f"unreadable Authentication-Results from {OUR_ID}")


# --- DKIM -------------------------------------------------------------------------------------------------


def test_body_length_limit_lets_approve_be_appended_and_is_refused() -> None:
    # An Apple Mail reply (text/plain only) whose signature's l= covers only its empty body.
    genuine = signed(reply(text="\n", sample="reply-apple-mail-2.eml"), length=True)
    forged = genuine + b"APPROVE\r\n"
    # What dkimpy and the reader make of it: a valid signature, and an approval.
    assert dkim.verify(forged, dnsfunc=lambda name, timeout=5: keys_for("nic.nl")(name))
    assert read_decision(parse_mail(forged)).verdict is Verdict.APPROVE
    result = check(forged)
    assert not result.ok
    assert result.checks["dkim"] == "fail d=nic.nl: l= limits the signed body, text may be appended"


def test_signature_not_covering_from_is_refused() -> None:
    raw = signed_without_from(reply())
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: keys_for("nic.nl")(name))  # dkimpy accepts it
    result = check(raw)
    assert not result.ok
    assert result.checks["dkim"] == "fail d=nic.nl: From is not signed"


def test_signature_of_an_unaligned_domain_is_refused() -> None:
    result = check(signed(reply(), b"evil.example"), dnsfunc=keys_for("evil.example"))
    assert not result.ok
    assert result.checks["dkim"] == "fail d=evil.example: not aligned with nic.nl"


def test_public_suffix_signature_never_aligns() -> None:
    raw = signed(reply("Admin <admin@registry.co.uk>"), b"co.uk")
    result = check(raw, expected="admin@registry.co.uk", dnsfunc=keys_for("co.uk"))
    assert not result.ok
    assert result.checks["dkim"] == "fail d=co.uk: not aligned with registry.co.uk"


@pytest.mark.parametrize(
    "signing, author, aligned",
    [
        ("nic.nl", "nic.nl", True),
        ("NIC.NL.", "nic.nl", True),
        ("nic.nl", "mail.nic.nl", True),
        ("mail.nic.nl", "nic.nl", True),
        ("a.nic.nl", "b.nic.nl", True),
        ("nl", "nic.nl", False),
        ("evil.example", "nic.nl", False),
        ("evilnic.nl", "nic.nl", False),
        ("co.uk", "registry.co.uk", False),
        ("other.co.uk", "registry.co.uk", False),
        ("co.uk", "co.uk", True),  # strict equality, even of a public suffix
        ("nic.xn--p1ai", "nic.рф", True),
        ("", "nic.nl", False),
    ],
)
def test_is_aligned(signing: str, author: str, aligned: bool) -> None:
    assert is_aligned(signing, author) is aligned


def test_body_changed_after_signing_fails() -> None:
    raw = signed(reply(text="DENY\nNot ours.\n")).replace(b"DENY\r\nNot ours.", b"APPROVE\r\n\r\nOk.")
    result = check(raw)
    assert not result.ok
    assert result.checks["dkim"].startswith("fail d=nic.nl: ValidationError: body hash mismatch")


def test_from_changed_after_signing_fails() -> None:
    raw = signed(reply("Colleague <colleague@nic.nl>")).replace(b"colleague@nic.nl", APPROVER.encode())
    assert not check(raw).ok


def test_rsa_sha1_is_refused() -> None:
    result = check(signed(reply(), algorithm=b"rsa-sha1"))
    assert not result.ok
    assert result.checks["dkim"] == "fail d=nic.nl: rsa-sha1 (RFC 8301)"


def test_one_good_signature_among_bad_ones_is_enough() -> None:
    raw = signed(signed(reply(), b"evil.example"), b"nic.nl")
    raw = signed(raw, b"nic.nl", length=True)
    result = check(raw, dnsfunc=keys_for("nic.nl", "evil.example"))
    assert result.ok
    assert result.checks["dkim"] == "pass d=nic.nl"


def test_no_signature_or_no_key_fails_with_a_reason() -> None:
    assert check(reply()).checks["dkim"] == "no DKIM signature"
    result = check(signed(reply()), dnsfunc=keys_for())
    assert result.checks["dkim"].startswith("fail d=nic.nl: missing public key")


def test_dns_errors_do_not_escape() -> None:
    def broken(name: bytes) -> bytes:
        raise DnsLookupError("SERVFAIL")

    result = check(signed(reply()), dnsfunc=broken)
    assert not result.ok
    assert result.checks["dkim"] == "fail d=nic.nl: DnsLookupError: SERVFAIL"


def test_garbage_signature_does_not_escape() -> None:
    raw = b"DKIM-Signature: v=1; a=rsa-sha256; d=nic.nl; s=x; h=from; bh=%%%; b=!!!\r\n" + reply()
    result = check(raw)
    assert not result.ok
    assert result.checks["dkim"].startswith("fail d=nic.nl: ValidationError")


def test_without_dns_function_dkim_cannot_pass() -> None:
    result = check_sender(
        parse_mail(signed(reply())), expected_from=APPROVER, authserv_id=OUR_ID, require="dkim", dnsfunc=None
    )
    assert (result.ok, result.checks["dkim"]) == (False, "not checked: no DNS function for DKIM keys")


def test_unknown_require_fails_closed() -> None:
    result = check(signed(reply()), require="maybe")
    assert (result.ok, result.failure) == (False, "unknown authentication.require 'maybe'")


# --- make_dnsfunc against a DNS server on localhost ---------------------------------------------------------


class TinyDns:
    """Answers TXT queries from a dict over UDP on 127.0.0.1; NXDOMAIN for everything else."""

    def __init__(self, records: dict[str, list[bytes]]):
        self.records = records
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            name = query.question[0].name
            strings = self.records.get(name.to_text())
            if strings is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                rdata = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings)
                response.answer.append(dns.rrset.from_rdata(name, 300, rdata))
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def tiny_dns() -> Iterator[TinyDns]:
    # A 2048-bit key record is longer than one TXT string (255 bytes): served split, as in real zones.
    chunks = [KEY_RECORD[i : i + 255] for i in range(0, len(KEY_RECORD), 255)]
    server = TinyDns({"sel2025._domainkey.nic.nl.": chunks})
    yield server
    server.close()


def test_make_dnsfunc_serves_dkim_keys_through_the_configured_resolver(tiny_dns: TinyDns) -> None:
    lookup = make_dnsfunc(DnsConfig(nameservers=("127.0.0.1",), port=tiny_dns.port, timeout_seconds=2))
    assert lookup(b"sel2025._domainkey.nic.nl.") == KEY_RECORD
    assert lookup(b"nothing._domainkey.nic.nl.") == b""
    assert check(signed(reply()), dnsfunc=lookup).ok


def test_make_dnsfunc_unreachable_server_is_a_lookup_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    lookup = make_dnsfunc(DnsConfig(nameservers=("127.0.0.1",), port=port, timeout_seconds=1))
    with pytest.raises(DnsLookupError):
        lookup(b"sel2025._domainkey.nic.nl.")


def test_make_dnsfunc_disabled() -> None:
    lookup = make_dnsfunc(DnsConfig(enabled=False))
    with pytest.raises(DnsLookupError, match="disabled"):
        lookup(b"sel2025._domainkey.nic.nl.")
    result = check(signed(reply()), dnsfunc=lookup)
    assert result.checks["dkim"] == "fail d=nic.nl: DnsLookupError: DNS lookups are disabled (dns.enabled is false)"


def test_a_fail_anywhere_in_our_header_outweighs_a_pass() -> None:
    raw = with_authres(reply(), f"{OUR_ID}; dmarc=pass header.from=nic.nl; dmarc=FAIL header.from=NIC.nl")
    result = check(raw, require="dmarc", dnsfunc=keys_for())
    assert not result.ok
    assert result.checks["authres"] == "dmarc=pass header.from=nic.nl; dmarc=fail header.from=nic.nl"
