import contextlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.base.errors import ConfigError
from murmur.base.ids import NodeId
from murmur.node.config import HostPort, NodeConfig, render_config
from murmur.overlay.circuits.guards import GuardRecord
from murmur.overlay.circuits.path_bias import PathBiasCounts
from murmur.runtime import keystore
from murmur.runtime.keystore import (
    CONFIG_FILE,
    COOKIE_FILE,
    GUARDS_FILE,
    IDENTITY_FILE,
    LOCK_FILE,
    NODE_INFO_FILE,
    KeptGuards,
    MissingFileError,
    clear_node_info,
    init_node_dir,
    load_config,
    load_identity,
    load_region_map,
    lock_node_dir,
    read_cookie,
    read_guards,
    read_node_info,
    write_cookie,
    write_guards,
    write_node_info,
)
from tests.damage import damaged


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask():
    old = os.umask(0o000)
    try:
        yield
    finally:
        os.umask(old)


def test_init_writes_0600_key_and_config(tmp_path: Path, permissive_umask: None) -> None:
    directory = tmp_path / "node"
    identity = init_node_dir(directory)
    key = directory / "identity.key"
    assert mode(key) == 0o600
    assert mode(directory / "config.toml") == 0o600
    assert mode(directory) == 0o700
    assert len(key.read_bytes()) == 32
    assert load_identity(directory).node_id == identity.node_id
    assert load_config(directory) == NodeConfig()
    assert sorted(p.name for p in directory.iterdir()) == ["config.toml", "identity.key"]


def test_key_file_is_never_world_readable_while_written(
    tmp_path: Path, permissive_umask: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real_write = os.write

    def spy_write(fd: int, data: bytes) -> int:
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(keystore.os, "write", spy_write)
    init_node_dir(tmp_path)
    write_cookie(tmp_path)
    assert seen and all(m == 0o600 for m in seen)


def test_init_refuses_to_replace_identity(tmp_path: Path) -> None:
    first = init_node_dir(tmp_path)
    with pytest.raises(ConfigError, match="already exists"):
        init_node_dir(tmp_path)
    assert load_identity(tmp_path).node_id == first.node_id
    second = init_node_dir(tmp_path, force=True)
    assert second.node_id != first.node_id
    assert load_identity(tmp_path).node_id == second.node_id


def test_init_keeps_existing_config_unless_given(tmp_path: Path) -> None:
    custom = NodeConfig(listen=HostPort("127.0.0.1", 7777))
    (tmp_path / "config.toml").write_text(render_config(custom))
    init_node_dir(tmp_path)
    assert load_config(tmp_path) == custom
    other = NodeConfig(listen=HostPort("127.0.0.1", 8888))
    init_node_dir(tmp_path, force=True, config=other)
    assert load_config(tmp_path) == other


@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o660, 0o700])
def test_load_identity_refuses_loose_mode(tmp_path: Path, loose: int) -> None:
    init_node_dir(tmp_path)
    key = tmp_path / "identity.key"
    key.chmod(loose)
    if loose & 0o077 == 0:
        load_identity(tmp_path)
        return
    with pytest.raises(ConfigError) as info:
        load_identity(tmp_path)
    assert str(key) in str(info.value)
    assert f"chmod 600 {key}" in str(info.value)


def test_load_identity_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="murmur init --dir"):
        load_identity(tmp_path)
    key = tmp_path / "identity.key"
    key.write_bytes(b"short")
    key.chmod(0o600)
    with pytest.raises(ConfigError, match="32-byte"):
        load_identity(tmp_path)
    key.unlink()
    key.mkdir()
    with pytest.raises(ConfigError, match="regular file"):
        load_identity(tmp_path)
    key.rmdir()
    os.mkfifo(key, 0o600)
    with pytest.raises(ConfigError, match="regular file"):
        load_identity(tmp_path)  # and does not block waiting for a writer


def test_secrets_never_in_repr_or_errors(tmp_path: Path) -> None:
    identity = init_node_dir(tmp_path)
    seed = (tmp_path / "identity.key").read_bytes()
    assert seed.hex() not in repr(identity)
    (tmp_path / "identity.key").chmod(0o644)
    with pytest.raises(ConfigError) as info:
        load_identity(tmp_path)
    assert seed.hex() not in str(info.value)


def test_cookie(tmp_path: Path, permissive_umask: None) -> None:
    cookie = write_cookie(tmp_path)
    assert len(cookie) == 64 and int(cookie, 16) >= 0
    assert mode(tmp_path / "api.cookie") == 0o600
    assert read_cookie(tmp_path) == cookie
    assert write_cookie(tmp_path) != cookie
    (tmp_path / "api.cookie").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_cookie(tmp_path)
    (tmp_path / "api.cookie").write_text("not a cookie")
    (tmp_path / "api.cookie").chmod(0o600)
    with pytest.raises(ConfigError, match="does not hold a cookie"):
        read_cookie(tmp_path)


