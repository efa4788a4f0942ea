"""Node configuration: a strict TOML schema, parsed from and rendered to text.

Theory of operation: one table, :data:`_SCHEMA`, lists every key of the file with the comment
that explains it, the function that checks and converts its value, and the function that renders
it back. :func:`parse_config` and :func:`render_config` both walk that table, so every key the
parser accepts is documented in the rendered file and ``parse_config(render_config(c)) == c``.

Parsing is strict: an unknown table or key, a wrong type, or an out-of-range value raises
:class:`ConfigError` whose message starts with the key path (``limits.max_inbound: ...``). A key
left out takes its default. This module parses strings only; reading and writing files is the
runtime's job (``murmur.runtime.keystore``).

Defaults are safe: the node and its control API listen on 127.0.0.1 (a node is reachable from
the network only when its operator says so), and the control API cannot listen anywhere else.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from murmur.base.errors import ConfigError
from murmur.base.ids import NODE_ID_BYTES, NodeId
from murmur.crypto.aead import AeadAlgorithm
from murmur.node.levels import (
    DEFAULT_PRESET,
    LEVELS,
    PRESETS,
    PrivacySettings,
    level_named,
    preset_named,
)
from murmur.overlay.gossip import GossipConfig
from murmur.overlay.peers.limits import PeerLimits
from murmur.overlay.routing import PATH_BY_TYPE, MessagePath, MessageType, path_for_topic
from murmur.wire.gossip import is_valid_topic

LOOPBACK_HOST = "127.0.0.1"
MAX_PORT = 65535
MAX_BOOTSTRAP_PEERS = 256
NODE_TOPICS: tuple[str, ...] = (MessageType.PEER_ANNOUNCEMENT.value, MessageType.TRANSACTION.value)
"""Topics every node subscribes besides its configured ones: the signed announcements, and the
transactions that exits publish."""
MAX_TOPICS = GossipConfig().max_topics - len(NODE_TOPICS)
MAX_CIRCUIT_LINKS = 64
"""Links opened on a relay's behalf (EXTEND to a node we had no link with), beyond the peers."""
MAX_LINKED_PEERS = GossipConfig().max_peers
"""Peers the gossip router holds: ``max_inbound + max_outbound + MAX_CIRCUIT_LINKS`` must fit."""
MAX_CONFIG_INT = 2**53  # beyond this, float arithmetic on rates loses integers
MAX_PATH_CHARS = 4096

DEFAULT_TOPICS: tuple[str, ...] = tuple(
    message_type.value for message_type, path in PATH_BY_TYPE.items() if path is MessagePath.FAST
)

_DNS_NAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z"
)
_PORT = re.compile(r"[0-9]{1,5}\Z")
_NODE_ID_HEX = re.compile(r"[0-9a-fA-F]{64}\Z")

AEAD_NAMES: dict[str, AeadAlgorithm] = {
    "chacha20-poly1305": AeadAlgorithm.CHACHA20_POLY1305,
    "aes-256-gcm": AeadAlgorithm.AES_256_GCM,
}


class TxRoute(enum.Enum):
    """How this node's own transactions leave it (seed pq-mixnet §3.5 routing modes)."""

    CIRCUIT = "circuit"
    """Through a 3-hop onion circuit whose exit publishes it (privacy levels apply)."""
    DANDELION = "dandelion"
    """Along a Dandelion++ stem of peers until one fluffs it into the gossip mesh."""


def route_named(name: str) -> TxRoute:
    """The route called ``name``; :class:`ConfigError` naming the known ones otherwise."""
    for route in TxRoute:
        if route.value == name:
            return route
    known = ", ".join(route.value for route in TxRoute)
    raise ConfigError(f"unknown transaction route {name!r} (known: {known})")


