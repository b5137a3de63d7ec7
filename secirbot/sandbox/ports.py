"""Owns the choice of loopback TCP ports for the test rigs.

The kernel picks a free port when a socket binds port 0; the port is released again before the
server that wants it binds it, so there is a small window in which another process could take it.
That race is accepted: the alternatives (fixed port ranges, retries in every rig) cost more than
the rare flake on a busy CI host.
"""

from __future__ import annotations

import contextlib
import socket

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free ports.

    All sockets are held open until every port is read, so the kernel cannot hand out the same
    port twice (calling :func:`free_port` repeatedly can).
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(sock.getsockname()[1])
        return ports
