"""Free tcp ports for tests that run the mesh on tcp://127.0.0.1."""

from __future__ import annotations

import socket


def free_tcp_base(count: int = 5, start: int = 23_000) -> int:
    """A base port whose `count` consecutive ports are free now (the mesh binds base + 0..4)."""
    for base in range(start, 60_000, 97):
        held: list[socket.socket] = []
        try:
            for off in range(count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", base + off))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free tcp ports")