def test_node_info(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="murmur node --dir"):
        read_node_info(tmp_path)
    info = {"pid": 123, "listen": "127.0.0.1:5000", "api": "127.0.0.1:5001", "node_id": "ab"}
    write_node_info(tmp_path, info)
    assert read_node_info(tmp_path) == info
    write_cookie(tmp_path)
    clear_node_info(tmp_path)
    assert list(tmp_path.iterdir()) == []
    clear_node_info(tmp_path)
    path = tmp_path / "node.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="chmod 600"):  # the CLI sends the cookie where it says
        read_node_info(tmp_path)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="JSON object"):
        read_node_info(tmp_path)
    path.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_node_info(tmp_path)


def test_entry_guards_round_trip_private_and_in_order(
    tmp_path: Path, permissive_umask: None
) -> None:
    assert read_guards(tmp_path) == KeptGuards()  # before the first run
    records = [
        GuardRecord(NodeId(b"\x01" * 32), 1.7e9, 1.7e9 + 40 * 86_400.0),
        GuardRecord(NodeId(b"\x02" * 32), 1.7e9 + 5.0, 1.7e9 + 50 * 86_400.0, 1.7e9 + 60.0),
        GuardRecord(
            NodeId(b"\x03" * 32),
            1.7e9,
            1.7e9 + 45 * 86_400.0,
            path_bias=PathBiasCounts(22.5, 3.0),
            use_bias=PathBiasCounts(4.0, 4.0),
            disabled_at=1.7e9 + 3_600.0,
        ),
    ]
    write_guards(tmp_path, records, {records[1].node_id: b"signed record"})
    assert mode(tmp_path / GUARDS_FILE) == 0o600
    assert read_guards(tmp_path) == KeptGuards(records, [b"signed record"])
    (tmp_path / GUARDS_FILE).chmod(0o666)  # whoever could write it would choose our guards
    with pytest.raises(ConfigError, match="chmod 600"):
        read_guards(tmp_path)


_ID = "ab" * 32


def test_a_guard_file_from_before_path_bias_reads_with_no_outcomes(tmp_path: Path) -> None:
    path = tmp_path / GUARDS_FILE
    path.write_text(
        f'[{{"node_id": "{_ID}", "added_at": 1, "expires_at": 2, "unlisted_since": null}}]'
    )
    path.chmod(0o600)
    (record,) = read_guards(tmp_path).records
    assert record.path_bias == record.use_bias == PathBiasCounts()
    assert record.disabled_at is None


@pytest.mark.parametrize(
    "text",
    [
        "{}",
        "[1]",
        '[{"node_id": "ab", "added_at": 1, "expires_at": 2, "unlisted_since": null}]',
        f'[{{"node_id": "{_ID}", "added_at": NaN, "expires_at": 2, "unlisted_since": null}}]',
        f'[{{"node_id": "{_ID}", "added_at": true, "expires_at": 2, "unlisted_since": 1}}]',
        f'[{{"node_id": "{"zz" * 32}", "added_at": 1, "expires_at": 2, "unlisted_since": null}}]',
        f'[{{"node_id": "{_ID}", "added_at": 1, "expires_at": 2}}]',
        f'[{{"node_id": "{_ID}", "added_at": 1, "expires_at": 2, "unlisted_since": null, '
        '"announcement": "xyz"}]',
        f'[{{"node_id": "{_ID}", "added_at": 1, "expires_at": 2, "unlisted_since": null, '
        '"path_bias_outcomes": 3, "path_bias_ok": 4}]',
        f'[{{"node_id": "{_ID}", "added_at": 1, "expires_at": 2, "unlisted_since": null, '
        '"use_bias_outcomes": -1, "use_bias_ok": -2}]',
        f'[{{"node_id": "{_ID}", "added_at": 1, "expires_at": 2, "unlisted_since": null, '
        '"path_bias_outcomes": "20", "path_bias_ok": 1}]',
        f'[{{"node_id": "{_ID}", "added_at": 1, "expires_at": 2, "unlisted_since": null, '
        '"disabled_at": Infinity}]',
    ],
)
def test_a_damaged_guard_file_is_an_error_that_says_how_to_start_afresh(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / GUARDS_FILE
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="delete it to draw new guards"):
        read_guards(tmp_path)


@pytest.mark.parametrize("loose", [0o777, 0o770, 0o702, 0o1777])
def test_a_directory_others_may_write_is_refused(tmp_path: Path, loose: int) -> None:
    """Whoever can write the directory can swap node.json for one naming their own port."""
    node_dir = tmp_path / "node"
    init_node_dir(node_dir)
    write_node_info(node_dir, {"api": "127.0.0.1:5001"})
    write_cookie(node_dir)
    node_dir.chmod(loose)
    for load in (load_identity, load_config, read_cookie, read_node_info, lock_node_dir):
        with pytest.raises(ConfigError, match="chmod 700"):
            load(node_dir)
    with pytest.raises(ConfigError, match="chmod 700"):
        init_node_dir(node_dir, force=True)
    node_dir.chmod(0o755)  # readable is fine: the files themselves are 0600
    load_identity(node_dir)
    read_node_info(node_dir)


