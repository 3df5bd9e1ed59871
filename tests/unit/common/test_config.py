"""common.config: one TOML file, every key defaulted, every mistake named."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from common import config
from common.config import ConfigError, MeshConfig, from_dict, load, replace

REPO_TOML = Path(__file__).resolve().parents[3] / "mesh.toml"


def _write(tmp_path: Path, text: str, name: str = "mesh.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as ei:
        load(_write(tmp_path, text))
    return str(ei.value)


# ---------------------------------------------------------------- loading
def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    cfg = load(_write(tmp_path, ""))
    defaults = MeshConfig()
    for f in dataclasses.fields(MeshConfig):
        if f.name != "base_dir":
            assert getattr(cfg, f.name) == getattr(defaults, f.name), f.name
    assert cfg.sequencer.batch_max == 64
    assert cfg.feed.symbols == ("BTCUSDT",)
    assert cfg.feed.rate == 500.0 and type(cfg.feed.rate) is float
    assert cfg.base_dir == str(tmp_path.resolve())


def test_repo_mesh_toml_loads() -> None:
    assert REPO_TOML.exists(), REPO_TOML
    cfg = load(REPO_TOML)
    # Values the file sets (not just defaults) come through.
    assert cfg.logger.fsync == "interval"
    assert cfg.logger.fsync_interval_ms == 200
    assert cfg.logger.segment_bytes == 67108864
    assert cfg.feed.symbols == ("BTCUSDT",) and type(cfg.feed.symbols) is tuple
    assert cfg.base_dir == str(REPO_TOML.parent)
    assert cfg.run_dir == REPO_TOML.parent / "run"


def test_default_path_is_repo_mesh_toml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.ENV_CONFIG, raising=False)
    assert config.DEFAULT_CONFIG == REPO_TOML
    assert load().base_dir == str(REPO_TOML.parent)


def test_env_var_chooses_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "[sequencer]\nbatch_max = 7\n")
    monkeypatch.setenv(config.ENV_CONFIG, str(path))
    assert load().sequencer.batch_max == 7
    # An explicit path wins over the environment.
    other = _write(tmp_path, "[sequencer]\nbatch_max = 9\n", name="other.toml")
    assert load(other).sequencer.batch_max == 9


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load(tmp_path / "nope.toml")


def test_bad_toml_is_config_error(tmp_path: Path) -> None:
    msg = _error(tmp_path, "[feed\nrate = 1\n")
    assert "mesh.toml" in msg


def test_values_are_applied(tmp_path: Path) -> None:
    cfg = load(
        _write(
            tmp_path,
            '[feed]\nsource = "replay"\nsymbols = ["BTCUSDT", "ETHUSDT"]\nrate = 0\nreplay_files = ["a", "b"]\n'
            '[endpoints]\ntransport = "tcp"\ntcp_base_port = 1024\n',
        )
    )
    assert cfg.feed.source == "replay"
    assert cfg.feed.symbols == ("BTCUSDT", "ETHUSDT")
    assert cfg.feed.replay_files == ("a", "b")
    assert cfg.feed.rate == 0.0 and type(cfg.feed.rate) is float  # an int is accepted for a float and widened
    assert cfg.endpoints.transport == "tcp" and cfg.endpoints.tcp_base_port == 1024


def test_config_is_frozen() -> None:
    cfg = from_dict({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.feed.rate = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------- errors name section.key
def test_unknown_section_named(tmp_path: Path) -> None:
    msg = _error(tmp_path, "[feeed]\nrate = 1\n")
    assert "[feeed]" in msg


def test_unknown_key_named(tmp_path: Path) -> None:
    msg = _error(tmp_path, "[feed]\nratee = 1\n")
    assert "feed.ratee" in msg


def test_unknown_top_level_key_named(tmp_path: Path) -> None:
    assert "base_dir" in _error(tmp_path, 'base_dir = "/tmp"\n')  # base_dir is set by load(), never by the file


def test_section_must_be_a_table(tmp_path: Path) -> None:
    assert "[feed]" in _error(tmp_path, "feed = 5\n")


def test_nested_table_is_unknown_key(tmp_path: Path) -> None:
    assert "feed.extra" in _error(tmp_path, "[feed.extra]\nx = 1\n")


@pytest.mark.parametrize(
    ("toml", "where"),
    [
        ('[sequencer]\nbatch_max = "64"\n', "sequencer.batch_max"),  # string for int
        ("[sequencer]\nbatch_max = true\n", "sequencer.batch_max"),  # bool for int
        ("[sequencer]\nbatch_max = 64.0\n", "sequencer.batch_max"),  # float for int
        ("[sockets]\nlinger_ms = 1.5\n", "sockets.linger_ms"),
        ('[feed]\nrate = "fast"\n', "feed.rate"),  # string for float
        ("[feed]\nrate = false\n", "feed.rate"),  # bool for float
        ('[feed]\nsymbols = "BTCUSDT"\n', "feed.symbols"),  # string for list
        ("[feed]\nsymbols = [1, 2]\n", "feed.symbols"),  # ints in a list of strings
        ("[feed]\nrecord = 5\n", "feed.record"),  # int for string
        ("[run]\ndir = true\n", "run.dir"),
        ("[endpoints]\ntransport = 1\n", "endpoints.transport"),
    ],
)
def test_wrong_type_named(tmp_path: Path, toml: str, where: str) -> None:
    msg = _error(tmp_path, toml)
    assert where in msg


@pytest.mark.parametrize(
    ("toml", "where", "word"),
    [
        ("[sequencer]\nbatch_max = 0\n", "sequencer.batch_max", "minimum"),
        ("[sequencer]\nbatch_max = 4097\n", "sequencer.batch_max", "maximum"),
        ("[endpoints]\ntcp_base_port = 1023\n", "endpoints.tcp_base_port", "minimum"),
        ("[endpoints]\ntcp_base_port = 65001\n", "endpoints.tcp_base_port", "maximum"),
        ("[feed]\nrate = -0.5\n", "feed.rate", "minimum"),
        ("[feed]\nsnapshot_limit = 4\n", "feed.snapshot_limit", "minimum"),
        ("[logger]\nsegment_bytes = 4095\n", "logger.segment_bytes", "minimum"),
        ("[sockets]\nlinger_ms = -1\n", "sockets.linger_ms", "minimum"),
    ],
)
def test_out_of_range_named(tmp_path: Path, toml: str, where: str, word: str) -> None:
    msg = _error(tmp_path, toml)
    assert where in msg and word in msg


@pytest.mark.parametrize(
    ("toml", "section", "key", "value"),
    [
        ("[sequencer]\nbatch_max = 4096\n", "sequencer", "batch_max", 4096),
        ("[sequencer]\nbatch_max = 1\n", "sequencer", "batch_max", 1),
        ("[endpoints]\ntcp_base_port = 65000\n", "endpoints", "tcp_base_port", 65000),
        ("[sockets]\nlinger_ms = 0\n", "sockets", "linger_ms", 0),
        ("[feed]\nrate = 0.0\n", "feed", "rate", 0.0),
    ],
)
def test_range_bounds_are_inclusive(tmp_path: Path, toml: str, section: str, key: str, value: object) -> None:
    assert getattr(getattr(load(_write(tmp_path, toml)), section), key) == value


@pytest.mark.parametrize(
    ("toml", "where"),
    [
        ('[feed]\nsource = "kraken"\n', "feed.source"),
        ('[endpoints]\ntransport = "udp"\n', "endpoints.transport"),
        ('[sequencer]\nfsync = "always"\n', "sequencer.fsync"),
        ('[logger]\nfsync = "NONE"\n', "logger.fsync"),  # choices are case-sensitive
    ],
)
def test_bad_choice_named(tmp_path: Path, toml: str, where: str) -> None:
    msg = _error(tmp_path, toml)
    assert where in msg and "not one of" in msg


@pytest.mark.parametrize("key", ["rate", "replay_speed"])
def test_nan_is_out_of_range(tmp_path: Path, key: str) -> None:
    msg = _error(tmp_path, f"[feed]\n{key} = nan\n")
    assert f"feed.{key}" in msg


# ---------------------------------------------------------------- paths
def test_relative_run_dir_resolves_against_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    path = _write(sub, '[run]\ndir = "state/run"\n[sequencer]\njournal_dir = "j"\n')
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the process cwd must not matter
    cfg = load(path)
    assert cfg.run_dir == sub.resolve() / "state" / "run"
    assert cfg.under_run(cfg.sequencer.journal_dir) == sub.resolve() / "state" / "run" / "j"
    # Loading through a relative path gives the same absolute answer.
    monkeypatch.chdir(tmp_path)
    assert load(Path("conf") / "mesh.toml").run_dir == sub.resolve() / "state" / "run"


def test_absolute_run_dir_kept(tmp_path: Path) -> None:
    target = tmp_path / "abs-run"
    cfg = load(_write(tmp_path, f'[run]\ndir = "{target}"\n[logger]\nlog_dir = "{tmp_path / "L"}"\n'))
    assert cfg.run_dir == target
    assert cfg.under_run(cfg.logger.log_dir) == tmp_path / "L"


# ---------------------------------------------------------------- replace()
def test_replace_changes_one_key_and_keeps_the_rest(tmp_path: Path) -> None:
    cfg = load(_write(tmp_path, '[feed]\nsymbols = ["ETHUSDT"]\nseed = 5\n'))
    new = replace(cfg, "feed", rate=0.0, max_events=10)
    assert new.feed.rate == 0.0 and new.feed.max_events == 10
    assert new.feed.symbols == ("ETHUSDT",) and new.feed.seed == 5
    assert new.base_dir == cfg.base_dir and new.sequencer == cfg.sequencer
    assert cfg.feed.rate == 500.0  # the original is untouched
    assert replace(cfg, "feed", symbols=("A", "B")).feed.symbols == ("A", "B")


@pytest.mark.parametrize(
    ("section", "changes", "where"),
    [
        ("feed", {"rate": "fast"}, "feed.rate"),
        ("feed", {"ratee": 1.0}, "feed.ratee"),
        ("sequencer", {"batch_max": 0}, "sequencer.batch_max"),
        ("sequencer", {"batch_max": True}, "sequencer.batch_max"),
        ("sequencer", {"fsync": "sometimes"}, "sequencer.fsync"),
        ("feed", {"symbols": "BTCUSDT"}, "feed.symbols"),
    ],
)
def test_replace_validates(section: str, changes: dict, where: str) -> None:
    with pytest.raises(ConfigError) as ei:
        replace(from_dict({}), section, **changes)
    assert where in str(ei.value)


def test_replace_unknown_section_is_config_error() -> None:
    with pytest.raises(ConfigError, match="feeed"):
        replace(from_dict({}), "feeed", rate=1.0)
