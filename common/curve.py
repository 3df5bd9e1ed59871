"""CURVE encryption and client authentication for the mesh's tcp endpoints.

With `endpoints.transport = "tcp"` the mesh's sockets can span hosts. Plain
tcp would let anyone who reaches a port read the stream and, worse, push
orders into the sequencer, so off the loopback address the config refuses
tcp without `endpoints.curve_dir`. With it, every socket speaks CURVE
(ZeroMQ's CurveZMQ: Curve25519 keys, every frame encrypted and
authenticated):

* a socket that binds (the sequencer's ingest, stream and control
  endpoints, the logger's) is a CURVE server holding the mesh's server key,
  and accepts a connection only from a client whose public key is in
  `<curve_dir>/authorized/` (checked by a ZAP handler thread in that
  process, which reads the directory when the process starts; anyone
  else's handshake is refused and nothing reaches the service);
* a socket that connects holds the node's client key pair
  (`endpoints.curve_client`, default "client") and the server's public key.

Key files are ZeroMQ's certificate files (`zmq.auth`): `NAME.key` holds a
public key, `NAME.key_secret` the pair (mode 0600). One directory serves a
single host; across hosts, the sequencer's host and every follower (whose
logger serves catch-up) need `server.key_secret` and `authorized/`, and each
other host `server.key` plus its own `<client>.key_secret`, whose `.key`
goes into the `authorized/` of every host that binds.
`python -m common.curve keygen DIR [--client NAME]` makes them (keeping any
that exist); `check DIR [--client NAME]` says what a host's directory lets
it do and what is wrong with it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from common.config import ConfigError, MeshConfig

SERVER = "server"
AUTHORIZED = "authorized"
ZAP_DOMAIN = b"atomic-mesh"

_auth_lock = threading.Lock()
_authenticators: dict[int, tuple[zmq.Context, ThreadAuthenticator]] = {}


def keygen(d: Path, client: str = "client") -> list[Path]:
    """Create the server key pair (if missing) and client `client`'s (if missing), and
    authorize that client. Returns the files written."""
    if not client or "/" in client or client in (SERVER, AUTHORIZED):
        raise ValueError(f"client name {client!r} is not allowed")
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    (d / AUTHORIZED).mkdir(exist_ok=True)
    written: list[Path] = []
    for name in (SERVER, client):
        if (d / f"{name}.key_secret").exists():
            continue
        if (d / f"{name}.key").exists():
            # A public key without its secret was copied here from another host (a
            # follower's server.key): a new pair would no longer match the original.
            raise ValueError(f"{d / name}.key exists without its secret: copy {name}.key_secret from its host")
        old = os.umask(0o077)  # the secret file is never readable by others, not even briefly
        try:
            pub, sec = zmq.auth.create_certificates(d, name)
        finally:
            os.umask(old)
        os.chmod(sec, 0o600)
        os.chmod(pub, 0o644)
        written += [Path(pub), Path(sec)]
    dest = d / AUTHORIZED / f"{client}.key"
    if not dest.exists():
        shutil.copyfile(d / f"{client}.key", dest)
        written.append(dest)
    return written


def _load(path: Path, what: str, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        if path.name.startswith(SERVER) and (path.parent / f"{SERVER}.key").exists():
            fix = "copy it from the sequencer's host (a node whose logger serves catch-up needs the server key pair)"
        else:
            fix = f"make it with: python -m common.curve keygen {path.parent}"
        raise ConfigError(f"endpoints.curve_dir: {path} is missing ({what}); {fix}")
    if secret and path.stat().st_mode & 0o077:
        raise ConfigError(f"endpoints.curve_dir: {path} holds a secret key readable by others (chmod 600 it)")
    pub, sec = zmq.auth.load_certificate(path)
    if secret and sec is None:
        raise ConfigError(f"endpoints.curve_dir: {path} holds no secret key")
    return pub, sec


def curve_dir(cfg: MeshConfig) -> Path | None:
    e = cfg.endpoints
    return cfg.resolve(e.curve_dir) if e.transport == "tcp" and e.curve_dir else None


def _authenticator(ctx: zmq.Context, d: Path) -> None:
    """One ZAP handler per context (it must share the server sockets' context), started on
    the first server socket; it allows the public keys in `<d>/authorized/`."""
    with _auth_lock:
        if id(ctx) in _authenticators:
            return
        allowed = d / AUTHORIZED
        if not allowed.is_dir() or not any(allowed.glob("*.key")):
            raise ConfigError(f"endpoints.curve_dir: {allowed} holds no client key: no one could connect")
        auth = ThreadAuthenticator(ctx)
        auth.start()
        auth.configure_curve(domain=ZAP_DOMAIN.decode(), location=str(allowed))
        _authenticators[id(ctx)] = (ctx, auth)


def release(ctx: zmq.Context) -> None:
    """Stop the context's ZAP handler before the context is destroyed (services keep theirs
    for the life of the process; tests make and destroy contexts)."""
    with _auth_lock:
        entry = _authenticators.pop(id(ctx), None)
    if entry is not None:
        entry[1].stop()


def server(sock: zmq.Socket, cfg: MeshConfig) -> None:
    """Make a binding socket a CURVE server, if the config asks for CURVE (call before bind)."""
    d = curve_dir(cfg)
    if d is None:
        return
    pub, sec = _load(d / f"{SERVER}.key_secret", "the mesh's server key pair", secret=True)
    _authenticator(sock.context, d)
    sock.curve_publickey = pub
    sock.curve_secretkey = sec
    sock.zap_domain = ZAP_DOMAIN
    # Without a ZAP handler libzmq would let any CURVE client in: refuse instead.
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    sock.curve_server = True


def client(sock: zmq.Socket, cfg: MeshConfig) -> None:
    """Give a connecting socket this node's client keys and the server's public key (before connect)."""
    d = curve_dir(cfg)
    if d is None:
        return
    name = cfg.endpoints.curve_client
    server_pub, _ = _load(d / f"{SERVER}.key", "the server's public key", secret=False)
    pub, sec = _load(d / f"{name}.key_secret", f"client {name!r}'s key pair", secret=True)
    sock.curve_serverkey = server_pub
    sock.curve_publickey = pub
    sock.curve_secretkey = sec


def check(d: Path, client: str = "client") -> tuple[list[str], list[str]]:
    """What a host with key directory `d` can do, and what is wrong: (facts, problems)."""
    facts: list[str] = []
    problems: list[str] = []

    def load(path: Path, secret: bool) -> bytes | None:
        try:
            return _load(path, path.name, secret)[0]
        except ConfigError as exc:
            problems.append(str(exc).removeprefix("endpoints.curve_dir: "))
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: unreadable ({exc})")
        return None

    server_pub = load(d / f"{SERVER}.key", secret=False)
    if (d / f"{SERVER}.key_secret").exists():
        pair = load(d / f"{SERVER}.key_secret", secret=True)
        if pair is not None and server_pub is not None and pair != server_pub:
            problems.append(f"{SERVER}.key and {SERVER}.key_secret are not one pair")
        allowed = sorted((d / AUTHORIZED).glob("*.key")) if (d / AUTHORIZED).is_dir() else []
        if pair is not None and allowed:
            facts.append(f"can bind (sequencer, logger): {len(allowed)} authorized client key(s)")
        elif pair is not None:
            problems.append(f"{d / AUTHORIZED} holds no client key: no one could connect to this host")
        for f in allowed:
            load(f, secret=False)
    else:
        facts.append("cannot bind: no server secret (a host running only clients)")
    mine = load(d / f"{client}.key_secret", secret=True)
    if mine is not None and server_pub is not None:
        facts.append(f"can connect as {client!r}")
        peer = d / AUTHORIZED / f"{client}.key"
        if (d / f"{SERVER}.key_secret").exists() and not peer.exists():
            problems.append(f"{client!r} is not in this host's {AUTHORIZED}/: its own services could not connect here")
    return facts, problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m common.curve", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keygen", help="make the server key pair and a client's, and authorize the client")
    k.add_argument("dir", type=Path, help="the key directory (endpoints.curve_dir)")
    k.add_argument("--client", default="client", help="the client key pair's name (endpoints.curve_client)")
    c = sub.add_parser("check", help="say what this host's key directory lets it do, and what is wrong with it")
    c.add_argument("dir", type=Path, help="the key directory (endpoints.curve_dir)")
    c.add_argument("--client", default="client", help="this host's client key pair (endpoints.curve_client)")
    args = p.parse_args(argv)
    if not zmq.has("curve"):
        print("this libzmq was built without CURVE support", file=sys.stderr)
        return 1
    if args.cmd == "check":
        facts, problems = check(args.dir, args.client)
        for line in facts:
            print(f"ok: {line}")
        for line in problems:
            print(f"problem: {line}")
        return 1 if problems else 0
    try:
        written = keygen(args.dir, args.client)
    except (OSError, ValueError) as exc:
        print(f"keygen failed: {exc}", file=sys.stderr)
        return 1
    for f in written:
        print(f"wrote {f}")
    if not written:
        print(f"{args.dir}: every key already exists; nothing written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
