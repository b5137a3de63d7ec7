"""`secirbot check --connect`: every service outside the bot that it depends on, probed at once.

Owns the probes and their report, one line each (`ok|FAIL|skip  name  detail`): IMAP login and folders,
SMTP, a probe mail to the bot's `+probe` sub-address that must arrive in the bot's own mailbox, Mailman's
REST API (when `mailman.rest_url` is set), IANA whois and RDAP at the configured endpoints, and the DNS
resolver; and the warning about what a missing `authentication.authserv_id` means, with what the probe
mail showed of our receiving server. The probes run in parallel threads, each with a short timeout, so that
one silent server costs its timeout once and the others still report.

The probe mail must never become a request, even when a running bot fetches it before the probe deletes
it: it comes From the bot address and carries our loop header, which `classify` rule 2 takes as our own
mail (AUTOMATED "own-mail": recorded, filed, never answered). It is found by its Message-ID, in the bot's
folder or (taken by a running bot already) in the processed folder, and deleted there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email
import email.policy
import email.utils
import re
import secrets
import smtplib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, Literal, TextIO

from .compose import LOOP_HEADER
from .tokens import reply_address

if TYPE_CHECKING:
    from .config import Config
    from .iana.names import TldName
    from .mailbox import Mailbox
    from .rules import Rules

Status = Literal["ok", "FAIL", "skip"]

DEFAULT_TIMEOUT = 5  # seconds per network operation; `check --connect --timeout N`
MAIL_WAIT_FACTOR = 3  # the probe mail may take this many timeouts to arrive (MTA queues, filters)
PROBE_DETAIL = "probe"  # the sub-address: join+probe@...
PROBE_HEADER = "X-Secirbot-Probe"
SANDBOX = "no imap.host configured (sandbox mode): `secirbot run` starts a local mailbox instead"


@dataclass(frozen=True)
class ProbeResult:
    status: Status
    name: str
    detail: str
    authserv_ids: tuple[str, ...] = ()  # probe-mail only: the authserv-ids of its Authentication-Results


def line(result: ProbeResult) -> str:
    return f"{result.status:<4}  {result.name:<12}  {result.detail}"


def probe_address(bot_address: str) -> str:
    """bot+probe@domain: the same form as the reply addresses (tokens.reply_address), which must arrive."""
    return reply_address(bot_address, PROBE_DETAIL)


def probe_message(config: Config, probe_id: str) -> bytes:
    """The probe mail: From the bot, our loop header, a Message-ID naming `probe_id`."""
    bot = config.addresses.bot
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = email.utils.formataddr((config.addresses.bot_name, bot))
    msg["To"] = probe_address(bot)
    msg["Subject"] = f"secirbot check --connect: probe {probe_id}"
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Message-ID"] = probe_message_id(bot, probe_id)
    msg["Auto-Submitted"] = "auto-generated"
    msg[LOOP_HEADER] = bot
    msg[PROBE_HEADER] = probe_id
    msg.set_content(
        f"`secirbot check --connect` sent this to see that mail for {probe_address(bot)} reaches the bot's\n"
        "mailbox. It deletes it again once it arrived; the bot ignores it (it is its own mail).\n"
    )
    return msg.as_bytes()


def probe_message_id(bot_address: str, probe_id: str) -> str:
    return f"<secirbot-probe.{probe_id}@{bot_address.rsplit('@', 1)[1]}>"


# --- running them ------------------------------------------------------------------------------------


ORDER = (
    "imap",
    "imap-folders",
    "smtp",
    "probe-mail",
    "mailman-rest",
    "mailman-list",
    "iana-whois",
    "iana-rdap",
    "dns",
)


def run_probes(config: Config, rules: Rules, timeout: int = DEFAULT_TIMEOUT) -> list[ProbeResult]:
    """Every probe, in parallel threads; the results in the fixed ORDER, whichever finished first."""
    # The probe mail goes in the IMAP probe's thread, on its session: two logins at once would race each
    # other creating Processed and Failed on a fresh mailbox, and a failed login fails both anyway.
    probes: list[tuple[tuple[str, ...], Callable[[], list[ProbeResult]]]] = [
        (("imap", "imap-folders", "probe-mail"), lambda: probe_imap(config, timeout)),
        (("smtp",), lambda: probe_smtp(config, timeout)),
        (("mailman-rest", "mailman-list"), lambda: probe_mailman(config, timeout)),
        (("iana-whois",), lambda: probe_whois(config, rules, timeout)),
        (("iana-rdap",), lambda: probe_rdap(config, rules, timeout)),
        (("dns",), lambda: probe_dns(config, rules, timeout)),
    ]
    # Each probe bounds its own waiting with `timeout`; this ceiling only keeps a probe that is slow one
    # operation after another (a server answering byte by byte) from holding the whole report.
    ceiling = timeout * (MAIL_WAIT_FACTOR + 4)
    pool = ThreadPoolExecutor(max_workers=len(probes), thread_name_prefix="secirbot-probe")
    futures: list[Future[list[ProbeResult]]] = [pool.submit(func) for _, func in probes]
    wait_all(futures, timeout=ceiling)
    results: list[ProbeResult] = []
    for (names, _), future in zip(probes, futures, strict=True):
        if not future.done():
            results.extend(ProbeResult("FAIL", name, f"no result within {ceiling} s") for name in names)
            continue
        try:
            results.extend(future.result())
        except Exception as exc:  # a surprise in one client library must not hide the other probes
            results.extend(ProbeResult("FAIL", name, f"{type(exc).__name__}: {exc}") for name in names)
    pool.shutdown(wait=False, cancel_futures=True)
    return sorted(results, key=lambda r: ORDER.index(r.name))


def report(config: Config, rules: Rules, results: list[ProbeResult], out: TextIO) -> bool:
    """Print one line per probe, then the warnings; True when no probe failed."""
    for result in results:
        print(line(result), file=out)
    for warning in authserv_warnings(config, rules, results):
        print(f"warning: {warning}", file=out)
    return all(r.status != "FAIL" for r in results)


def authserv_warnings(config: Config, rules: Rules, results: list[ProbeResult]) -> list[str]:
    """A production configuration without `authentication.authserv_id`: what that leaves to the reply
    token, as secirbot.authenticity and secirbot.dmarc_policy decide, and the authserv-id the probe mail
    arrived with, which may be the one to set."""
    auth = rules.authentication
    if config.sandbox or auth.authserv_id:
        return []
    text = (
        "authentication.authserv_id is not set, so no Authentication-Results header on inbound mail is "
        "trusted (anyone can write one) and a DMARC result is never read from it: "
    )
    if auth.require == "none":
        text += (
            "with authentication.require none every reply decides on its From address and reply token alone, "
            "and even a DMARC fail seen by your own server cannot stop it"
        )
    else:
        text += (
            "approvers whose domain publishes DMARC p=quarantine or p=reject (or whose policy cannot be looked "
            "up) are accepted only with an aligned DKIM signature secirbot verifies itself, and refused without "
            "one; the others' replies decide on their From address and reply token alone"
        )
    seen = sorted({i for r in results if r.name == "probe-mail" for i in r.authserv_ids})
    if seen:
        text += (
            f". The probe mail arrived with Authentication-Results from {', '.join(seen)}: if that is your own "
            "receiving server, and it removes inbound copies claiming that id, set authentication.authserv_id "
            "to it in rules.yaml"
        )
    return [text]


# --- the probes --------------------------------------------------------------------------------------


def _ms(began: float) -> str:
    return f"{(time.monotonic() - began) * 1000:.0f} ms"


def _open_mailbox(config: Config, timeout: int) -> Mailbox:
    """A logged-in Mailbox on imap.folder with `timeout` per operation. Raises MailboxError."""
    from .mailbox import Mailbox

    mailbox = Mailbox(dataclasses.replace(config.imap, timeout_seconds=timeout))
    mailbox.connect()
    return mailbox


def probe_imap(config: Config, timeout: int) -> list[ProbeResult]:
    """Log in; the folder the bot reads, and its Processed and Failed folders (made if missing, as the
    bot itself does on its first login)."""
    from .mailbox import MailboxError

    if config.sandbox:
        return [ProbeResult("skip", name, SANDBOX) for name in ("imap", "imap-folders", "probe-mail")]
    imap = config.imap
    began = time.monotonic()
    try:
        mailbox = _open_mailbox(config, timeout)
    except MailboxError as exc:
        return [
            ProbeResult("FAIL", "imap", str(exc)),
            ProbeResult("FAIL", "imap-folders", "not checked: no login"),
            # Nothing is sent that could not be looked for and deleted again.
            ProbeResult("FAIL", "probe-mail", "not sent: no IMAP login to find it with"),
        ]
    try:
        waiting = "IDLE" if mailbox.can_idle else f"no IDLE: the bot polls every {imap.poll_seconds} s"
        login = ProbeResult(
            "ok",
            "imap",
            f"logged in to {imap.host}:{imap.port} ({imap.security}) as {imap.username} in {_ms(began)}; {waiting}",
        )
        try:
            pending = len(mailbox.pending())
        except MailboxError as exc:
            return [login, ProbeResult("FAIL", "imap-folders", str(exc)), probe_mail(config, timeout, mailbox)]
        folders = f"{mailbox.selected} ({pending} waiting), {mailbox.folders['processed']}, {mailbox.folders['failed']}"
        return [login, ProbeResult("ok", "imap-folders", folders), probe_mail(config, timeout, mailbox)]
    finally:
        mailbox.close()


def probe_smtp(config: Config, timeout: int) -> list[ProbeResult]:
    from .outbox import SmtpError, open_smtp

    if config.sandbox:
        return [ProbeResult("skip", "smtp", SANDBOX)]
    smtp = config.smtp
    began = time.monotonic()
    try:
        session = open_smtp(smtp, timeout=timeout)
    except SmtpError as exc:
        return [ProbeResult("FAIL", "smtp", str(exc))]
    login = f"logged in as {smtp.username}" if smtp.username else "no login"
    with contextlib.suppress(smtplib.SMTPException, OSError):
        session.quit()
    return [ProbeResult("ok", "smtp", f"{smtp.host}:{smtp.port} ({smtp.security}), {login}, in {_ms(began)}")]


def probe_mail(config: Config, timeout: int, mailbox: Mailbox) -> ProbeResult:
    """Send the probe mail through SMTP to bot+probe@, see it arrive on `mailbox`, delete it."""
    from .mailbox import MailboxError
    from .outbox import SmtpError, open_smtp

    bot = config.addresses.bot
    to = probe_address(bot)
    probe_id = secrets.token_hex(8)
    try:
        session = open_smtp(config.smtp, timeout=timeout)
        try:
            session.sendmail(bot, [to], probe_message(config, probe_id))
        finally:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                session.quit()
    except SmtpError as exc:
        return ProbeResult("FAIL", "probe-mail", f"not sent: {exc}")
    except (smtplib.SMTPException, OSError) as exc:
        return ProbeResult("FAIL", "probe-mail", f"not sent to {to}: {exc}")
    sent = time.monotonic()
    wait = timeout * MAIL_WAIT_FACTOR
    try:
        found = _find_and_delete(mailbox, probe_id, sent + wait)
    except MailboxError as exc:
        return ProbeResult("FAIL", "probe-mail", f"sent to {to}, then IMAP failed: {exc}")
    if found is None:
        local, domain = bot.rsplit("@", 1)
        return ProbeResult(
            "FAIL",
            "probe-mail",
            f"sent to {to} through {config.smtp.host}, but it is not in {config.imap.folder} after {wait} s: "
            f"mail for {bot} and its sub-addresses ({local}+TOKEN@{domain}, the approvers' reply "
            "addresses) must reach this mailbox (check the MX, aliases and the recipient delimiter '+')",
        )
    folder, headers = found
    return ProbeResult(
        "ok",
        "probe-mail",
        f"{to} reached {folder} in {time.monotonic() - sent:.1f} s (deleted again)",
        authserv_ids=_authserv_ids(headers),
    )


def _find_and_delete(mailbox: Mailbox, probe_id: str, deadline: float) -> tuple[str, bytes] | None:
    """(the folder, the header section) of the probe mail once it is there, after deleting it; None when
    it did not arrive by `deadline`. The bot's folder first; a running bot may have filed it already."""
    from .mailbox import _NETWORK_ERRORS, MailboxError

    client = mailbox.client
    assert client is not None
    folders = [mailbox.selected, mailbox.folders["processed"]]
    try:
        while True:
            for folder in folders:
                client.select_folder(folder)
                uids = client.search(["HEADER", "Message-ID", f"secirbot-probe.{probe_id}"])
                if uids:
                    mailbox.selected = folder
                    headers = b"".join(mailbox.headers(uids).values())
                    mailbox.delete_uids(uids)
                    return folder, headers
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)
    except _NETWORK_ERRORS as exc:
        raise MailboxError(f"IMAP {mailbox.config.host}:{mailbox.config.port}: {exc}") from exc


