"""One TOML file configures the whole mesh; every section is a frozen dataclass.

Every key has a default, so an empty file is a valid config. An unknown
section or key, or a value of the wrong type or out of range, raises
`ConfigError` naming `section.key` -- a typo never silently falls back to a
default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.dashboard_config import DashboardConfig
from common.risk_config import RiskConfig
from common.router_config import RouterConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "mesh.toml"
ENV_CONFIG = "ATOMIC_MESH_CONFIG"


class ConfigError(ValueError):
    pass


def _choice(*allowed: str) -> dict[str, Any]:
    return {"choices": allowed}


def _range(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"lo": lo, "hi": hi}


@dataclass(frozen=True)
class RunConfig:
    dir: str = "run"  # relative paths are relative to the config file


@dataclass(frozen=True)
class EndpointsConfig:
    transport: str = field(default="ipc", metadata=_choice("ipc", "tcp"))
    tcp_host: str = "127.0.0.1"
    tcp_base_port: int = field(default=7100, metadata=_range(1024, 65000))
    curve_dir: str = ""  # tcp: CURVE keys (common/curve.py); required when tcp_host is not loopback
    curve_client: str = "client"  # this node's client key pair in curve_dir
    # Where this node's logger serves catch-up ranges (default tcp_host, tcp_base_port + 4):
    # a follower node keeps its own replica log and its services catch up from it.
    logger_host: str = ""
    logger_port: int = field(default=0, metadata=_range(0, 65535))

    def __post_init__(self) -> None:
        if self.curve_dir and self.transport != "tcp":
            raise ValueError('curve_dir encrypts tcp endpoints: set transport = "tcp", or leave curve_dir empty')
        if (self.logger_host or self.logger_port) and self.transport != "tcp":
            raise ValueError('logger_host / logger_port place the logger on tcp: set transport = "tcp"')
        if not self.tcp_host:
            raise ValueError("tcp_host is empty")
        for key in ("tcp_host", "logger_host"):
            host = getattr(self, key)
            if ":" in host or host.startswith("["):
                raise ValueError(f"{key} {host!r}: IPv6 addresses are not supported (the sockets are IPv4)")
            if self.transport == "tcp" and host and not self.curve_dir and not _loopback(host):
                raise ValueError(
                    f"{key} {host!r} is not a loopback address: tcp beyond this host needs curve_dir "
                    "(encryption and an allowlist of client keys; python -m common.curve keygen DIR)"
                )


def _check_source_name(what: str, name: str) -> None:
    """A producer's source name: keys are "source:epoch:seq:n", so it holds no ':'."""
    if not name or ":" in name:
        raise ValueError(f"{what} {name!r} must be non-empty and without ':'")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


@dataclass(frozen=True)
class SocketsConfig:
    # HWMs are in frames; a stream frame holds up to sequencer.batch_max events.
    pub_hwm: int = field(default=4000, metadata=_range(1))
    sub_hwm: int = field(default=4000, metadata=_range(1))
    push_hwm: int = field(default=20000, metadata=_range(1))
    pull_hwm: int = field(default=20000, metadata=_range(1))
    linger_ms: int = field(default=500, metadata=_range(0))
    reconnect_ivl_ms: int = field(default=20, metadata=_range(1))
    reconnect_ivl_max_ms: int = field(default=500, metadata=_range(1))


@dataclass(frozen=True)
class IngestConfig:
    """Producer side of exactly-once ingest."""

    max_inflight: int = field(default=20000, metadata=_range(1))
    resend_ms: int = field(default=500, metadata=_range(10))
    hello_timeout_ms: int = field(default=500, metadata=_range(10))


@dataclass(frozen=True)
class SequencerConfig:
    batch_max: int = field(default=64, metadata=_range(1, 4096))
    clock_interval_ms: int = field(default=100, metadata=_range(1, 60000))
    heartbeat_interval_ms: int = field(default=1000, metadata=_range(10))
    journal_dir: str = "journal"  # under run.dir unless absolute
    segment_bytes: int = field(default=64 << 20, metadata=_range(4096))
    fsync: str = field(default="none", metadata=_choice("none", "batch", "interval"))
    fsync_interval_ms: int = field(default=100, metadata=_range(1))


@dataclass(frozen=True)
class LoggerConfig:
    log_dir: str = "log"  # under run.dir unless absolute
    segment_bytes: int = field(default=64 << 20, metadata=_range(4096))
    fsync: str = field(default="none", metadata=_choice("none", "batch", "interval"))
    fsync_interval_ms: int = field(default=200, metadata=_range(1))
    repair_timeout_ms: int = field(default=1000, metadata=_range(10))
    idle_probe_ms: int = field(default=1000, metadata=_range(10))