def test_init_on_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    with pytest.raises(ConfigError, match="cannot create"):
        init_node_dir(tmp_path / "taken")


def test_one_node_at_a_time_holds_the_directory(tmp_path: Path) -> None:
    first = lock_node_dir(tmp_path)
    with pytest.raises(ConfigError, match="another murmur node is running"):
        lock_node_dir(tmp_path)
    assert mode(tmp_path / LOCK_FILE) == 0o600
    first.release()
    first.release()  # idempotent
    lock_node_dir(tmp_path).release()


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        load_config(tmp_path)
    path = tmp_path / "config.toml"
    path.write_text("[limits]\nmax_inbound = -3\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value).startswith(f"{path}: limits.max_inbound:")
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(tmp_path)
    path.write_text("# big\n" * 300_000)
    with pytest.raises(ConfigError, match="larger than"):
        load_config(tmp_path)


@pytest.mark.parametrize("loose", [0o620, 0o602, 0o666])
def test_a_config_others_may_write_is_refused(tmp_path: Path, loose: int) -> None:
    """It names the peers the node dials and how private its transactions are: whoever could
    write it would choose both. Others may still read it (it holds no secret)."""
    init_node_dir(tmp_path)
    path = tmp_path / "config.toml"
    path.chmod(0o644)
    load_config(tmp_path)
    path.chmod(loose)
    with pytest.raises(ConfigError, match=f"chmod go-w {path}"):
        load_config(tmp_path)


def test_the_region_map_the_config_names_is_read_from_the_node_directory(tmp_path: Path) -> None:
    init_node_dir(tmp_path)
    assert load_region_map(tmp_path, NodeConfig()) is None
    config = NodeConfig(regional_paths=True, region_map="regions.txt")
    path = tmp_path / "regions.txt"
    with pytest.raises(MissingFileError, match=r"privacy\.region_map in .*config\.toml names it"):
        load_region_map(tmp_path, config)
    path.write_text("# test\n192.0.2.0/24 eu\n2001:db8::/32 na\n")
    path.chmod(0o644)
    regions = load_region_map(tmp_path, config)
    assert regions is not None and len(regions) == 2
    assert regions.region_of("192.0.2.9") == "eu"
    absolute = load_region_map(tmp_path / "elsewhere", replace(config, region_map=str(path)))
    assert absolute is not None and absolute.region_of("2001:db8::1") == "na"
    path.write_text("192.0.2.0/24 eu\n192.0.2.0/33 na\n")
    with pytest.raises(ConfigError, match=rf"^{path}: line 2: '192.0.2.0/33' is not a network"):
        load_region_map(tmp_path, config)
    path.write_bytes(b"\xff")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_region_map(tmp_path, config)
    path.chmod(0o666)  # whoever may write it chooses the relays regional paths use
    with pytest.raises(ConfigError, match=f"chmod go-w {path}"):
        load_region_map(tmp_path, config)


def test_regional_paths_without_a_region_map_fail_at_start_up(tmp_path: Path) -> None:
    init_node_dir(tmp_path)
    (tmp_path / "config.toml").write_text("[privacy]\nregional_paths = true\n")
    with pytest.raises(ConfigError, match=r"regional_paths needs privacy\.region_map"):
        load_config(tmp_path)


_LOADERS: list[tuple[str, Callable[[Path], Any]]] = [
    (IDENTITY_FILE, load_identity),
    (COOKIE_FILE, read_cookie),
    (NODE_INFO_FILE, read_node_info),
    (CONFIG_FILE, load_config),
    (GUARDS_FILE, read_guards),
    ("regions.txt", lambda d: load_region_map(d, NodeConfig(region_map="regions.txt"))),
]
_VALID_CONTENTS = [
    b"s" * 32,
    b"ab" * 32 + b"\n",
    json.dumps({"pid": 1, "listen": "127.0.0.1:5000", "api": "127.0.0.1:5001"}).encode(),
    render_config(NodeConfig(listen=HostPort("0.0.0.0", 7000))).encode(),
    b"[" * 5_000,  # nested past the recursion limit
    json.dumps(
        [{"node_id": "ab" * 32, "added_at": 1.0, "expires_at": 2.0, "unlisted_since": None}]
    ).encode(),
]


@pytest.fixture(scope="module")
def fuzzed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzzed")


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=100), damaged(st.sampled_from(_VALID_CONTENTS))))
def test_node_files_with_any_contents_load_or_raise_config_error(
    fuzzed_dir: Path, contents: bytes
) -> None:
    for name, load in _LOADERS:
        path = fuzzed_dir / name
        path.unlink(missing_ok=True)  # cheaper than truncating, which flushes on ext4
        path.write_bytes(contents)
        path.chmod(0o600)
        with contextlib.suppress(ConfigError):
            load(fuzzed_dir)
