"""Owns the private Dovecot IMAP server the mail tests talk to.

A :class:`Dovecot` is a real ``dovecot`` master started from a throw-away configuration in its own
temporary directory; nothing under ``/etc/dovecot`` is read. It listens on 127.0.0.1 only, with a
plain IMAP port (STARTTLS offered, plaintext login allowed) and an implicit-TLS port whose
certificate chains to a CA made with ``openssl`` when the rig is first started (:attr:`ca_file`).

Mailboxes come from a pool of users written to the passwd-file before the server starts, because
Dovecot re-reads that file at most once a second: a user added later cannot log in reliably.
:meth:`Dovecot.new_user` hands out one unused :class:`MailUser` per call.

A changed UIDVALIDITY comes three ways, each measured with Dovecot 2.3.19 (see the methods):
:meth:`MailUser.change_uidvalidity` (live, ``doveadm mailbox update --uid-validity``, messages
and UIDs kept), :meth:`MailUser.reset_uids` (restart with the folder's index removed: messages
kept, renumbered from 1, new UIDVALIDITY) and :meth:`MailUser.recreate_folder` (empty folder).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path

import imapclient

from .ports import LOOPBACK, free_ports
from .procs import group_pids

INSTALL_HINT = "apt-get install dovecot-imapd"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

# The Debian package's sbin directory is missing from PATH for non-login shells, so look there too.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


class DovecotError(RuntimeError):
    """The rig could not start, stop or drive Dovecot; the message carries the log tail."""


class PoolExhausted(DovecotError):
    """Every pre-created user has been handed out."""


def find_binary(name: str) -> str:
    """Path of a Dovecot program, or a :class:`DovecotError` saying how to install it."""
    path = shutil.which(name, path=_SEARCH_PATH)
    if path is None:
        raise DovecotError(f"{name!r} not found: the mail tests need Dovecot ({INSTALL_HINT})")
    return path


def dovecot_version() -> str:
    """``dovecot --version``; raises :class:`DovecotError` with the install hint if it does not run."""
    binary = find_binary("dovecot")
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DovecotError(f"{binary} --version failed ({exc}); reinstall with {INSTALL_HINT}") from exc
    return out.stdout.strip()


@dataclasses.dataclass(frozen=True)
class CertFiles:
    """A CA and a server certificate it signed, valid for ``127.0.0.1`` and ``localhost``."""

    ca_file: Path
    cert_file: Path
    key_file: Path


_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = secirbot test
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def make_test_certs(directory: Path) -> CertFiles:
    """Create a throw-away CA plus a server certificate for loopback in ``directory``.

    A separate CA (rather than one self-signed leaf used as its own CA) keeps clients with strict
    X.509 checking (Python 3.13's default context) happy. EC keys because RSA generation is slow.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise DovecotError("openssl not found: apt-get install openssl")
    directory.mkdir(parents=True, exist_ok=True)
    cnf = directory / "openssl.cnf"
    cnf.write_text(_OPENSSL_CNF)
    ca_key, ca_pem = directory / "ca.key", directory / "ca.pem"
    key, csr, pem = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        [
            openssl,
            "req",
            "-config",
            cnf,
            "-x509",
            "-extensions",
            "v3_ca",
            *ec,
            "-days",
            "3650",
            "-subj",
            "/CN=secirbot test CA",
            "-keyout",
            ca_key,
            "-out",
            ca_pem,
        ],
        [openssl, "req", "-config", cnf, "-new", *ec, "-subj", "/CN=localhost", "-keyout", key, "-out", csr],
        [
            openssl,
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca_pem,
            "-CAkey",
            ca_key,
            "-set_serial",
            str(secrets.randbits(63)),
            "-days",
            "3650",
            "-extfile",
            cnf,
            "-extensions",
            "v3_server",
            "-out",
            pem,
        ],
    ]
    for cmd in steps:
        done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=30)
        if done.returncode:
            raise DovecotError(f"openssl failed: {' '.join(map(str, cmd))}\n{done.stderr}")
    return CertFiles(ca_file=ca_pem, cert_file=pem, key_file=key)


