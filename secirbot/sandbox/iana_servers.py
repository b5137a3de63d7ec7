"""Local stand-ins for IANA's whois and RDAP servers and for a DNS resolver, on 127.0.0.1 real sockets.

- `WhoisServer`: threaded TCP server answering `{query: bytes}` like whois.iana.org (an unknown query
  gets IANA's "0 objects" answer); per-TLD modes `empty` (close at once), `hang` (never answer),
  `error` (IANA's error text), and an optional `delay`. Counts queries and the most that were in flight
  at once per TLD, so tests can assert caching and at-most-one-in-flight.
- `RdapServer`: threaded `http.server` answering `GET /domain/<tld>` from `{tld: bytes}` (404 with an
  RFC 9083 error body for unknown ones); per-TLD modes `500` and `hang`.
- `DnsServer`: UDP server built on dnspython's `dns.message`: NS answers for the delegated TLDs, TXT
  answers from `txt` (DMARC policies, DKIM keys), SERVFAIL for the names in `servfail`, NXDOMAIN for
  every other name, and a `drop` switch to simulate an unreachable resolver.
Each binds port 0 itself, has `reset()` for reuse across tests, and is a context manager
(`with WhoisServer(answers) as s: s.endpoint`);
`free_port` (from secirbot.sandbox.ports) gives a closed port for 'connection refused' tests.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

from secirbot.sandbox.ports import free_port

__all__ = ["DnsServer", "RdapServer", "WhoisServer", "free_port"]

NOT_FOUND_TEMPLATE = (
    "% IANA WHOIS server\n% for more information on IANA, visit http://www.iana.org\n"
    "% This query returned 0 objects.\n%\n% You queried for {q} but this server does not have\n"
    "% any data for {q}.\n%\n% If you need further information please check the web site\n"
    "% or use -h for help\n\n"
)
ERROR_ANSWER = (
    b"% IANA WHOIS server\n% for more information on IANA, visit http://www.iana.org\n%\n"
    b"% WHOIS server encountered an error.\n% Please report the issue to http://www.iana.org.\n"
)


class _Counting:
    """Per-key query counts and the peak number of concurrent queries per key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    def enter(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1
            self.in_flight[key] += 1
            self.peak[key] = max(self.peak[key], self.in_flight[key])

    def leave(self, key: str) -> None:
        with self.lock:
            self.in_flight[key] -= 1

    def reset(self) -> None:
        """Forget counts and per-test switches, so one server can serve a whole test session.

        Handlers still hanging from a previous test are released first, so they cannot count as
        "in flight" in the next one.
        """
        released = getattr(self, "released", None)
        if released is not None:
            released.set()
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and sum(self.in_flight.values()) > 0:
                time.sleep(0.005)
            released.clear()
        with self.lock:
            self.counts.clear()
            self.peak.clear()
        for name in ("modes", "delay"):
            getattr(self, name, {}).clear()
        if hasattr(self, "drop"):
            self.drop = False


class _SocketServer(_Counting):
    """A socketserver in a thread: `with` starts it; leaving frees handlers stuck in 'hang' and stops it."""

    server: socketserver.BaseServer
    thread: threading.Thread
    released: threading.Event

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


class WhoisServer(_SocketServer):
    def __init__(self, answers: dict[str, bytes] | None = None):
        super().__init__()
        self.answers = {k.lower(): v for k, v in (answers or {}).items()}
        self.modes: dict[str, str] = {}
        self.delay: dict[str, float] = {}
        self.released = threading.Event()  # set on close: frees handlers stuck in 'hang'
        rig = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data = b""
                self.request.settimeout(5)
                try:
                    while not data.endswith(b"\n") and len(data) < 1024:
                        chunk = self.request.recv(1024)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    return
                query = data.decode("utf-8", "replace").strip()
                rig.serve(self.request, query)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        # A short poll interval keeps shutdown (every test's teardown) fast.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{_port(self.server)}"

    def serve(self, sock: socket.socket, query: str) -> None:
        key = query.lower()
        self.enter(key)
        try:
            if key in self.delay:
                time.sleep(self.delay[key])
            mode = self.modes.get(key)
            if mode == "hang":
                self.released.wait(30)
                return
            if mode == "empty":
                return
            if mode == "error":
                sock.sendall(ERROR_ANSWER)
                return
            answer = self.answers.get(key)
            if answer is None:
                answer = NOT_FOUND_TEMPLATE.format(q=query).encode("utf-8")
            sock.sendall(answer)
        finally:
            self.leave(key)


class RdapServer(_SocketServer):
    def __init__(self, answers: dict[str, bytes] | None = None):
        super().__init__()
        self.answers = {k.lower(): v for k, v in (answers or {}).items()}
        self.modes: dict[str, str] = {}
        self.released = threading.Event()
        rig = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                rig.handle(self)

            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{_port(self.server)}"

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        prefix = "/domain/"
        if not request.path.startswith(prefix):
            self._send(request, 400, {"errorCode": 400, "title": "Bad Request"})
            return
        key = request.path[len(prefix) :].lower()
        self.enter(key)
        try:
            mode = self.modes.get(key)
            if mode == "hang":
                self.released.wait(30)
                return
            if mode == "500":
                self._send(request, 500, {"errorCode": 500, "title": "Internal Server Error"})
                return
            body = self.answers.get(key)
            if body is None:
                self._send(request, 404, {"errorCode": 404, "title": "Not Found", "description": [f"{key} not found"]})
                return
            request.send_response(200)
            request.send_header("Content-Type", "application/rdap+json")
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)
        finally:
            self.leave(key)

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, obj: dict) -> None:
        body = json.dumps(obj).encode("utf-8")
        request.send_response(status)
        request.send_header("Content-Type", "application/rdap+json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)


def _port(server: socketserver.BaseServer) -> int:
    """The port a server bound to (0 asked the kernel for a free one)."""
    return int(server.server_address[1])  # type: ignore[index]  # an (host, port) pair for AF_INET


class DnsServer(_Counting):
    """Answers like a resolver that can see the root: `<tld>. NS` for delegated TLDs, NXDOMAIN otherwise.

    Tests set `txt[name]` (lower-case, no trailing dot) to the TXT records of a name, e.g.
    `txt["_dmarc.sidn.nl"] = [b"v=DMARC1; p=reject"]` or a DKIM key at `sel._domainkey.sidn.nl`; each
    record is one bytes value, split into 255-byte strings on the wire as real servers do. Other types at
    such a name get an empty NOERROR answer. Names in `servfail` get SERVFAIL (a broken authoritative
    server). Both are emptied by `reset()`.
    """

    def __init__(self, delegated: set[str] | None = None):
        super().__init__()
        self.delegated = {t.lower().rstrip(".") for t in (delegated or set())}
        self.drop = False  # True: read queries and never answer (an unreachable resolver)
        self.txt: dict[str, list[bytes]] = {}
        self.servfail: set[str] = set()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.02)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                wire, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(wire)
            except Exception:
                continue  # not DNS: ignore, as a real server would
            key = query.question[0].name.to_text().lower() if query.question else ""
            self.enter(key)
            try:
                if not self.drop:
                    self.sock.sendto(self.answer(query).to_wire(), peer)
            finally:
                self.leave(key)

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        if name in self.txt:
            if question.rdtype == dns.rdatatype.TXT and self.txt[name]:
                response.answer.append(
                    dns.rrset.from_rdata_list(
                        question.name,
                        300,
                        [
                            dns.rdtypes.ANY.TXT.TXT(
                                dns.rdataclass.IN,
                                dns.rdatatype.TXT,
                                [record[i : i + 255] for i in range(0, len(record), 255)] or [b""],
                            )
                            for record in self.txt[name]
                        ],
                    )
                )
            return response
        labels = question.name.relativize(dns.name.root).labels
        tld = labels[-1].decode("ascii").lower() if labels else ""
        if tld not in self.delegated:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        if len(labels) == 1 and question.rdtype == dns.rdatatype.NS:
            response.answer.append(
                dns.rrset.from_text(
                    question.name, 172800, dns.rdataclass.IN, dns.rdatatype.NS, f"a.nic.{tld}.", f"b.nic.{tld}."
                )
            )
        return response

    def reset(self) -> None:
        super().reset()
        self.txt.clear()
        self.servfail.clear()

    def __enter__(self) -> DnsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(2)
        self.sock.close()
