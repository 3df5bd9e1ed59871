"""common.curve: tcp endpoints encrypted and open only to authorized client keys.

Real ZeroMQ sockets on 127.0.0.1, made by common.sockets from the config as the services
make theirs: an authorized client's messages arrive; a stranger's (its own key pair, the
server's public key) and a plaintext peer's never reach the service."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
import zmq

from common import curve, sockets
from common.config import ConfigError, from_dict
from common.sockets import free_tcp_base

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")


def _cfg(tmp_path: Path, keys: Path | None, **endpoints: object):
    ep = {"transport": "tcp", "tcp_base_port": free_tcp_base(), **endpoints}
    if keys is not None:
        ep["curve_dir"] = str(keys)
    return from_dict({"endpoints": ep, "run": {"dir": str(tmp_path / "run")}})


def _recv_within(sock: zmq.Socket, seconds: float) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sock.poll(50):
            got.append(sock.recv())
    return got


def test_tcp_off_loopback_needs_curve_and_curve_needs_tcp(tmp_path: Path) -> None:
    for host in ("10.0.0.5", "mesh.example.com", "0.0.0.0"):
        with pytest.raises(ConfigError, match="not a loopback address"):
            from_dict({"endpoints": {"transport": "tcp", "tcp_host": host}})
    for host in ("127.0.0.1", "127.0.0.2", "localhost"):
        assert from_dict({"endpoints": {"transport": "tcp", "tcp_host": host}}).endpoints.tcp_host == host
    for host in ("::1", "[::1]"):  # the sockets are IPv4: refused, not a bind failure later
        with pytest.raises(ConfigError, match="IPv6"):
            from_dict({"endpoints": {"transport": "tcp", "tcp_host": host}})
    with pytest.raises(ConfigError, match="tcp_host is empty"):
        from_dict({"endpoints": {"transport": "tcp", "tcp_host": ""}})
    with pytest.raises(ConfigError, match="place the logger on tcp"):
        from_dict({"endpoints": {"logger_port": 9000}})
    ok = from_dict({"endpoints": {"transport": "tcp", "tcp_host": "10.0.0.5", "curve_dir": "keys"}})
    assert ok.endpoints.curve_dir == "keys"
    with pytest.raises(ConfigError, match="curve_dir encrypts tcp"):
        from_dict({"endpoints": {"curve_dir": "keys"}})


def test_keygen_writes_private_keys_once_and_authorizes_its_client(tmp_path: Path) -> None:
    d = tmp_path / "keys"
    first = curve.keygen(d)
    assert {p.name for p in first} == {"server.key", "server.key_secret", "client.key", "client.key_secret"} | {
        "client.key"
    }
    assert (d / "authorized" / "client.key").read_bytes() == (d / "client.key").read_bytes()
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for sec in ("server.key_secret", "client.key_secret"):
        assert stat.S_IMODE((d / sec).stat().st_mode) == 0o600
    server_key = (d / "server.key_secret").read_bytes()
    assert curve.keygen(d) == []  # idempotent: nothing overwritten
    second = curve.keygen(d, "host-b")
    assert {p.name for p in second} == {"host-b.key", "host-b.key_secret"}
    assert (d / "server.key_secret").read_bytes() == server_key
    assert (d / "authorized" / "host-b.key").exists()
    with pytest.raises(ValueError):
        curve.keygen(d, "server")
    assert curve.main(["keygen", str(d)]) == 0
    # A host given only the server's public key (a client host) never gets a new server pair
    # that would no longer match the real one.
    other = tmp_path / "client-host"
    other.mkdir()
    (other / "server.key").write_bytes((d / "server.key").read_bytes())
    with pytest.raises(ValueError, match="copy server.key_secret"):
        curve.keygen(other, "c2")
    assert (other / "server.key").read_bytes() == (d / "server.key").read_bytes()


def test_an_authorized_client_gets_through_and_strangers_do_not(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    curve.keygen(keys)
    cfg = _cfg(tmp_path, keys)
    ctx = zmq.Context()
    try:
        pull = sockets.pull(ctx, cfg, "ingest_ctl")
        pub = sockets.pub(ctx, cfg, "stream")
        ep_in, ep_stream = sockets.endpoint(cfg, "ingest_ctl"), sockets.endpoint(cfg, "stream")
        server_pub = (keys / "server.key").read_bytes().split(b'public-key = "')[1][:40]

        stranger = ctx.socket(zmq.PUSH)  # its own key pair, and the server's public key
        stranger.curve_publickey, stranger.curve_secretkey = zmq.curve_keypair()
        stranger.curve_serverkey = server_pub
        stranger.linger = 0
        stranger.connect(ep_in)
        plain = ctx.socket(zmq.PUSH)
        plain.linger = 0
        plain.connect(ep_in)
        for s in (stranger, plain):
            s.send(b"forged order", zmq.NOBLOCK) if s.poll(0, zmq.POLLOUT) else None

        member = sockets.push(ctx, cfg, "ingest_ctl")
        member.send(b"from a member")
        got = _recv_within(pull, 1.5)  # the member's frame comes within this window; nobody else's does
        assert got == [b"from a member"]

        eavesdropper = ctx.socket(zmq.SUB)
        eavesdropper.curve_publickey, eavesdropper.curve_secretkey = zmq.curve_keypair()
        eavesdropper.curve_serverkey = server_pub
        eavesdropper.subscribe(b"")
        eavesdropper.linger = 0
        eavesdropper.connect(ep_stream)
        reader = sockets.sub(ctx, cfg, "stream")
        heard: list[bytes] = []
        deadline = time.monotonic() + 10
        while not heard and time.monotonic() < deadline:  # until the member's subscription has joined
            pub.send(b"sequenced")
            heard += _recv_within(reader, 0.05)
        assert heard, "the authorized subscriber never received the stream"
        for _ in range(20):
            pub.send(b"sequenced")
        assert _recv_within(eavesdropper, 0.5) == []

        # Fail closed: with no ZAP handler to ask, even a member's new connection is refused.
        curve.release(ctx)
        late = sockets.push(ctx, cfg, "ingest_ctl")
        late.send(b"after the handler stopped", zmq.NOBLOCK) if late.poll(0, zmq.POLLOUT) else None
        assert _recv_within(pull, 0.5) == []
        for s in (stranger, plain, member, late, eavesdropper, reader, pull, pub):
            s.close(linger=0)
    finally:
        curve.release(ctx)
        ctx.destroy(linger=0)


def test_missing_keys_are_named_with_the_command_that_makes_them(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, tmp_path / "nokeys")
    ctx = zmq.Context()
    try:
        with pytest.raises(ConfigError, match="python -m common.curve keygen"):
            sockets.push(ctx, cfg, "ingest_ctl")
        keys = tmp_path / "keys"
        curve.keygen(keys)
        (keys / "client.key_secret").chmod(0o644)
        with pytest.raises(ConfigError, match="readable by others"):
            sockets.push(ctx, _cfg(tmp_path, keys), "ingest_ctl")
        (keys / "server.key_secret").unlink()  # a follower given only the public key: named, with the fix
        with pytest.raises(ConfigError, match="copy it from the sequencer's host"):
            sockets.pull(ctx, _cfg(tmp_path, keys), "ingest_ctl")
    finally:
        curve.release(ctx)
        ctx.destroy(linger=0)


def test_a_follower_nodes_logger_endpoint_and_verifier_name(tmp_path: Path) -> None:
    cfg = from_dict(
        {"endpoints": {"transport": "tcp", "tcp_base_port": 7100, "logger_port": 9000}, "verifier": {"name": "v-b"}}
    )
    assert sockets.endpoint(cfg, "logger_ctl") == "tcp://127.0.0.1:9000"
    assert sockets.endpoint(cfg, "sequencer_ctl") == "tcp://127.0.0.1:7103"  # the leader's, as before
    leader = from_dict({"endpoints": {"transport": "tcp", "tcp_base_port": 7100}})
    assert sockets.endpoint(leader, "logger_ctl") == "tcp://127.0.0.1:7104"
    with pytest.raises(ConfigError, match="logger_host '10.1.1.1' is not a loopback address"):
        from_dict({"endpoints": {"transport": "tcp", "logger_host": "10.1.1.1"}})
    for bad in ("", "v:b"):
        with pytest.raises(ConfigError, match="verifier"):
            from_dict({"verifier": {"name": bad}})


def test_check_says_what_a_hosts_keys_allow_and_what_is_wrong(tmp_path: Path) -> None:
    leader = tmp_path / "leader"
    curve.keygen(leader)
    facts, problems = curve.check(leader)
    assert problems == [] and any("can bind" in f for f in facts) and any("can connect" in f for f in facts)
    assert curve.main(["check", str(leader)]) == 0

    client_host = tmp_path / "client-host"  # what a host running only clients is given
    client_host.mkdir()
    for f in ("server.key", "client.key_secret"):
        (client_host / f).write_bytes((leader / f).read_bytes())
    (client_host / "client.key_secret").chmod(0o600)
    facts, problems = curve.check(client_host)
    assert problems == [] and any("cannot bind" in f for f in facts)

    (client_host / "client.key_secret").chmod(0o644)
    assert any("readable by others" in p for p in curve.check(client_host)[1])
    assert curve.main(["check", str(client_host)]) == 1

    other = tmp_path / "other"
    curve.keygen(other)
    (leader / "server.key").write_bytes((other / "server.key").read_bytes())  # a pair torn apart
    assert any("not one pair" in p for p in curve.check(leader)[1])
    for f in (leader / "authorized").iterdir():
        f.unlink()
    assert any("no one could connect" in p for p in curve.check(leader)[1])