_running: weakref.WeakSet[Dovecot] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Safety net for callers that forget close(); fixtures close explicitly.
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.close()


class Dovecot:
    """A private Dovecot on loopback; see the module docstring.

    ``start()`` builds the directory, certificates, users and config the first time and launches
    the master; ``stop()``/``kill()`` end every Dovecot process but keep ports and mail, so
    ``start()`` again (or ``restart()``) brings back the same server. ``close()`` also deletes the
    temporary directory. Also usable as a context manager.
    """

    def __init__(self, pool_size: int = 40, *, user_prefix: str = "user") -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.pool_size = pool_size
        self.user_prefix = user_prefix
        self._root: Path | None = None
        self._certs: CertFiles | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports: list[int] | None = None
        self._users: list[MailUser] = []
        self._next_user = 0
        self._lock = threading.Lock()

    # -- public properties -------------------------------------------------------------------

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def imap_port(self) -> int:
        """Plain IMAP (STARTTLS offered, plaintext LOGIN allowed)."""
        return self._need_ports()[0]

    @property
    def imaps_port(self) -> int:
        """Implicit TLS; the certificate verifies against :attr:`ca_file`."""
        return self._need_ports()[1]

    @property
    def ca_file(self) -> Path:
        if self._certs is None:
            raise DovecotError("Dovecot rig not started yet")
        return self._certs.ca_file

    @property
    def certs(self) -> CertFiles:
        """CA, server certificate and key; other loopback rigs (the SMTP sink) may reuse them."""
        if self._certs is None:
            raise DovecotError("Dovecot rig not started yet")
        return self._certs

    @property
    def root(self) -> Path:
        """The rig's temporary directory (config, log, homes)."""
        if self._root is None:
            raise DovecotError("Dovecot rig not started yet")
        return self._root

    @property
    def log_file(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def config_file(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this rig's CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Launch Dovecot and return once the IMAP greeting answers (first call also sets up)."""
        if self.running:
            return
        binary = find_binary("dovecot")
        if self._root is None:
            dovecot_version()
            try:
                self._setup()
            except BaseException:
                self.close()
                raise
        # A master.pid left by kill() could name a recycled PID; Dovecot would refuse to start.
        with contextlib.suppress(FileNotFoundError):
            (self.root / "run" / "master.pid").unlink()
        with open(self.root / "stdout.log", "ab") as out:
            self._proc = subprocess.Popen(
                [binary, "-F", "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group, so stop() reaches the sessions too
            )
        _running.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Graceful stop: clients get ``* BYE Server shutting down``; SIGKILL after ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        deadline = time.monotonic() + timeout
        master_alone_since: float | None = None
        while time.monotonic() < deadline:
            # The group, not just the master: IMAP sessions with a connected client outlive the
            # master. Repeatedly: a login process forked just after one signal would miss it.
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.02)
            children = [pid for pid in group_pids(proc.pid) if pid != proc.pid]
            if children:
                master_alone_since = None
            elif proc.returncode is not None:
                break
            elif master_alone_since is None:
                master_alone_since = time.monotonic()
            elif time.monotonic() - master_alone_since > 0.05:
                # Every child has exited cleanly; the master only sleeps out its shutdown wait
                # (measured 1 s, and 6 s right after start) before removing its pid file.
                break
        self._reap(signal.SIGKILL)

    def kill(self) -> None:
        """Hard stop (SIGKILL to every Dovecot process): clients see their connections dropped."""
        if self._proc is not None:
            self._reap(signal.SIGKILL)

    def restart(self) -> None:
        """Stop and start again: same ports, same users, same mail."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and delete the temporary directory (a later start() builds a new, empty server)."""
        self.stop()
        _running.discard(self)
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- users -------------------------------------------------------------------------------

    def new_user(self) -> MailUser:
        """An unused pre-created mailbox; :class:`PoolExhausted` once ``pool_size`` are taken."""
        if self._root is None:
            raise DovecotError("start() the Dovecot rig before asking for users")
        with self._lock:
            if self._next_user >= len(self._users):
                raise PoolExhausted(
                    f"all {self.pool_size} Dovecot users are taken: raise Dovecot(pool_size=...) "
                    "(users cannot be added to a running server reliably)"
                )
            user = self._users[self._next_user]
            self._next_user += 1
        return user

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of Dovecot's log and stdout, for error messages."""
        parts = []
        for path in (self.root / "stdout.log", self.log_file):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts) or "(Dovecot wrote no log)"

    def doveadm(self, *args: str) -> str:
        """Run ``doveadm`` against this instance (it must be running); returns stdout."""
        cmd = [find_binary("doveadm"), "-c", str(self.config_file), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if done.returncode:
            raise DovecotError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    # -- internals ---------------------------------------------------------------------------

    def _need_ports(self) -> list[int]:
        if self._ports is None:
            raise DovecotError("Dovecot rig not started yet")
        return self._ports

    def _setup(self) -> None:
        # Our own 0755 dir: Dovecot's unprivileged processes cannot enter pytest's 0700 tmp_path.
        root = Path(tempfile.mkdtemp(prefix="secirbot-dovecot-"))
        root.chmod(0o755)
        self._root = root
        self._ports = free_ports(2)
        self._next_user = 0
        self._certs = make_test_certs(root / "tls")

        if os.geteuid() == 0:
            # Dovecot refuses to serve mail as root: mail processes run as the dovecot user.
            try:
                pw = pwd.getpwnam("dovecot")
            except KeyError:
                raise DovecotError(f"no 'dovecot' system user: reinstall with {INSTALL_HINT}") from None
            uid, gid = pw.pw_uid, pw.pw_gid
            internal_user, internal_group, login_user, chroot = "dovecot", "dovecot", "dovenull", None
        else:
            # Unprivileged: every process runs as us and nothing can chroot.
            uid, gid = os.getuid(), os.getgid()
            me, my_group = pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name
            internal_user, internal_group, login_user, chroot = me, my_group, me, ""

        (root / "run").mkdir()
        (root / "state").mkdir()
        homes = root / "home"
        homes.mkdir(mode=0o755)
        lines = []
        self._users = []
        for i in range(1, self.pool_size + 1):
            name = f"{self.user_prefix}{i:0{max(2, len(str(self.pool_size)))}d}"
            password = f"{name}-{secrets.token_hex(4)}"
            home = homes / name
            home.mkdir(mode=0o700)
            os.chown(home, uid, gid)
            lines.append(f"{name}:{{PLAIN}}{password}:{uid}:{gid}::{home}::\n")
            self._users.append(MailUser(self, name, password, home))
        users_file = root / "users"
        users_file.write_text("".join(lines))
        users_file.chmod(0o640)
        os.chown(users_file, -1, gid)  # the auth process runs as the internal user

        self.config_file.write_text(self._config(internal_user, internal_group, login_user, chroot))

    def _config(self, internal_user: str, internal_group: str, login_user: str, chroot: str | None) -> str:
        assert self._root is not None and self._certs is not None
        root, certs = self._root, self._certs
        users = root / "users"
        dh = Path("/usr/share/dovecot/dh.pem")
        chroot_line = f"  chroot = {chroot}\n" if chroot is not None else ""
        return f"""\
# Generated by secirbot/sandbox/dovecot.py; self-contained, /etc/dovecot is not read.
instance_name = secirbot-test-{root.name}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap
listen = {LOOPBACK}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
log_timestamp = "%H:%M:%S.%{{usecs}} "
ssl = yes
ssl_cert = <{certs.cert_file}
ssl_key = <{certs.key_file}
{f"ssl_dh = <{dh}" if dh.exists() else ""}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
# A failed login must not slow the next test's login down.
auth_failure_delay = 0
mail_location = maildir:~/Maildir
mail_fsync = never
mailbox_idle_check_interval = 1 secs
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users}
}}
service anvil {{
{chroot_line}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
{chroot_line}  inet_listener imap {{
    address = {LOOPBACK}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {LOOPBACK}
    port = {self.imaps_port}
    ssl = yes
  }}
}}
"""

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DovecotError(f"Dovecot exited with status {self._proc.returncode} at start\n{self.log_tail()}")
            try:
                with socket.create_connection((LOOPBACK, self.imap_port), timeout=1) as sock:
                    greeting = sock.recv(512)
                if greeting.startswith(b"* OK"):
                    with socket.create_connection((LOOPBACK, self.imaps_port), timeout=1):
                        return
                last = DovecotError(f"unexpected greeting {greeting!r}")
            except OSError as exc:
                last = exc
            time.sleep(0.01)
        raise DovecotError(
            f"Dovecot did not answer on {LOOPBACK}:{self.imap_port} within "
            f"{START_TIMEOUT:.0f} s ({last})\n{self.log_tail()}"
        )

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, sig)

    def _reap(self, sig: signal.Signals) -> None:
        proc = self._proc
        assert proc is not None
        self._signal_group(sig)
        proc.wait()
        deadline = time.monotonic() + STOP_TIMEOUT
        while group_pids(proc.pid):
            if time.monotonic() > deadline:
                raise DovecotError(f"Dovecot processes in group {proc.pid} survived SIGKILL")
            time.sleep(0.005)
        self._proc = None


_APPENDUID = re.compile(rb"APPENDUID (\d+) (\d+)")


@dataclasses.dataclass(frozen=True)
class MailUser:
    """One mailbox on a :class:`Dovecot` rig.

    Every helper opens, uses and logs out its own connection so that tests hold no IMAP state.
    """

    server: Dovecot = dataclasses.field(repr=False, compare=False)
    name: str
    password: str = dataclasses.field(repr=False)
    home: Path

    @property
    def maildir(self) -> Path:
        return self.home / "Maildir"

    def client(self, *, tls: bool = False, timeout: float = 10.0) -> imapclient.IMAPClient:
        """A logged-in client on the plain port (``tls=True``: the implicit-TLS port, verified)."""
        server = self.server
        if tls:
            client = imapclient.IMAPClient(
                server.host, port=server.imaps_port, ssl=True, ssl_context=server.ssl_context(), timeout=timeout
            )
        else:
            client = imapclient.IMAPClient(server.host, port=server.imap_port, ssl=False, timeout=timeout)
        try:
            client.login(self.name, self.password)
        except BaseException:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        return client

    @contextlib.contextmanager
    def session(self) -> Iterator[imapclient.IMAPClient]:
        """``with user.session() as c:`` — a logged-in client that is logged out afterwards."""
        client = self.client()
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def append(self, raw: bytes, folder: str = "INBOX", flags: Sequence[str | bytes] = ()) -> int:
        """APPEND ``raw`` (creating ``folder`` if missing); returns the new UID (UIDPLUS)."""
        with self.session() as c:
            if not c.folder_exists(folder):
                c.create_folder(folder)
            response = c.append(folder, raw, flags=flags)
        found = _APPENDUID.search(response if isinstance(response, bytes) else str(response).encode())
        if not found:
            raise DovecotError(f"APPEND to {folder!r} gave no APPENDUID: {response!r}")
        return int(found.group(2))

    def messages(self, folder: str = "INBOX") -> list[tuple[int, bytes]]:
        """``(uid, raw message)`` for every message, oldest UID first; flags are left untouched."""
        with self.session() as c:
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            if not uids:
                return []
            fetched = c.fetch(uids, ["BODY.PEEK[]"])
        return sorted((uid, data[b"BODY[]"]) for uid, data in fetched.items())

    def uids(self, folder: str = "INBOX") -> list[int]:
        with self.session() as c:
            c.select_folder(folder, readonly=True)
            return sorted(c.search("ALL"))

    def folders(self) -> list[str]:
        with self.session() as c:
            return [name for _flags, _delim, name in c.list_folders()]

    def flags(self, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        """UID -> flags as imapclient returns them (bytes, e.g. ``b'\\\\Seen'``).

        ``\\Recent`` is left out: it belongs to whichever session saw the message first, which
        may be this helper's own.
        """
        with self.session() as c:
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            fetched = c.get_flags(uids) if uids else {}
        return {uid: tuple(f for f in flags if f != imapclient.RECENT) for uid, flags in fetched.items()}

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.session() as c:
            return int(c.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])

    def create_folder(self, folder: str) -> None:
        with self.session() as c:
            if not c.folder_exists(folder):
                c.create_folder(folder)

    def folder_path(self, folder: str = "INBOX") -> Path:
        """The maildir of ``folder`` on disk (Maildir++ layout: ``.Name`` under the INBOX maildir)."""
        if folder.upper() == "INBOX":
            return self.maildir
        return self.maildir / ("." + folder.replace("/", "."))

    def change_uidvalidity(self, folder: str = "INBOX", new: int | None = None) -> int:
        """Give ``folder`` a different UIDVALIDITY while the server runs; returns the new value.

        Uses ``doveadm mailbox update --uid-validity`` (default: old + 1). Messages and their UIDs
        stay as they were; only UIDVALIDITY differs. Measured with Dovecot 2.3.19: a session that
        has the folder selected is disconnected at its next command ("* BYE IMAP session state is
        inconsistent, please relogin"; imapclient raises ``abort('socket error: EOF')``); a session
        sitting in IDLE is *not* told (nothing within 3 s) until it sends DONE and another command.
        Works for INBOX too. Use :meth:`reset_uids` when the UIDs must start again from 1.
        """
        old = self.uidvalidity(folder)
        value = old + 1 if new is None else new
        if value == old:
            raise ValueError(f"UIDVALIDITY of {folder!r} is already {old}")
        self.server.doveadm("mailbox", "update", "-u", self.name, "--uid-validity", str(value), folder)
        return value

    def reset_uids(self, folder: str = "INBOX") -> int:
        """Lose ``folder``'s UID map as a server that rebuilt its index would; returns the new UIDVALIDITY.

        Stops the whole server, deletes the folder's ``dovecot-uidlist`` and ``dovecot.index*`` and
        starts it again: every message is kept but renumbered from UID 1, and Dovecot assigns a new
        UIDVALIDITY from the user's ``dovecot-uidvalidity`` counter. Measured with Dovecot 2.3.19:
        deleting only ``dovecot-uidlist`` is NOT enough — the index still holds the old UIDVALIDITY
        and UIDs, and Dovecot rebuilds the same numbers from it. Every client is disconnected by
        the restart, as in a real server migration.
        """
        old = self.uidvalidity(folder)
        path = self.folder_path(folder)
        # The new value comes from a per-user counter that change_uidvalidity() does not advance,
        # so it can equal the current one (old + 1); a second round always moves it on.
        for _ in range(3):
            self.server.stop()
            try:
                (path / "dovecot-uidlist").unlink(missing_ok=True)
                # Only this folder's index; dovecot.list.index* (the folder list) is left alone.
                for index in path.glob("dovecot.index*"):
                    index.unlink()
            finally:
                self.server.start()
            new = self.uidvalidity(folder)
            if new != old:
                return new
        raise DovecotError(f"UIDVALIDITY of {folder!r} stayed {old} after the index was removed")

    def recreate_folder(self, folder: str) -> int:
        """Delete and re-create a non-INBOX ``folder`` empty; returns its new UIDVALIDITY.

        The new value comes from the user's UIDVALIDITY counter, so it differs from the old one
        unless change_uidvalidity() set the old one by hand; then a second round moves it on.
        """
        if folder.upper() == "INBOX":
            raise ValueError("INBOX cannot be deleted; use change_uidvalidity()")
        with self.session() as c:
            old = None
            if c.folder_exists(folder):
                old = int(c.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])
            for _ in range(3):
                if c.folder_exists(folder):
                    c.delete_folder(folder)
                c.create_folder(folder)
                new = int(c.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])
                if new != old:
                    return new
        raise DovecotError(f"UIDVALIDITY of {folder!r} stayed {old} after re-creating it")
