import contextlib
import dataclasses
import json
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.base.errors import ConfigError
from murmur.base.ids import NodeId
from murmur.crypto.aead import AeadAlgorithm
from murmur.node.config import (
    DEFAULT_TOPICS,
    BootstrapPeer,
    HostPort,
    LogLevel,
    NodeConfig,
    TxRoute,
    parse_config,
    render_config,
    route_named,
)
from murmur.node.levels import LEVELS, PRESETS
from murmur.overlay.peers.limits import PeerLimits

NODE_HEX = "ab" * 32


def test_defaults_are_loopback() -> None:
    config = parse_config("")
    assert config == NodeConfig()
    assert str(config.listen) == "127.0.0.1:0"
    assert str(config.api_listen) == "127.0.0.1:0"
    assert config.aead is AeadAlgorithm.CHACHA20_POLY1305
    assert config.topics == DEFAULT_TOPICS
    assert "block_header" in DEFAULT_TOPICS and "transaction" not in DEFAULT_TOPICS


def test_rendered_default_is_commented_and_reads_back() -> None:
    text = render_config(NodeConfig())
    assert parse_config(text) == NodeConfig()
    lines = text.splitlines()
    document = tomllib.loads(text)
    keys = [key for table in document.values() for key in table]
    assert len(keys) == 17  # privacy.level is left out (commented) by default
    for index, line in enumerate(lines):
        if " = " in line and not line.startswith("#"):
            assert lines[index - 1].startswith("# "), f"key without a comment: {line}"


