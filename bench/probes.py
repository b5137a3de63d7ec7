"""Observing the bot from outside: wall time and peak RSS of a process, its first IDLE on the wire, whether its
main thread waits in poll(), and Dovecot's own IDLE notification delay seen by a bare IDLE client.

- `run_measured`: spawns a command, waits for it, and polls its VmHWM (peak resident set) meanwhile; see
  `HighWater` for why not `ru_maxrss`.
- `IdleTap`: a transparent TCP relay in front of Dovecot that timestamps each IMAP `IDLE` command a client sends
  (the moment the bot enters IDLE, observed on the wire, with no help from the bot's log).
- `bare_idle_delays`: an imapclient session in IDLE; another appends; time until `* n EXISTS` arrives.
"""

from __future__ import annotations

import contextlib
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from secirbot.sandbox.dovecot import MailUser

from .rig import CHECKOUT, cli_env


@dataclass(frozen=True)
class Measured:
    returncode: int
    seconds: float
    max_rss_kb: int


def run_measured(cmd: list[str], stderr: Path, timeout: float) -> Measured:
    """Run `cmd` (cwd = the checkout) to its end; its wall time and its own peak RSS (VmHWM, polled)."""
    with stderr.open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            cmd, cwd=CHECKOUT.path, env=cli_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
        )
        peak = HighWater(proc.pid)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        seconds = time.monotonic() - started
        peak.stop()
    return Measured(proc.returncode, seconds, peak.kib)


class HighWater:
    """The peak resident set (VmHWM) of a running process, read from /proc every 10 ms until it exits.

    Not `ru_maxrss` from wait4/RUSAGE_CHILDREN: subprocess starts the child with vfork(), and at exec() Linux
    folds the high-water mark of the mm the child had until then, the PARENT's (this bench, which holds every
    captured mail), into the child's maxrss. VmHWM belongs to the child's own mm after exec.
    """

    def __init__(self, pid: int):
        self.pid = pid
        self.kib = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        path = f"/proc/{self.pid}/status"
        while not self._done.is_set():
            try:
                with open(path) as f:
                    status = f.read()
            except OSError:
                return
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.kib = max(self.kib, int(line.split()[1]))
                    break
            else:
                return  # a zombie has no memory lines: it has exited
            self._done.wait(0.01)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def blocked_in_poll(pid: int, samples: int = 3, every: float = 0.02) -> bool:
    """The process's main thread sits in poll/select (x86_64 syscalls 7, 23, 270, 271) `samples` times in a row."""
    waits = {"7", "23", "270", "271"}
    for _ in range(samples):
        try:
            with open(f"/proc/{pid}/syscall") as f:
                if f.read().split()[0] not in waits:
                    return False
        except (OSError, IndexError):
            return False
        time.sleep(every)
    return True


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: timed out waiting for {what}")
        time.sleep(every)


class IdleTap:
    """A relay on 127.0.0.1:port -> Dovecot that notes when a client sends an IDLE command."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.idles: list[float] = []
        self.changed = threading.Condition()
        self.closing = False
        threading.Thread(target=self._accept, daemon=True, name="idle-tap").start()

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        tail = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_client:
                    seen = (tail + data).upper()
                    if b" IDLE\r\n" in seen:
                        with self.changed:
                            self.idles.append(time.monotonic())
                            self.changed.notify_all()
                    tail = data[-8:]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def wait_for_idle(self, count: int, timeout: float) -> float:
        """The time of the `count`-th IDLE command seen (1-based); waits for it."""
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.idles) >= count, timeout):
                raise TimeoutError(f"bench: no IDLE command #{count} within {timeout} s")
            return self.idles[count - 1]

    def close(self) -> None:
        self.closing = True
        self.listener.close()


def bare_idle_delays(user: MailUser, samples: int, make: Callable[[int], bytes], seed: int) -> list[float]:
    """Dovecot's own IDLE notification delay: APPEND (from a second session) to `* EXISTS` in IDLE."""
    rng = random.Random(seed)
    watcher, appender = user.client(), user.client()
    delays = []
    try:
        watcher.select_folder("INBOX")
        for i in range(samples):
            watcher.idle()
            time.sleep(0.2 + rng.random())  # land at a random phase of Dovecot's check interval
            raw = make(i)
            started = time.monotonic()
            thread = threading.Thread(target=appender.append, args=("INBOX", raw))
            thread.start()
            arrived = None
            while arrived is None:
                responses = watcher.idle_check(timeout=10)
                if not responses:
                    raise TimeoutError("bench: the bare IDLE client heard nothing within 10 s")
                if any(isinstance(r, tuple) and len(r) > 1 and r[1] == b"EXISTS" for r in responses):
                    arrived = time.monotonic()
            thread.join()
            watcher.idle_done()
            delays.append(arrived - started)
    finally:
        for client in (watcher, appender):
            with contextlib.suppress(Exception):
                client.logout()
    return delays


def start_daemon(config: Path, stderr: Path) -> subprocess.Popen[bytes]:
    """`python -m secirbot --config CONFIG run` (forever, until SIGTERM)."""
    from .rig import bot_command

    with stderr.open("wb") as err:
        return subprocess.Popen(
            bot_command(config, "run"),
            cwd=CHECKOUT.path,
            env=cli_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def stop_daemon(proc: subprocess.Popen[bytes], timeout: float = 15) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(5)
    return int(proc.returncode)