_AUTHSERV_ID = re.compile(r"^\s*(?:\([^()]*\)\s*)*([^\s;()]+)")


def _authserv_ids(headers: bytes) -> tuple[str, ...]:
    message = email.message_from_bytes(headers)
    found = []
    for value in message.get_all("Authentication-Results") or []:
        match = _AUTHSERV_ID.match(str(value))
        if match:
            found.append(match.group(1).lower())
    return tuple(dict.fromkeys(found))


def probe_mailman(config: Config, timeout: int) -> list[ProbeResult]:
    from .mailman_rest import MailmanRest

    mailman = config.mailman
    if not mailman.rest_url:
        said = f"mailman.rest_url not set (dialect {mailman.dialect} sends its commands by mail)"
        return [ProbeResult("skip", "mailman-rest", said), ProbeResult("skip", "mailman-list", said)]
    rest = MailmanRest(dataclasses.replace(mailman, rest_timeout_seconds=timeout))
    return [ProbeResult("ok" if p.ok else "FAIL", p.name, p.said) for p in rest.probe(mailman.list)]


def probe_tld(rules: Rules) -> TldName:
    """The ccTLD the IANA and DNS probes ask about: the pilot's first, else .nl."""
    from .iana.names import NotACcTLD, normalize_tld

    for name in [*rules.pilot.cctlds, "nl"]:
        with contextlib.suppress(NotACcTLD):
            return normalize_tld(name)
    raise AssertionError("nl is a ccTLD")  # pragma: no cover