def test_full_config_parses() -> None:
    text = f"""
[node]
listen = "0.0.0.0:7000"
log_level = "debug"
[peers]
bootstrap = ["127.0.0.1:7001", "{NODE_HEX}@[::1]:7002", "seed.example.org:7003"]
[api]
listen = "127.0.0.1:7100"
[link]
aead = "aes-256-gcm"
[gossip]
topics = ["block_header", "my_app.v1"]
[limits]
max_inbound = 4
ban_s = 60
pings_per_s = 0.5
"""
    config = parse_config(text)
    assert config.listen == HostPort("0.0.0.0", 7000)
    assert config.log_level is LogLevel.DEBUG
    assert config.bootstrap == (
        BootstrapPeer(HostPort("127.0.0.1", 7001)),
        BootstrapPeer(HostPort("::1", 7002), NodeId(bytes.fromhex(NODE_HEX))),
        BootstrapPeer(HostPort("seed.example.org", 7003)),
    )
    assert config.api_listen.port == 7100
    assert config.aead is AeadAlgorithm.AES_256_GCM
    assert config.topics == ("block_header", "my_app.v1")
    assert config.limits == PeerLimits(max_inbound=4, ban_s=60.0, pings_per_s=0.5)
    assert parse_config(render_config(config)) == config


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("[nodes]\nlisten = '127.0.0.1:1'", "nodes: unknown table"),
        ("node = 3", "node: must be a table"),
        ("[node]\nlisten_port = 3", "node.listen_port: unknown key"),
        ("[node]\nlisten = 3", "node.listen: expected a string"),
        ("[node]\nlisten = '127.0.0.1'", "node.listen:"),
        ("[node]\nlisten = '127.0.0.1:70000'", "node.listen: port 70000"),
        ("[node]\nlisten = '::1:80'", "node.listen:"),
        ("[node]\nlisten = 'bad host!:80'", "node.listen:"),
        ("[node]\nlog_level = 'loud'", "node.log_level: 'loud' is not one of"),
        ("[peers]\nbootstrap = '1.2.3.4:5'", "peers.bootstrap: expected an array"),
        ("[peers]\nbootstrap = [5]", "peers.bootstrap: expected a string"),
        ("[peers]\nbootstrap = ['1.2.3.4:0']", "peers.bootstrap: [0]: "),
        ("[peers]\nbootstrap = ['x', '1.2.3.4:5']", "peers.bootstrap: [0]"),
        ("[peers]\nbootstrap = ['abcd@1.2.3.4:5']", "peers.bootstrap: [0]: "),
        ("[peers]\nbootstrap = ['1.2.3.4:5', '1.2.3.4:5']", "peers.bootstrap: bootstrap peer"),
        ("[api]\nlisten = '0.0.0.0:80'", "api.listen: the control API listens on 127.0.0.1"),
        ("[link]\naead = 'rot13'", "link.aead:"),
        ("[gossip]\ntopics = ['transaction']", "gossip.topics: topic 'transaction' travels"),
        ("[gossip]\ntopics = ['a b']", "gossip.topics:"),
        ("[gossip]\ntopics = ['a', 'a']", "gossip.topics: topic 'a' is listed twice"),
        ("[gossip]\ntopics = ['Blocks']", "gossip.topics: 'Blocks' is not a topic name"),
        ("[gossip]\ntopics = ['a/b:c']", "gossip.topics: 'a/b:c' is not a topic name"),
        (f"[gossip]\ntopics = {[f't{k}' for k in range(63)]}", "gossip.topics: at most 62 topics"),
        ("[limits]\nmax_inbound = 953", "config: limits.max_inbound + limits.max_outbound"),
        ("[limits]\nmax_inbound = 0", "limits.max_inbound: must be between"),
        ("[limits]\nmax_inbound = true", "limits.max_inbound: expected an integer"),
        ("[limits]\nmax_inbound = 2.5", "limits.max_inbound: expected an integer"),
        ("[limits]\nban_s = inf", "limits.ban_s:"),
        ("[limits]\nban_s = -1", "limits.ban_s:"),
        ("[limits]\nbytes_per_s = 99999999999999999", "limits.bytes_per_s:"),
        ("[limits]\nmax_inbund = 3", "limits.max_inbund: unknown key"),
        ("[node\n", "invalid TOML"),
        ("a = " + "[" * 5000, "invalid TOML"),
    ],
)
def test_bad_config_names_the_key(text: str, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert str(info.value).startswith(path)


def test_invalid_config_objects_cannot_exist() -> None:
    with pytest.raises(ConfigError):
        NodeConfig(api_listen=HostPort("0.0.0.0", 1))
    with pytest.raises(ConfigError):
        dataclasses.replace(NodeConfig(), topics=("sync_request",))
    with pytest.raises(ConfigError):
        HostPort("127.0.0.1", -1)


def test_host_port_text() -> None:
    assert str(HostPort.parse("[2001:db8::1]:443")) == "[2001:db8::1]:443"
    assert HostPort.parse("[2001:db8::1]:443").host == "2001:db8::1"
    for bad in ("[::1]", "[::1]443", "[1.2.3.4]:5", "host:", "host:+1", ":80", "h:123456"):
        with pytest.raises(ConfigError):
            HostPort.parse(bad)


_hosts = st.one_of(
    st.just("127.0.0.1"),
    st.ip_addresses().map(str),
    st.from_regex(r"[a-z]{1,10}(\.[a-z0-9]{1,10}){0,2}", fullmatch=True),
)
_addresses = st.builds(HostPort, _hosts, st.integers(1, 65535))
_peers = st.builds(
    BootstrapPeer, _addresses, st.none() | st.binary(min_size=32, max_size=32).map(NodeId)
)
_limits = st.builds(
    PeerLimits,
    max_inbound=st.integers(1, 480),
    max_outbound=st.integers(1, 480),
    bytes_per_s=st.integers(1, 2**40),
    bytes_burst=st.integers(1, 2**40),
    pings_per_s=st.floats(1e-6, 1e6),
    ban_s=st.floats(1e-3, 1e9),
)
_configs = st.builds(
    NodeConfig,
    listen=st.builds(HostPort, _hosts, st.integers(0, 65535)),
    api_listen=st.builds(HostPort, st.just("127.0.0.1"), st.integers(0, 65535)),
    bootstrap=st.lists(_peers, max_size=5, unique_by=str).map(tuple),
    limits=_limits,
    aead=st.sampled_from(AeadAlgorithm),
    topics=st.lists(
        st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,20}", fullmatch=True).filter(
            lambda t: t not in ("transaction", "sync_request")
        ),
        max_size=6,
        unique=True,
    ).map(tuple),
    log_level=st.sampled_from(LogLevel),
    privacy_preset=st.sampled_from(list(PRESETS)),
    privacy_level=st.none() | st.sampled_from(list(LEVELS)),
    tx_route=st.sampled_from(TxRoute),
)


@given(_configs)
def test_render_parse_round_trip(config: NodeConfig) -> None:
    assert parse_config(render_config(config)) == config


_toml_junk = st.one_of(
    st.text(max_size=200),
    st.lists(
        st.sampled_from(
            [
                "[node]",
                "[limits]",
                "[peers]",
                "[api]",
                "[gossip]",
                "[link]",
                "[x]",
                "[[node]]",
                "listen = ",
                "log_level = ",
                "bootstrap = ",
                "topics = ",
                "aead = ",
                "max_inbound = ",
                "ban_s = ",
                "pings_per_s = ",
                '"127.0.0.1:1"',
                '"[::1]:9"',
                "0",
                "-1",
                "1e400",
                "nan",
                "true",
                "[]",
                '["a"]',
                "{}",
                "'x'",
                "\n",
                " ",
                "=",
                '"',
                "#",
                "1979-05-27",
                "0x10",
                "'''",
                '"\\u0000"',
            ]
        ),
        max_size=30,
    ).map("".join),
)


@settings(max_examples=400)
@given(_toml_junk)
def test_junk_raises_only_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(text)


