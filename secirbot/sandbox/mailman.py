"""Owns the real GNU Mailman 3 core the end-to-end tests (and benchmarks, demos) subscribe people on.

:class:`Mailman3` runs Mailman 3.3.x from its own venv (``$SECIRBOT_TEST_MAILMAN_VENV``, else
``/opt/mailman-venv`` if it exists, else ``.mailman-venv`` in the repository; see :func:`find_venv`)
with a throw-away ``mailman.cfg`` in its own temporary directory (mode 0755): SQLite, no MTA
integration (``mailman.mta.null.NullMTA``), LMTP and REST on free 127.0.0.1 ports, fast runners
(0.1 s) and the archive, digest, bounce, retry and task runners off (they save ~150 MB).

Mailman's outgoing SMTP goes to :class:`OutgoingSink`, the rig's own aiosmtpd server. It plays the
MTA: a recipient with a route (:meth:`Mailman3.route`, e.g. the bot's address -> an IMAP APPEND to
its mailbox) gets the message through that route; any other recipient in a domain Mailman serves
(``LIST-owner@``, ``LIST-confirm+TOKEN@``...) is fed back to Mailman over LMTP, as Postfix with
Mailman's transport maps would; everything else (the requester, the Secretariat) is captured only.
Every message is captured, with where each recipient went, for the tests' assertions.

Facts measured with 3.3.10 (see /work/shared/notes/test-rigs.md): REST answers 6-12 s after
``mailman start`` (LMTP, its own runner, sometimes later: :meth:`Mailman3.start` waits for both);
~700 MiB RSS summed over the 9 processes of its group (~590 MiB PSS); ``mailman stop`` takes 4-7 s (the pid
file vanishes before the master exits, so the master's PID is waited for). Runners are asynchronous:
callers poll with a deadline (:meth:`Mailman3.wait_until`, :meth:`OutgoingSink.wait_for`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import email
import email.policy
import email.utils
import os
import secrets
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, TypeVar

import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from .ports import LOOPBACK, free_ports
from .procs import group_pids, pid_alive, pss_bytes, rss_bytes

ENV_VENV = "SECIRBOT_TEST_MAILMAN_VENV"
DEFAULT_VENV = Path("/opt/mailman-venv")
REPO_VENV = Path(__file__).resolve().parents[2] / ".mailman-venv"
INSTALL_HINT = (
    "python3 -m venv .mailman-venv && .mailman-venv/bin/pip install 'mailman==3.3.10' "
    "'SQLAlchemy<2.1'  (found there by default; a venv elsewhere: SECIRBOT_TEST_MAILMAN_VENV=<dir>)"
)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

Policy = Literal["open", "confirm", "moderate", "confirm_then_moderate"]
T = TypeVar("T")


class MailmanError(RuntimeError):
    """The rig could not start, stop or drive Mailman; the message carries the log tail."""


def find_venv(environ: dict[str, str] | None = None) -> Path:
    """The Mailman venv: ``$SECIRBOT_TEST_MAILMAN_VENV``, else /opt/mailman-venv if it exists, else the
    repository's ``.mailman-venv``. Whether it holds a usable ``mailman`` is :func:`mailman_binary`'s
    question."""
    env = os.environ if environ is None else environ
    if env.get(ENV_VENV):
        return Path(env[ENV_VENV])
    return DEFAULT_VENV if DEFAULT_VENV.exists() else REPO_VENV


def mailman_binary(venv: Path | None = None) -> Path:
    """``<venv>/bin/mailman``, or a :class:`MailmanError` saying how to install it."""
    venv = venv or find_venv()
    binary = venv / "bin" / "mailman"
    if not os.access(binary, os.X_OK):
        raise MailmanError(
            f"no Mailman 3 at {binary} (venv from ${ENV_VENV}, /opt/mailman-venv or "
            f"{REPO_VENV}); install it with: {INSTALL_HINT}"
        )
    return binary


def list_id_of(address: str) -> str:
    """secir@lists.example.org -> secir.lists.example.org (Mailman 3's list id)."""
    return address.replace("@", ".", 1)


# --- the MTA stand-in Mailman sends to ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """One message Mailman handed to its outgoing SMTP server."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes  # as received, CRLF line ends
    message: EmailMessage  # parsed (LF line ends, email.policy.default)
    fed_back: tuple[str, ...] = ()  # recipients delivered back into Mailman over LMTP
    routed: tuple[str, ...] = ()  # recipients handed to a route (e.g. the bot's mailbox)
    errors: tuple[str, ...] = ()  # LMTP or route failures, one line each

    @property
    def captured_only(self) -> list[str]:
        """Recipients that went nowhere but here (a person outside Mailman's domains)."""
        return [r for r in self.rcpt_tos if r not in self.fed_back and r not in self.routed]


Route = Callable[[bytes], object]


class _SinkHandler:
    def __init__(self, sink: OutgoingSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = bytes(envelope.original_content or b"")
        # Hand-offs block (LMTP, IMAP APPEND): off the event loop, but answered only when done, as an
        # MTA that delivers before it says 250 would.
        loop = asyncio.get_running_loop()
        item = await loop.run_in_executor(
            None, self.sink.dispatch, envelope.mail_from or "", list(envelope.rcpt_tos), raw
        )
        return f"250 2.0.0 OK queued as {item}"


class OutgoingSink:
    """The SMTP server Mailman sends to; see the module docstring."""

    def __init__(self, deliver_to_mailman: Callable[[bytes, str, list[str]], dict[str, str]]) -> None:
        self._deliver_to_mailman = deliver_to_mailman
        self._lock = threading.Lock()
        self._messages: list[Outgoing] = []
        self._routes: dict[str, Route] = {}
        self.domains: set[str] = set()
        self.port = free_ports(1)[0]
        self._controller: Controller | None = None

    @property
    def host(self) -> str:
        return LOOPBACK

    def start(self) -> None:
        if self._controller is None:
            controller = Controller(
                _SinkHandler(self), hostname=LOOPBACK, port=self.port, server_hostname="mta.test", ready_timeout=5.0
            )
            controller.start()
            self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def route(self, address: str, deliver: Route) -> None:
        """Mail for ``address`` goes to ``deliver(raw_bytes)`` (instead of LMTP or nowhere)."""
        with self._lock:
            self._routes[address.lower()] = deliver

    def unroute(self, address: str | None = None) -> None:
        """Drop one route, or all of them."""
        with self._lock:
            if address is None:
                self._routes.clear()
            else:
                self._routes.pop(address.lower(), None)

    def dispatch(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> int:
        """Deliver one message as the MTA would; capture it. Returns its number."""
        with self._lock:
            routes = {r: self._routes[r.lower()] for r in rcpt_tos if r.lower() in self._routes}
            domains = set(self.domains)
        to_mailman = [r for r in rcpt_tos if r not in routes and r.rpartition("@")[2].lower() in domains]
        errors: list[str] = []
        routed: list[str] = []
        for rcpt, deliver in routes.items():
            # What a delivery agent (Dovecot's LDA, Postfix local) puts on top of the stored message.
            stamped = f"Return-Path: <{mail_from}>\r\nDelivered-To: {rcpt}\r\n".encode() + raw
            try:
                deliver(stamped)
                routed.append(rcpt)
            except Exception as exc:  # a broken route must not kill the SMTP server's thread
                errors.append(f"route {rcpt}: {type(exc).__name__}: {exc}")
        fed_back: list[str] = []
        if to_mailman:
            refused = self._deliver_to_mailman(raw, mail_from, to_mailman)
            fed_back = [r for r in to_mailman if r not in refused]
            errors.extend(f"LMTP {r}: {why}" for r, why in refused.items())
        item = Outgoing(
            mail_from=mail_from,
            rcpt_tos=list(rcpt_tos),
            data=raw,
            message=email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default),
            fed_back=tuple(fed_back),
            routed=tuple(routed),
            errors=tuple(errors),
        )
        with self._lock:
            self._messages.append(item)
            return len(self._messages)

    @property
    def messages(self) -> list[Outgoing]:
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def to(self, address: str) -> list[Outgoing]:
        """Captured messages with ``address`` among their envelope recipients."""
        return [m for m in self.messages if address.lower() in (r.lower() for r in m.rcpt_tos)]

    def wait_for(self, predicate: Callable[[Outgoing], bool], count: int = 1, timeout: float = 30.0) -> list[Outgoing]:
        """Poll until ``count`` captured messages satisfy ``predicate``; returns them (oldest first)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.messages if predicate(m)]
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                summary = [(m.mail_from, m.rcpt_tos, str(m.message.get("Subject", ""))) for m in self.messages]
                raise AssertionError(
                    f"Mailman sent {len(found)} of {count} expected message(s) within "
                    f"{timeout:.0f} s; all it sent: {summary}"
                )
            time.sleep(0.05)


# --- REST -------------------------------------------------------------------------------------------


class Rest:
    """Mailman's REST API with the admin's basic auth; raises :class:`MailmanError` on an unexpected
    status."""

    def __init__(self, base_url: str, user: str, password: str, timeout: float = 30.0) -> None:
        self.base = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.auth = (user, password)
        self.timeout = timeout

    def call(
        self, method: str, path: str, data: dict[str, Any] | None = None, ok: Iterable[int] = (200, 201, 202, 204)
    ) -> requests.Response:
        response = self.session.request(method, f"{self.base}/3.1/{path.lstrip('/')}", data=data, timeout=self.timeout)
        if response.status_code not in set(ok):
            raise MailmanError(f"Mailman REST {method} {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response

    def get(self, path: str, ok: Iterable[int] = (200,)) -> Any:
        response = self.call("GET", path, ok=ok)
        return response.json() if response.content else None

    def post(self, path: str, data: dict[str, Any], ok: Iterable[int] = (200, 201, 202, 204)) -> requests.Response:
        return self.call("POST", path, data, ok)

    def patch(self, path: str, data: dict[str, Any]) -> requests.Response:
        return self.call("PATCH", path, data, (200, 204))

    def delete(self, path: str, ok: Iterable[int] = (200, 204)) -> requests.Response:
        return self.call("DELETE", path, ok=ok)

    def close(self) -> None:
        self.session.close()


# --- the server ---------------------------------------------------------------------------------------

_running: weakref.WeakSet[Mailman3] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    # Safety net for callers that forget stop(); fixtures stop explicitly.
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.close()


class Mailman3:
    """A private Mailman 3 core on loopback; see the module docstring.

    ``start()`` writes the configuration, starts Mailman and returns once REST answers; ``stop()``
    ends every Mailman process (``mailman stop``, then the process group); ``close()`` also removes
    the temporary directory. A context manager too.
    """

    def __init__(
        self,
        venv: Path | None = None,
        *,
        site_owner: str = "postmaster@example.org",
        admin_user: str = "restadmin",
        admin_pass: str | None = None,
    ) -> None:
        self.venv = venv or find_venv()
        self.binary = mailman_binary(self.venv)
        self.site_owner = site_owner
        self.admin_user = admin_user
        self.admin_pass = admin_pass or "mm-" + secrets.token_hex(12)
        self.lmtp_port, self.rest_port = free_ports(2)
        self.sink = OutgoingSink(self.lmtp_deliver_refused)
        self.rest = Rest(self.rest_url, self.admin_user, self.admin_pass)
        self.root = Path(tempfile.mkdtemp(prefix="secirbot-mailman-"))
        os.chmod(self.root, 0o755)
        self.started_in: float | None = None  # seconds from `mailman start` to REST answering
        self.peak_rss = 0  # bytes, summed over the process group, sampled 4/s
        self.peak_pss = 0  # the same as PSS (shared pages counted once)
        self.peak_processes = 0
        self._master_pid: int | None = None
        self._sampler: threading.Thread | None = None
        self._sampling = threading.Event()

    # -- addresses -------------------------------------------------------------------------------

    @property
    def rest_url(self) -> str:
        """Base URL for a REST client (without the /3.1 version)."""
        return f"http://{LOOPBACK}:{self.rest_port}"

    @property
    def config_file(self) -> Path:
        return self.root / "mailman.cfg"

    @property
    def var_dir(self) -> Path:
        return self.root / "var"

    @property
    def log_file(self) -> Path:
        return self.var_dir / "logs" / "mailman.log"

    @property
    def running(self) -> bool:
        return self._master_pid is not None and pid_alive(self._master_pid)

    # -- configuration -----------------------------------------------------------------------------

    def config_text(self) -> str:
        fast = "\n".join(
            f"[runner.{name}]\nsleep_time: 0.1s\n" for name in ("command", "in", "pipeline", "out", "virgin")
        )
        off = "\n".join(
            f"[runner.{name}]\nstart: no\n" for name in ("archive", "digest", "bounces", "retry", "task", "nntp")
        )
        return f"""\
# Written by secirbot.sandbox.mailman for one test session; nothing here is for production.
[mailman]
layout: secirbot
site_owner: {self.site_owner}

[paths.secirbot]
var_dir: {self.var_dir}
pid_file: $var_dir/master.pid
lock_file: $lock_dir/master.lck

[database]
class: mailman.database.sqlite.SQLiteDatabase
url: sqlite:///$DATA_DIR/mailman.db

[mta]
incoming: mailman.mta.null.NullMTA
lmtp_host: {LOOPBACK}
lmtp_port: {self.lmtp_port}
smtp_host: {LOOPBACK}
smtp_port: {self.sink.port}

[webservice]
hostname: {LOOPBACK}
port: {self.rest_port}
admin_user: {self.admin_user}
admin_pass: {self.admin_pass}
workers: 1

{fast}
{off}"""

    # -- lifecycle ---------------------------------------------------------------------------------

    def _mailman(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[bytes]:
        command = [str(self.binary), "-C", str(self.config_file)]
        if os.geteuid() == 0:
            command.append("--run-as-root")  # a top-level option: before the subcommand
        with open(self.root / "mailman-cli.log", "ab") as out:
            # Output to a file: the master inherits it, and a caller reading a pipe would hang.
            return subprocess.run(
                [*command, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                cwd=self.root,
                env=self._env(),
            )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["LANG"] = env["LC_ALL"] = "C.UTF-8"
        return env

    def start(self) -> None:
        """Start Mailman and wait until REST answers; then serve mail through the sink."""
        if self.running:
            return
        self.config_file.write_text(self.config_text(), encoding="utf-8")
        self.sink.start()
        began = time.monotonic()
        done = self._mailman("start")
        if done.returncode:
            raise MailmanError(f"`mailman start` exited {done.returncode}\n{self.log_tail()}")
        _running.add(self)
        try:
            self._master_pid = self._wait_master_pid(began + START_TIMEOUT)
            self._start_sampler()
            self._wait_rest(began + START_TIMEOUT)
            self._wait_lmtp(began + START_TIMEOUT)  # its own runner: may come up after REST
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began

    def _wait_master_pid(self, deadline: float) -> int:
        pid_file = self.var_dir / "master.pid"
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                return int(pid_file.read_text().strip())
            time.sleep(0.05)
        raise MailmanError(f"Mailman wrote no master.pid within {START_TIMEOUT:.0f} s\n{self.log_tail()}")

    def _wait_rest(self, deadline: float) -> None:
        last = ""
        while time.monotonic() < deadline:
            if not self.running:
                raise MailmanError(f"Mailman's master exited during start\n{self.log_tail()}")
            try:
                response = self.rest.session.get(f"{self.rest_url}/3.1/system/versions", timeout=2)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                last = type(exc).__name__
            time.sleep(0.1)
        raise MailmanError(f"Mailman REST did not answer within {START_TIMEOUT:.0f} s ({last})\n{self.log_tail()}")

    def _wait_lmtp(self, deadline: float) -> None:
        last = ""
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((LOOPBACK, self.lmtp_port), timeout=2) as sock:
                    greeting = sock.recv(512)
                if greeting.startswith(b"220"):
                    return
                last = repr(greeting[:60])
            except OSError as exc:
                last = type(exc).__name__
            time.sleep(0.1)
        raise MailmanError(f"Mailman LMTP did not answer within {START_TIMEOUT:.0f} s ({last})\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """``mailman stop``, wait for the master, then SIGKILL whatever of its group is left."""
        pid = self._master_pid
        if pid is not None:
            if pid_alive(pid):
                with contextlib.suppress(subprocess.TimeoutExpired):  # the group is killed below anyway
                    self._mailman("stop", timeout=30)
            deadline = time.monotonic() + timeout
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            for _ in range(3):
                if not group_pids(pid):
                    break
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                time.sleep(0.1)
            self._master_pid = None
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join(timeout=2)
            self._sampler = None
        self.sink.stop()
        _running.discard(self)

    def close(self) -> None:
        """Stop and delete the temporary directory."""
        self.stop()
        self.rest.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Mailman3:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for path in (self.root / "mailman-cli.log", self.log_file):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)

    # -- memory -----------------------------------------------------------------------------------

    def memory(self) -> tuple[int, int, int]:
        """(RSS bytes, PSS bytes, processes) summed over Mailman's process group now."""
        if self._master_pid is None:
            return 0, 0, 0
        pids = group_pids(self._master_pid)
        return sum(rss_bytes(p) for p in pids), sum(pss_bytes(p) for p in pids), len(pids)

    def _start_sampler(self) -> None:
        self._sampling.clear()

        def sample() -> None:
            while not self._sampling.wait(0.25):
                rss, pss, count = self.memory()
                if rss > self.peak_rss:
                    self.peak_rss, self.peak_processes = rss, count
                self.peak_pss = max(self.peak_pss, pss)

        self._sampler = threading.Thread(target=sample, name="mailman-rss", daemon=True)
        self._sampler.start()

    # -- mail into Mailman --------------------------------------------------------------------------

    def lmtp_deliver_refused(self, raw: bytes, mail_from: str, rcpt_tos: Sequence[str]) -> dict[str, str]:
        """LMTP one message to Mailman; returns the refused recipients with Mailman's answer."""
        try:
            with smtplib.LMTP(LOOPBACK, self.lmtp_port, timeout=30) as lmtp:
                refused = lmtp.sendmail(mail_from, list(rcpt_tos), raw)
        except smtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients
        except (smtplib.SMTPException, OSError) as exc:
            return {r: f"{type(exc).__name__}: {exc}" for r in rcpt_tos}
        return {
            r: f"{code} {msg.decode('utf-8', 'replace') if isinstance(msg, bytes) else msg}"
            for r, (code, msg) in refused.items()
        }

    def lmtp_deliver(
        self, raw: bytes | EmailMessage, mail_from: str | None = None, rcpt_tos: Sequence[str] | None = None
    ) -> None:
        """Deliver one message into Mailman as its MTA would (envelope defaults: From and To headers).
        Raises :class:`MailmanError` if Mailman refuses a recipient."""
        if isinstance(raw, EmailMessage):
            msg = raw
            raw = raw.as_bytes(policy=email.policy.SMTP)
        else:
            msg = email.message_from_bytes(raw, policy=email.policy.default)
        sender = mail_from if mail_from is not None else email.utils.parseaddr(str(msg.get("From", "")))[1]
        recipients = (
            list(rcpt_tos)
            if rcpt_tos
            else [a for _, a in email.utils.getaddresses([str(v) for v in msg.get_all("To", [])])]
        )
        refused = self.lmtp_deliver_refused(raw, sender, recipients)
        if refused:
            raise MailmanError(f"Mailman refused {refused}")

    # -- domains, lists, members ----------------------------------------------------------------------

    def ensure_domain(self, mail_host: str) -> None:
        if self.rest.call("GET", f"domains/{mail_host}", ok=(200, 404)).status_code == 404:
            self.rest.post("domains", {"mail_host": mail_host})
        self.sink.domains.add(mail_host.lower())

    def create_list(
        self,
        address: str,
        policy: Policy = "confirm",
        *,
        owners: Sequence[str] = (),
        moderators: Sequence[str] = (),
        **settings: str | bool,
    ) -> str:
        """A fresh list (an existing one of that name is deleted first, with its pending requests).
        ``settings`` are further list config keys (e.g. ``admin_notify_mchanges=True``). Returns its
        list id."""
        mail_host = address.rpartition("@")[2]
        self.ensure_domain(mail_host)
        list_id = list_id_of(address)
        self.rest.delete(f"lists/{list_id}", ok=(204, 404))
        self.rest.post("lists", {"fqdn_listname": address})
        config: dict[str, Any] = {"subscription_policy": policy}
        for key, value in settings.items():
            config[key] = ("true" if value else "false") if isinstance(value, bool) else value
        self.rest.patch(f"lists/{list_id}/config", config)
        for role, people in (("owner", owners), ("moderator", moderators)):
            for person in people:
                self.rest.post(
                    "members",
                    {
                        "list_id": list_id,
                        "subscriber": person,
                        "role": role,
                        "pre_verified": "true",
                        "pre_confirmed": "true",
                        "pre_approved": "true",
                    },
                )
        return list_id

    def subscribe(self, list_id: str, address: str, *, pre: bool = True) -> requests.Response:
        """Subscribe over REST: with ``pre`` a member at once (201), without a confirmation is pending
        (202)."""
        flags = {"pre_verified": "true", "pre_confirmed": "true", "pre_approved": "true"} if pre else {}
        return self.rest.post("members", {"list_id": list_id, "subscriber": address, **flags}, ok=(201, 202))

    def roster(self, list_id: str, role: str = "member") -> list[str]:
        """Addresses on the list in this role, lower-case, sorted."""
        body = self.rest.get(f"lists/{list_id}/roster/{role}")
        return sorted(str(e["email"]).lower() for e in body.get("entries", []))

    def pending(self, list_id: str, token_owner: str | None = None) -> list[dict[str, Any]]:
        """The list's pending subscription requests (``token_owner``: subscriber | moderator)."""
        query = f"?token_owner={token_owner}" if token_owner else ""
        body = self.rest.get(f"lists/{list_id}/requests{query}")
        return list(body.get("entries", []))

    def moderate(self, list_id: str, token: str, action: str) -> int:
        """What a moderator does: accept | discard | reject | defer a held request. Returns the status."""
        return self.rest.post(f"lists/{list_id}/requests/{token}", {"action": action}, ok=(204, 404, 409)).status_code

    # -- mail out of Mailman --------------------------------------------------------------------------

    def route(self, address: str, deliver: Route) -> None:
        """Mailman's mail for ``address`` goes to ``deliver(raw)`` (e.g. an IMAP APPEND)."""
        self.sink.route(address, deliver)

    def unroute(self, address: str | None = None) -> None:
        self.sink.unroute(address)

    def wait_until(self, check: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
        """Poll ``check()`` until it returns something true; returns it. AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(f"Mailman: {what} not reached within {timeout:.0f} s (last: {value!r})")
            time.sleep(0.1)