def probe_whois(config: Config, rules: Rules, timeout: int) -> list[ProbeResult]:
    from .iana.record import QueryFailed, Unusable
    from .iana.whois import parse_whois, query_whois

    tld = probe_tld(rules)
    began = time.monotonic()
    try:
        parsed = parse_whois(query_whois(config.iana.whois, tld.ascii, timeout), tld)
    except QueryFailed as exc:
        return [ProbeResult("FAIL", "iana-whois", exc.problem.summary)]
    if isinstance(parsed, Unusable):
        return [ProbeResult("FAIL", "iana-whois", f"{config.iana.whois} answered, but {parsed.summary}")]
    return [ProbeResult("ok", "iana-whois", f"{config.iana.whois}: {_record(tld, parsed.contacts)} in {_ms(began)}")]


def probe_rdap(config: Config, rules: Rules, timeout: int) -> list[ProbeResult]:
    from .iana.rdap import parse_rdap, query_rdap
    from .iana.record import QueryFailed, Unusable

    tld = probe_tld(rules)
    began = time.monotonic()
    try:
        parsed = parse_rdap(query_rdap(config.iana.rdap, tld.ascii, timeout, config.iana.rdap_ca_file), tld)
    except QueryFailed as exc:
        return [ProbeResult("FAIL", "iana-rdap", exc.problem.summary)]
    if isinstance(parsed, Unusable):
        return [ProbeResult("FAIL", "iana-rdap", f"{config.iana.rdap} answered, but {parsed.summary}")]
    return [ProbeResult("ok", "iana-rdap", f"{config.iana.rdap}: {_record(tld, parsed.contacts)} in {_ms(began)}")]