@dataclass(frozen=True)
class FeedConfig:
    source: str = field(default="synthetic", metadata=_choice("synthetic", "replay", "binance"))
    symbols: tuple[str, ...] = ("BTCUSDT",)
    seed: int = 1
    rate: float = field(default=500.0, metadata=_range(0))  # events/s; 0 = full speed
    max_events: int = field(default=0, metadata=_range(0))  # 0 = unlimited
    levels: int = field(default=20, metadata=_range(1, 1000))
    replay_files: tuple[str, ...] = ()
    replay_speed: float = field(default=1.0, metadata=_range(0))  # 0 = full speed
    ws_url: str = "wss://stream.binance.com:9443"
    rest_url: str = "https://api.binance.com"
    snapshot_limit: int = field(default=1000, metadata=_range(5, 5000))
    record: str = ""
    max_line_bytes: int = field(default=1 << 20, metadata=_range(1024))
    reconnect_min_ms: int = field(default=250, metadata=_range(1))
    reconnect_max_ms: int = field(default=30000, metadata=_range(1))


@dataclass(frozen=True)
class SymbolsConfig:
    exchange_info: str = ""  # path to a Binance exchangeInfo JSON; "" = built-in table


@dataclass(frozen=True)
class StrategyConfig:
    """The market maker. Units: prices in pipettes, sizes in atoms, ratios in
    bps or ppm, exactly as the hot-path kernels take them (common/hotpath)."""

    name: str = "strategy"  # producer id and heartbeat name; run several with different names
    symbols: tuple[str, ...] = ("BTCUSDT",)
    model: str = field(default="mm", metadata=_choice("mm", "as"))  # mm = seed-style, as = Avellaneda-Stoikov
    order_qty: int = field(default=100_000, metadata=_range(1))
    max_inventory: int = field(default=20_000_000, metadata=_range(1))
    half_spread: int = field(default=10, metadata=_range(0))
    gamma_ppm: int = field(default=100_000, metadata=_range(0))
    warmup: int = field(default=3, metadata=_range(0))
    cooldown: int = field(default=2, metadata=_range(0))
    requote_threshold: int = field(default=5, metadata=_range(0))
    vpin_window: int = field(default=200, metadata=_range(1, 1024))
    toxic_bps: int = field(default=8000, metadata=_range(0, 10001))
    min_trades: int = field(default=50, metadata=_range(0, 1025))
    microprice_levels: int = field(default=5, metadata=_range(1, 64))
    spot: bool = True
    # Per pipette: 30 ppm keeps BTCUSDT quotes within ~0.5% of mid on the real
    # capture; 1000 (1 per cent-of-a-dollar) put 1 in 5 quotes more than 1% away.
    as_gamma_ppm: int = field(default=30, metadata=_range(1))
    as_horizon_ms: int = field(default=60_000, metadata=_range(1))
    as_kappa_ppm: int = field(default=100_000, metadata=_range(1))
    # Price slots (ticks) a side in the kernel book's ladder; every level within half of it
    # from the best is kept (65,536: $327 of BTCUSDT at a $0.01 tick; a REST snapshot's
    # 1,000 levels spanned about $210). 1 MiB per symbol.
    book_slots: int = field(default=65_536, metadata=_range(64, 1 << 22))
    # After risk refuses an intent, no new order on that symbol and side for this long
    # (sequencer time), doubling with each refusal in a row up to the max, until risk
    # approves one again: a tripped breaker or kill switch otherwise meets an intent
    # every `cooldown` book updates. 0 = resend at the next quote.
    reject_backoff_ms: int = field(default=1000, metadata=_range(0))
    reject_backoff_max_ms: int = field(default=60_000, metadata=_range(0))
    hash_every: int = field(default=1000, metadata=_range(1))
    snapshot_every: int = field(default=10_000, metadata=_range(1))
    # Other instances run side by side with these parameters: [name, "SYM1,SYM2"] each
    # (`python -m services.strategy --name NAME` takes its symbols from here). The
    # verifier and the backtester run every instance declared here.
    instances: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.reject_backoff_max_ms < self.reject_backoff_ms:
            raise ValueError(
                f"reject_backoff_max_ms ({self.reject_backoff_max_ms}) must be >= reject_backoff_ms "
                f"({self.reject_backoff_ms}) (reject_backoff_ms = 0 turns the backoff off)"
            )
        names = [self.name] + [n for n, _ in self.instances]
        for n in names:
            _check_source_name("instance name", n)
        if len(set(names)) != len(names):
            raise ValueError(f"instance names must differ: {names}")
        for n, syms in self.instances:
            if not instance_symbols(syms):
                raise ValueError(f"instance {n!r} has no symbols")

    def instance(self, name: str) -> StrategyConfig:
        """This config as instance `name` runs it (its name and symbols)."""
        for n, syms in self.instances:
            if n == name:
                return dataclasses.replace(self, name=n, symbols=instance_symbols(syms), instances=())
        raise KeyError(name)

    def all_instances(self) -> list[StrategyConfig]:
        """The configured instance first, then every declared one."""
        return [dataclasses.replace(self, instances=())] + [self.instance(n) for n, _ in self.instances]


def instance_symbols(text: str) -> tuple[str, ...]:
    return tuple(s.strip().upper() for s in text.split(",") if s.strip())