_ODD_TOML_VALUES = [
    "9" * 400,  # tomllib reads integers of any size: too big for float()
    "-" + "9" * 400,
    "9" * 5000,  # too many digits for int()
    "0x" + "f" * 4000,  # too many digits for str()
    str(2**53 + 1),
    "0",
    "-1",
    "0.0",
    "1e-400",
    "1e400",
    "inf",
    "-inf",
    "nan",
    "true",
    '""',
    "[]",
    "[[]]",
    "[1, 2]",
    '["", ""]',
    "{}",
    "{ a = 1 }",
    "1979-05-27T07:32:00Z",
]


def test_any_value_for_any_key_parses_or_raises_config_error() -> None:
    document = tomllib.loads(render_config(NodeConfig(privacy_level="standard")))
    for table, keys in document.items():
        for key in keys:
            for value in _ODD_TOML_VALUES:
                with contextlib.suppress(ConfigError):
                    parse_config(f"[{table}]\n{key} = {value}\n")


_toml_values = st.one_of(
    st.sampled_from(_ODD_TOML_VALUES),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(alphabet="0123456789abcdefxyz:.[]@%-_/ ", max_size=40).map(json.dumps),
    st.lists(st.text(alphabet="0123456789abcdef:.[]@", max_size=20), max_size=3).map(json.dumps),
)


@settings(max_examples=200, deadline=None)
@given(config=_configs, data=st.data())
def test_a_rendered_config_with_bad_values_raises_only_config_error(
    config: NodeConfig, data: st.DataObject
) -> None:
    """A real config file with some values swapped for other TOML values of any type."""
    lines = render_config(config).splitlines()
    assignments = [i for i, line in enumerate(lines) if " = " in line and line[0] != "#"]
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.sampled_from(assignments))
        key = lines[index].partition(" = ")[0]
        lines[index] = f"{key} = {data.draw(_toml_values)}"
    with contextlib.suppress(ConfigError):
        parse_config("\n".join(lines))


def test_transaction_route_parses_reads_back_and_defaults_to_circuits() -> None:
    assert NodeConfig().tx_route is TxRoute.CIRCUIT
    config = parse_config('[privacy]\nrouting = "dandelion"\n')
    assert config.tx_route is TxRoute.DANDELION
    assert parse_config(render_config(config)) == config
    assert route_named("circuit") is TxRoute.CIRCUIT
    with pytest.raises(ConfigError, match=r"route 'tor' \(known: circuit, dandelion\)"):
        route_named("tor")


def test_privacy_preset_and_level_parse_and_read_back() -> None:
    config = parse_config('[privacy]\npreset = "maximum"\n')
    assert (config.privacy_preset, config.privacy_level) == ("maximum", None)
    assert config.privacy().level.name == "maximum"
    assert parse_config(render_config(config)) == config
    both = parse_config('[privacy]\npreset = "censorship_resistant"\nlevel = "enhanced"\n')
    assert both.privacy().level.name == "enhanced"
    assert both.privacy().preset.hops == 2
    assert parse_config(render_config(both)) == both


def test_regional_paths_and_their_region_map_parse_and_read_back() -> None:
    assert NodeConfig().regional_paths is None and not NodeConfig().privacy().preset.regional_paths
    config = parse_config('[privacy]\nregional_paths = true\nregion_map = "regions.txt"\n')
    assert (config.regional_paths, config.region_map) == (True, "regions.txt")
    assert config.privacy().preset.regional_paths
    assert parse_config(render_config(config)) == config
    off = parse_config('[privacy]\nregional_paths = false\nregion_map = "/etc/regions"\n')
    assert not off.privacy().preset.regional_paths
    assert parse_config(render_config(off)) == off
    with pytest.raises(ConfigError, match=r"regional_paths needs privacy\.region_map"):
        parse_config("[privacy]\nregional_paths = true\n")
    for bad in ("regional_paths = 1", 'regional_paths = "yes"', 'region_map = ""'):
        with pytest.raises(ConfigError, match=rf"^privacy\.{bad.split()[0]}: expected"):
            parse_config(f"[privacy]\n{bad}\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[privacy]\nlevel = "max"\n', "privacy.level: 'max' is not one of 'standard', 'enhanced'"),
        ('[privacy]\npreset = "tor"\n', "privacy.preset: 'tor' is not one of 'standard'"),
        ("[privacy]\nlevel = 3\n", "privacy.level: expected a string"),
        (
            '[privacy]\nrouting = "mixnet"\n',
            "privacy.routing: 'mixnet' is not one of 'circuit', 'dandelion'",
        ),
    ],
)
def test_unknown_privacy_names_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text)
    with pytest.raises(ConfigError, match="unknown privacy level 'max'"):
        NodeConfig(privacy_level="max")