def _record(tld: TldName, contacts: tuple[object, ...]) -> str:
    return f"the record of {tld.display()} with {len(contacts)} contact(s)"


def probe_dns(config: Config, rules: Rules, timeout: int) -> list[ProbeResult]:
    import dns.exception
    import dns.resolver

    from .iana.delegation import make_resolver

    if not config.dns.enabled:
        return [ProbeResult("skip", "dns", "dns.enabled is false: no root-delegation check, no DKIM/DMARC lookups")]
    tld = probe_tld(rules)
    resolver = make_resolver(dataclasses.replace(config.dns, timeout_seconds=timeout))
    servers = ", ".join(f"{s}:{resolver.port}" for s in resolver.nameservers) or "none"
    which = f"resolver {servers}" if config.dns.nameservers else f"system resolver ({servers})"
    began = time.monotonic()
    question = f"{tld.ascii}. NS"
    try:
        answer = resolver.resolve(f"{tld.ascii}.", "NS", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer) as exc:
        return [ProbeResult("ok", "dns", f"{which} answered {question}: {type(exc).__name__} in {_ms(began)}")]
    except (dns.exception.DNSException, OSError) as exc:
        return [ProbeResult("FAIL", "dns", f"{which}, {question}: {type(exc).__name__}: {exc}")]
    return [ProbeResult("ok", "dns", f"{which} answered {question}: {len(answer)} record(s) in {_ms(began)}")]
