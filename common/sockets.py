"""Every ZeroMQ socket of the mesh is built here, from the config.

Endpoints are ipc:// files in the run directory by default (the directory is
created 0700 so only the service user can reach them), or tcp:// on
consecutive ports when `endpoints.transport = "tcp"` (encrypted, and open only
to authorized client keys, with `endpoints.curve_dir`: common/curve.py). HWM, linger and the
reconnect interval are set explicitly on every socket: zmq's defaults (1000
frames, infinite linger) are wrong for this mesh in opposite directions.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import zmq

from common import curve
from common.config import MeshConfig

# Order matters: it is the tcp port offset.
ENDPOINTS = (
    "ingest_md",  # sequencer PULL: market data
    "ingest_ctl",  # sequencer PULL: everything else, drained first
    "stream",  # sequencer PUB: the sequenced stream
    "sequencer_ctl",  # sequencer ROUTER: hello (last source seq) and journal re-sends
    "logger_ctl",  # logger ROUTER: log ranges for catch-up
)


def free_tcp_base(count: int = len(ENDPOINTS), start: int = 23_000) -> int:
    """A base port whose `count` consecutive ports on 127.0.0.1 are free now, below the
    kernel's ephemeral range (for tests and benchmarks that run the mesh on tcp)."""
    for base in range(start, 32_000, 97):
        held: list[socket.socket] = []
        try:
            for off in range(count):
                held.append(socket.socket())
                held[-1].bind(("127.0.0.1", base + off))
            return base
        except OSError:
            continue
        finally:
            for h in held:
                h.close()
    raise RuntimeError("no free tcp ports")


def ensure_run_dir(cfg: MeshConfig) -> Path:
    run = cfg.run_dir
    run.mkdir(parents=True, exist_ok=True)
    os.chmod(run, 0o700)
    return run


def endpoint(cfg: MeshConfig, name: str) -> str:
    if name not in ENDPOINTS:
        raise KeyError(f"unknown endpoint {name!r}")
    e = cfg.endpoints
    if e.transport == "tcp":
        if name == "logger_ctl" and (e.logger_host or e.logger_port):
            return f"tcp://{e.logger_host or e.tcp_host}:{e.logger_port or e.tcp_base_port + ENDPOINTS.index(name)}"
        return f"tcp://{e.tcp_host}:{e.tcp_base_port + ENDPOINTS.index(name)}"
    path = cfg.run_dir / f"{name}.sock"
    if len(str(path)) > 100:
        raise ValueError(f"ipc path {path} is longer than the 107-byte unix socket limit allows; shorten run.dir")
    return f"ipc://{path}"


def _common(sock: zmq.Socket, cfg: MeshConfig) -> zmq.Socket:
    s = cfg.sockets
    sock.setsockopt(zmq.LINGER, s.linger_ms)
    sock.setsockopt(zmq.RECONNECT_IVL, s.reconnect_ivl_ms)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, s.reconnect_ivl_max_ms)
    return sock


def _secure(sock: zmq.Socket, cfg: MeshConfig, server: bool) -> None:
    try:
        (curve.server if server else curve.client)(sock, cfg)
    except Exception:
        sock.close(linger=0)  # a key problem must not leave a socket behind
        raise


def bind(sock: zmq.Socket, cfg: MeshConfig, name: str) -> zmq.Socket:
    ep = endpoint(cfg, name)
    _secure(sock, cfg, server=True)
    if ep.startswith("ipc://"):
        ensure_run_dir(cfg)
        # A stale file from a killed process would make bind succeed on a
        # path nobody else can reach; remove it first.
        Path(ep[6:]).unlink(missing_ok=True)
    sock.bind(ep)
    return sock


def connect(sock: zmq.Socket, cfg: MeshConfig, name: str) -> zmq.Socket:
    ep = endpoint(cfg, name)
    _secure(sock, cfg, server=False)
    sock.connect(ep)
    return sock


def pull(ctx: zmq.Context, cfg: MeshConfig, name: str) -> zmq.Socket:
    sock = _common(ctx.socket(zmq.PULL), cfg)
    sock.setsockopt(zmq.RCVHWM, cfg.sockets.pull_hwm)
    return bind(sock, cfg, name)


def push(ctx: zmq.Context, cfg: MeshConfig, name: str) -> zmq.Socket:
    sock = _common(ctx.socket(zmq.PUSH), cfg)
    sock.setsockopt(zmq.SNDHWM, cfg.sockets.push_hwm)
    return connect(sock, cfg, name)


def pub(ctx: zmq.Context, cfg: MeshConfig, name: str = "stream") -> zmq.Socket:
    sock = _common(ctx.socket(zmq.PUB), cfg)
    sock.setsockopt(zmq.SNDHWM, cfg.sockets.pub_hwm)
    return bind(sock, cfg, name)


def sub(ctx: zmq.Context, cfg: MeshConfig, name: str = "stream") -> zmq.Socket:
    sock = _common(ctx.socket(zmq.SUB), cfg)
    sock.setsockopt(zmq.RCVHWM, cfg.sockets.sub_hwm)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    return connect(sock, cfg, name)


def router(ctx: zmq.Context, cfg: MeshConfig, name: str) -> zmq.Socket:
    sock = _common(ctx.socket(zmq.ROUTER), cfg)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
    return bind(sock, cfg, name)


def dealer(ctx: zmq.Context, cfg: MeshConfig, name: str) -> zmq.Socket:
    sock = _common(ctx.socket(zmq.DEALER), cfg)
    sock.setsockopt(zmq.LINGER, 0)  # an unanswered request is simply re-asked
    return connect(sock, cfg, name)