@dataclass(frozen=True)
class ExecutionConfig:
    venue: str = field(default="sim", metadata=_choice("sim", "binance"))
    maker_fee_bps: int = field(default=2, metadata=_range(-10000, 10000))
    order_latency_ms: int = field(default=5, metadata=_range(0))
    feed_latency_ms: int = field(default=0, metadata=_range(0))
    hash_every: int = field(default=1000, metadata=_range(1))
    snapshot_every: int = field(default=10_000, metadata=_range(1))
    binance_rest_url: str = "https://api.binance.com"
    binance_ws_url: str = "wss://stream.binance.com:9443"
    binance_key_file: str = ""  # else $BINANCE_API_KEY / $BINANCE_API_SECRET
    binance_recv_window_ms: int = field(default=5000, metadata=_range(1, 60000))
    # A child order sequenced while execution was down is sent on recovery only
    # if it is at most this old (sequencer clock); older ones are rejected as stale.
    late_submit_ms: int = field(default=2000, metadata=_range(0))
    # A live venue's requests go out one at a time: a submit that waited longer than this
    # behind them is rejected locally instead of sent late (0 = no limit).
    max_submit_wait_ms: int = field(default=2000, metadata=_range(0))


@dataclass(frozen=True)
class VerifierConfig:
    # The verifier snapshots every core it replays (seq % snapshot_every == 0 and
    # on stop), so a restart resumes there instead of replaying from seq 1.
    snapshot_every: int = field(default=10_000, metadata=_range(1))
    # Its source name on the stream (heartbeats, HashDivergence): a follower node's
    # verifier needs its own, since the sequencer orders and dedups by source.
    name: str = "verifier"

    def __post_init__(self) -> None:
        _check_source_name("name", self.name)


@dataclass(frozen=True)
class MeshConfig:
    run: RunConfig = RunConfig()
    endpoints: EndpointsConfig = EndpointsConfig()
    sockets: SocketsConfig = SocketsConfig()
    ingest: IngestConfig = IngestConfig()
    sequencer: SequencerConfig = SequencerConfig()
    logger: LoggerConfig = LoggerConfig()
    feed: FeedConfig = FeedConfig()
    symbols: SymbolsConfig = SymbolsConfig()
    strategy: StrategyConfig = StrategyConfig()
    risk: RiskConfig = RiskConfig()
    router: RouterConfig = RouterConfig()
    execution: ExecutionConfig = ExecutionConfig()
    verifier: VerifierConfig = VerifierConfig()
    dashboard: DashboardConfig = DashboardConfig()
    base_dir: str = ""  # directory of the config file; set by load()

    @property
    def run_dir(self) -> Path:
        return self.resolve(self.run.dir)

    def resolve(self, path: str, under: Path | None = None) -> Path:
        p = Path(os.path.expanduser(path))
        if p.is_absolute():
            return p
        return (under if under is not None else Path(self.base_dir or REPO_ROOT)) / p

    def under_run(self, path: str) -> Path:
        return self.resolve(path, self.run_dir)


def _check_value(where: str, hint: Any, meta: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if dataclasses.is_dataclass(item):
            return tuple(_build_section(f"{where}[{i}]", item, v) for i, v in enumerate(value))
        if typing.get_origin(item) is tuple:
            if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in value):
                raise ConfigError(f"{where}: expected a list of lists of strings, got {value!r}")
            return tuple(tuple(v) for v in value)
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        value = tuple(value)
    elif hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{where}: {value!r} is not a finite number")
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(meta['choices'])}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and value < lo:
        raise ConfigError(f"{where}: {value!r} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{where}: {value!r} is above the maximum {hi}")
    return value


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(MeshConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(MeshConfig) if f.name != "base_dir"}


def _build_section(name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key {name}.{unknown[0]} (known: {', '.join(sorted(fields))})")
    values = {}
    for key, value in raw.items():
        values[key] = _check_value(f"{name}.{key}", hints[key], fields[key].metadata, value)
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:  # a section's own cross-field checks
        raise ConfigError(f"[{name}]: {exc}") from None


def from_dict(data: dict[str, Any], base_dir: str = "") -> MeshConfig:
    sections = _section_types()
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}] (known: {', '.join(sorted(sections))})")
    built = {name: _build_section(name, cls, data.get(name, {})) for name, cls in sections.items()}
    return MeshConfig(**built, base_dir=base_dir)


def load(path: str | os.PathLike[str] | None = None) -> MeshConfig:
    """Load the config: explicit path, else $ATOMIC_MESH_CONFIG, else the repo's mesh.toml."""
    chosen = Path(path or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG)
    try:
        text = chosen.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {chosen}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{chosen}: {exc}") from None
    return from_dict(data, base_dir=str(chosen.resolve().parent))


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def replace(cfg: MeshConfig, section: str, **changes: Any) -> MeshConfig:
    """A copy of cfg with some keys of one section changed (validated)."""
    if section not in _section_types():
        raise ConfigError(f"unknown section [{section}]")
    sec = getattr(cfg, section)
    raw = {f.name: getattr(sec, f.name) for f in dataclasses.fields(sec)}
    raw.update(changes)
    raw = {k: _plain(v) for k, v in raw.items()}
    return dataclasses.replace(cfg, **{section: _build_section(section, type(sec), raw)})