class LogLevel(enum.Enum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class HostPort:
    """``host:port``; an IPv6 host is stored bare and written in brackets (``[::1]:9000``)."""

    host: str
    port: int

    def __post_init__(self) -> None:
        if not (_is_ip(self.host) or _DNS_NAME.match(self.host)):
            raise ConfigError(f"{self.host!r} is not an IP address or a host name")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise ConfigError("port must be an integer")
        if not 0 <= self.port <= MAX_PORT:
            raise ConfigError(f"port {self.port} is outside 0..{MAX_PORT}")

    @classmethod
    def parse(cls, text: str) -> HostPort:
        if text.startswith("["):
            host, sep, port = text[1:].partition("]:")
            if not sep or ":" not in host:
                raise ConfigError(f"{text!r} is not [IPV6]:PORT")
        else:
            host, sep, port = text.rpartition(":")
            if not sep or ":" in host:
                raise ConfigError(f"{text!r} is not HOST:PORT (write IPv6 as [ADDR]:PORT)")
        if not _PORT.match(port):
            raise ConfigError(f"{text!r} has no valid port")
        return cls(host, int(port))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class BootstrapPeer:
    """A peer to dial at start, optionally pinned to the node id it must prove it holds."""

    address: HostPort
    node_id: NodeId | None = None

    def __post_init__(self) -> None:
        if self.address.port == 0:
            raise ConfigError(f"{self.address}: cannot dial port 0")
        if self.node_id is not None and len(self.node_id) != NODE_ID_BYTES:
            raise ConfigError(f"node id must be {NODE_ID_BYTES} bytes")

    @classmethod
    def parse(cls, text: str) -> BootstrapPeer:
        """``HOST:PORT`` or ``NODEIDHEX@HOST:PORT``."""
        node_hex, at, address = text.rpartition("@")
        if not at:
            return cls(HostPort.parse(text))
        if not _NODE_ID_HEX.match(node_hex):
            raise ConfigError(f"{text!r}: the node id before '@' must be 64 hex digits")
        return cls(HostPort.parse(address), NodeId(bytes.fromhex(node_hex)))

    def __str__(self) -> str:
        if self.node_id is None:
            return str(self.address)
        return f"{self.node_id.hex()}@{self.address}"


def _check_unique(items: list[str], what: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise ConfigError(f"{what} {item!r} is listed twice")
        seen.add(item)


def _check_topic(topic: str) -> None:
    if not is_valid_topic(topic):
        raise ConfigError(f"{topic!r} is not a topic name (1-64 of a-z 0-9 _ . -)")
    if path_for_topic(topic) is not MessagePath.FAST:
        raise ConfigError(
            f"topic {topic!r} travels the private path and cannot be subscribed on the mesh"
        )


@dataclass(frozen=True, slots=True)
class NodeConfig:
    listen: HostPort = HostPort(LOOPBACK_HOST, 0)
    api_listen: HostPort = HostPort(LOOPBACK_HOST, 0)
    bootstrap: tuple[BootstrapPeer, ...] = ()
    limits: PeerLimits = field(default_factory=PeerLimits)
    aead: AeadAlgorithm = AeadAlgorithm.CHACHA20_POLY1305
    topics: tuple[str, ...] = DEFAULT_TOPICS
    log_level: LogLevel = LogLevel.INFO
    privacy_preset: str = DEFAULT_PRESET
    privacy_level: str | None = None
    """The node's own level; None takes the preset's."""
    tx_route: TxRoute = TxRoute.CIRCUIT
    """How transactions that name no route leave this node."""
    regional_paths: bool | None = None
    """Draw circuit hops from our own region (``PrivacyPreset.regional_paths``); None takes
    the preset's."""
    region_map: str | None = None
    """The region map file (:mod:`murmur.overlay.circuits.regions`), relative to the node
    directory unless absolute; the runtime reads it."""

    def __post_init__(self) -> None:
        preset_named(self.privacy_preset)
        if self.privacy_level is not None:
            level_named(self.privacy_level)
        if self.privacy().preset.regional_paths and self.region_map is None:
            raise ConfigError(
                "privacy.regional_paths needs privacy.region_map, the file that places "
                "addresses in regions"
            )
        if self.api_listen.host != LOOPBACK_HOST:
            raise ConfigError(f"the control API listens on {LOOPBACK_HOST} only")
        if len(self.bootstrap) > MAX_BOOTSTRAP_PEERS:
            raise ConfigError(f"at most {MAX_BOOTSTRAP_PEERS} bootstrap peers")
        _check_unique([str(peer) for peer in self.bootstrap], "bootstrap peer")
        if len(self.topics) > MAX_TOPICS:
            raise ConfigError(f"at most {MAX_TOPICS} topics")
        _check_unique(list(self.topics), "topic")
        for topic in self.topics:
            _check_topic(topic)
        if self.gossip_peers_needed > MAX_LINKED_PEERS:
            raise ConfigError(
                f"limits.max_inbound + limits.max_outbound may be at most "
                f"{MAX_LINKED_PEERS - MAX_CIRCUIT_LINKS} (the gossip router holds "
                f"{MAX_LINKED_PEERS} peers, {MAX_CIRCUIT_LINKS} of them kept for circuit links)"
            )

    @property
    def gossip_peers_needed(self) -> int:
        """Peers the node's gossip router must hold: every inbound and outbound peer, and the
        links opened for circuits."""
        return self.limits.max_inbound + self.limits.max_outbound + MAX_CIRCUIT_LINKS

    @property
    def gossip_topics_needed(self) -> int:
        return len(self.topics) + len(NODE_TOPICS)

    def privacy(self) -> PrivacySettings:
        settings = PrivacySettings.from_names(self.privacy_preset, self.privacy_level)
        return settings.tuned(regional_paths=self.regional_paths)


# -- value converters: TOML value -> Python value, raising ConfigError without the key path --


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"expected a string, got {type(value).__name__}")
    return value


def _str_list(value: object) -> list[str]:
    if not isinstance(value, list):
        raise ConfigError(f"expected an array of strings, got {type(value).__name__}")
    return [_str(item) for item in value]


def _shown(value: int | float) -> str:
    """``value`` for an error message: TOML integers have no size limit (a hex literal can
    have more digits than ``str()`` will print), so a huge one is described, not printed."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    return str(value)


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {type(value).__name__}")
    return value


def _path(value: object) -> str:
    text = _str(value)
    if not 0 < len(text) <= MAX_PATH_CHARS or "\0" in text:
        raise ConfigError(f"expected a file path of 1 to {MAX_PATH_CHARS} characters, no NUL")
    return text


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"expected an integer, got {type(value).__name__}")
    if not 0 < value <= MAX_CONFIG_INT:
        raise ConfigError(f"must be between 1 and {MAX_CONFIG_INT}, got {_shown(value)}")
    return value


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"expected a number, got {type(value).__name__}")
    # The range before float(), which overflows on a huge integer; NaN fails the check too.
    if not 0 < value <= MAX_CONFIG_INT:
        raise ConfigError(
            f"must be a number above 0 and at most {MAX_CONFIG_INT}, got {_shown(value)}"
        )
    return float(value)


def _choice(names: dict[str, Any]) -> Callable[[object], Any]:
    def convert(value: object) -> Any:
        text = _str(value)
        if text not in names:
            raise ConfigError(f"{text!r} is not one of {', '.join(map(repr, names))}")
        return names[text]

    return convert


def _listen(value: object) -> HostPort:
    return HostPort.parse(_str(value))


def _api_listen(value: object) -> HostPort:
    address = HostPort.parse(_str(value))
    if address.host != LOOPBACK_HOST:
        raise ConfigError(f"the control API listens on {LOOPBACK_HOST} only")
    return address


def _bootstrap(value: object) -> tuple[BootstrapPeer, ...]:
    peers: list[BootstrapPeer] = []
    for index, text in enumerate(_str_list(value)):
        try:
            peers.append(BootstrapPeer.parse(text))
        except ConfigError as exc:
            raise ConfigError(f"[{index}]: {exc}") from None
    if len(peers) > MAX_BOOTSTRAP_PEERS:
        raise ConfigError(f"at most {MAX_BOOTSTRAP_PEERS} bootstrap peers")
    _check_unique([str(peer) for peer in peers], "bootstrap peer")
    return tuple(peers)


def _topics(value: object) -> tuple[str, ...]:
    topics = _str_list(value)
    if len(topics) > MAX_TOPICS:
        raise ConfigError(f"at most {MAX_TOPICS} topics")
    _check_unique(topics, "topic")
    for topic in topics:
        _check_topic(topic)
    return tuple(topics)


# -- renderers: Python value -> TOML literal --


def _toml_str(text: str) -> str:
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable() and char != "\x7f":
            out.append(char)
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


def _toml_str_list(items: list[str]) -> str:
    if not items:
        return "[]"
    return "[\n" + "".join(f"    {_toml_str(item)},\n" for item in items) + "]"


def _toml_number(value: int | float) -> str:
    return repr(value)


@dataclass(frozen=True, slots=True)
class _Key:
    field: str
    """A :class:`NodeConfig` field, or ``limits.<name>`` for a :class:`PeerLimits` field."""
    comment: str
    parse: Callable[[object], Any]
    render: Callable[[Any], str]
    unset: str = ""
    """For a key whose value may be left out (None): what leaving it out means."""


def _limit_key(name: str, comment: str) -> _Key:
    kind = next(f.type for f in fields(PeerLimits) if f.name == name)
    return _Key(f"limits.{name}", comment, _int if kind in ("int", int) else _float, _toml_number)


_SCHEMA: dict[str, tuple[str, dict[str, _Key]]] = {
    "node": (
        "The node itself.",
        {
            "listen": _Key(
                "listen",
                "HOST:PORT that peers connect to. 127.0.0.1 keeps the node on this machine; "
                "0.0.0.0:PORT (or [::]:PORT) accepts peers from the network. Port 0 picks a "
                "free port at start.",
                _listen,
                lambda v: _toml_str(str(v)),
            ),
            "log_level": _Key(
                "log_level",
                "How much the node logs: debug, info, warning or error. Keys are never logged.",
                _choice({level.value: level for level in LogLevel}),
                lambda v: _toml_str(v.value),
            ),
        },
    ),
    "peers": (
        "Peers to connect to.",
        {
            "bootstrap": _Key(
                "bootstrap",
                'Peers dialled at start, as "HOST:PORT" or "NODEIDHEX@HOST:PORT". With a node '
                "id, the handshake fails unless the peer proves it holds that identity.",
                _bootstrap,
                lambda v: _toml_str_list([str(peer) for peer in v]),
            ),
        },
    ),
    "api": (
        "The local control API (HTTP/JSON, authenticated by the api.cookie file).",
        {
            "listen": _Key(
                "api_listen",
                f"{LOOPBACK_HOST}:PORT the control API listens on ({LOOPBACK_HOST} only; port 0 "
                "picks a free port, which the node writes to node.json).",
                _api_listen,
                lambda v: _toml_str(str(v)),
            ),
        },
    ),
    "link": (
        "Encrypted links between peers.",
        {
            "aead": _Key(
                "aead",
                "Cipher this node asks for on the links it dials (the dialling side chooses): "
                "chacha20-poly1305 (fast everywhere) or aes-256-gcm (faster with AES-NI).",
                _choice(AEAD_NAMES),
                lambda v: _toml_str(next(n for n, a in AEAD_NAMES.items() if a is v)),
            ),
        },
    ),
    "gossip": (
        "The gossip mesh (fast path).",
        {
            "topics": _Key(
                "topics",
                "Topics this node subscribes to and relays. Private-path topics (transactions, "
                "sync requests) never travel the mesh and are refused here.",
                _topics,
                lambda v: _toml_str_list(list(v)),
            ),
        },
    ),
    "limits": (
        "Per-peer limits. A peer over its rate is throttled; one that breaks the protocol is "
        "banned by node id.",
        {
            "max_inbound": _limit_key("max_inbound", "Most peers that may connect to us."),
            "max_outbound": _limit_key("max_outbound", "Most peers we connect to."),
            "bytes_per_s": _limit_key("bytes_per_s", "Sustained bytes per second from a peer."),
            "bytes_burst": _limit_key(
                "bytes_burst", "Most bytes a peer may send in one burst (the bucket size)."
            ),
            "messages_per_s": _limit_key(
                "messages_per_s", "Sustained messages per second from a peer."
            ),
            "messages_burst": _limit_key(
                "messages_burst", "Most messages a peer may send in one burst."
            ),
            "pings_per_s": _limit_key("pings_per_s", "Sustained pings per second from a peer."),
            "pings_burst": _limit_key("pings_burst", "Most pings a peer may send in one burst."),
            "ban_s": _limit_key("ban_s", "Seconds a misbehaving node id stays banned."),
        },
    ),
    "privacy": (
        "Privacy of the transactions this node sends and of the traffic it carries "
        "(docs/privacy-levels.md). Defaults are provisional until measured in the simulator.",
        {
            "preset": _Key(
                "privacy_preset",
                f"Circuit settings and a default level: {', '.join(PRESETS)}.",
                _choice({name: name for name in PRESETS}),
                _toml_str,
            ),
            "level": _Key(
                "privacy_level",
                f"This node's level ({', '.join(LEVELS)}); left out, the preset's own. It "
                "shapes every private message that names no level, and runs the level's cover "
                "traffic, relay delays and link padding. `murmur send-tx --level` overrides it "
                "for one transaction.",
                _choice({name: name for name in LEVELS}),
                _toml_str,
                unset="the preset's level",
            ),
            "routing": _Key(
                "tx_route",
                "How this node's own transactions leave it: circuit (a 3-hop onion circuit; the "
                "level above shapes it) or dandelion (a Dandelion++ stem of peers, then the "
                "gossip mesh: lower latency and cost, weaker against an adversary holding many "
                "nodes). `murmur send-tx --route` overrides it for one transaction.",
                _choice({route.value: route for route in TxRoute}),
                lambda v: _toml_str(v.value),
            ),
            "regional_paths": _Key(
                "regional_paths",
                "true: draw every hop of this node's circuits, its entry guard included, from "
                "relays in its own region (as region_map places its advertised address and "
                "theirs) while enough relays are there: lower latency, but hop 2 and the exit "
                "learn the region this node is in, and a timing spy has fewer delays to match.",
                _bool,
                lambda v: "true" if v else "false",
                unset="the preset's (off in every preset)",
            ),
            "region_map": _Key(
                "region_map",
                "Region map file: one 'CIDR REGION' per line (e.g. 192.0.2.0/24 eu), '#' "
                "comments; the longest network holding an address gives its region. Relative "
                "to the node directory; it must not be writable by other users. Needed by "
                "regional_paths.",
                _path,
                _toml_str,
                unset="no region map",
            ),
        },
    ),
}


def parse_config(text: str) -> NodeConfig:
    """Parse a TOML config; raise :class:`ConfigError` naming the key path on any problem."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from None
    except ValueError:  # int() refuses a decimal literal of more than 4,300 digits
        raise ConfigError("invalid TOML: an integer has too many digits") from None
    except RecursionError:
        raise ConfigError("invalid TOML: nested too deeply") from None
    values: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    for table_name, table in document.items():
        if table_name not in _SCHEMA:
            raise ConfigError(f"{table_name}: unknown table (known: {', '.join(_SCHEMA)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{table_name}: must be a table ([{table_name}])")
        keys = _SCHEMA[table_name][1]
        for key, raw in table.items():
            spec = keys.get(key)
            if spec is None:
                raise ConfigError(f"{table_name}.{key}: unknown key (known: {', '.join(keys)})")
            try:
                value = spec.parse(raw)
            except ConfigError as exc:
                raise ConfigError(f"{table_name}.{key}: {exc}") from None
            if spec.field.startswith("limits."):
                limits[spec.field.removeprefix("limits.")] = value
            else:
                values[spec.field] = value
    try:
        values["limits"] = PeerLimits(**limits)
        return NodeConfig(**values)
    except (ConfigError, ValueError) as exc:
        raise ConfigError(f"config: {exc}") from None


def _field_value(config: NodeConfig, name: str) -> Any:
    if name.startswith("limits."):
        return getattr(config.limits, name.removeprefix("limits."))
    return getattr(config, name)


def _comment(text: str, width: int = 98) -> list[str]:
    lines: list[str] = []
    line = "#"
    for word in text.split():
        if len(line) + 1 + len(word) > width and line != "#":
            lines.append(line)
            line = "#"
        line += " " + word
    lines.append(line)
    return lines


def render_config(config: NodeConfig) -> str:
    """A commented TOML file that :func:`parse_config` reads back equal to ``config``."""
    lines = [
        "# Murmur node configuration (TOML).",
        "# Every key is optional: a key left out takes the default value shown by `murmur init`.",
    ]
    for table_name, (table_comment, keys) in _SCHEMA.items():
        lines.append("")
        lines.extend(_comment(table_comment))
        lines.append(f"[{table_name}]")
        for key, spec in keys.items():
            lines.extend(_comment(spec.comment))
            value = _field_value(config, spec.field)
            if value is None:
                lines.append(f"# {key} = ... (left out: {spec.unset})")
            else:
                lines.append(f"{key} = {spec.render(value)}")
    return "\n".join(lines) + "\n"
