"""The node directory: identity key, config, API cookie, and the running node's address card.

Theory of operation. A node directory ``D`` holds:

* ``D/identity.key`` — the 32-byte ML-DSA-87 seed (raw bytes). The node id is derived from it.
* ``D/config.toml`` — the commented TOML config (:mod:`murmur.node.config`).
* ``D/api.cookie`` — written by the node at start: 64 hex digits (32 random bytes) that every
  control API request must present, like bitcoind's ``.cookie``.
* ``D/node.json`` — written by the node at start: ``{"pid": int, "listen": "HOST:PORT",
  "api": "127.0.0.1:PORT", "node_id": "HEX"}``, so the CLI can find the running node.
* ``D/node.lock`` — held (``flock``) by the running node, so a second node cannot run on the
  same directory: it would share the identity, overwrite the first one's cookie and address
  card, and remove both when it stopped.
* ``D/guards.json`` — written by the node when its entry guards change, every 10 minutes and
  when it stops: ``[{"node_id": HEX, "added_at": UNIX_S, "expires_at": UNIX_S,
  "unlisted_since": UNIX_S | null, "path_bias_outcomes": N, "path_bias_ok": N,
  "use_bias_outcomes": N, "use_bias_ok": N, "disabled_at": UNIX_S | null,
  "announcement": HEX | null}, ...]`` in sampling order (the bias keys: how the circuits past
  each guard ended and whether the messages they carried came back, and when that disabled
  it), with the last signed announcement the node held of each guard, so a restart enters
  through the same guard at once (drawing new ones at every start would undo what guards are
  for). Not a secret, but it tells which relays this node enters through, and whoever could
  write it would choose them: it is read only when private (0600).
* the region map, when the config names one (``privacy.region_map``, relative to ``D`` unless
  absolute): one ``CIDR REGION`` per line (:mod:`murmur.overlay.circuits.regions`). It
  chooses which relays regional paths use, so like ``config.toml`` it is refused when group
  or others may write it or its directory.

Every file is written as a temporary file created with ``os.open(..., 0o600)`` (and ``fchmod``
to exactly 0600, whatever the umask), then renamed over the target: no file is ever visible
with a looser mode or half-written, even briefly. The directory is created 0700, and a directory
that another user owns or that group or others may write is refused: whoever can write it can
swap its files (a ``node.json`` naming their own port would be sent the API cookie by the CLI).
The identity key, the cookie and ``node.json`` are refused when their mode grants any group or
other permission, and ``config.toml`` when group or others may write it (it chooses the peers
the node dials and how private its transactions are); the error names the file and the fix.
This module never logs, and no secret appears in any message.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from murmur.base.errors import ConfigError
from murmur.base.ids import NODE_ID_BYTES, NodeId
from murmur.crypto.identity import SEED_BYTES, Identity
from murmur.node.config import NodeConfig, parse_config, render_config
from murmur.overlay.circuits.guards import GuardRecord
from murmur.overlay.circuits.path_bias import PathBiasCounts
from murmur.overlay.circuits.regions import RegionMap

IDENTITY_FILE = "identity.key"
CONFIG_FILE = "config.toml"
COOKIE_FILE = "api.cookie"
NODE_INFO_FILE = "node.json"
LOCK_FILE = "node.lock"
GUARDS_FILE = "guards.json"

PRIVATE_FILE_MODE = 0o600
NODE_DIR_MODE = 0o700
COOKIE_BYTES = 32
MAX_CONFIG_BYTES = 1024 * 1024
MAX_NODE_INFO_BYTES = 64 * 1024
MAX_GUARDS_BYTES = 1024 * 1024
MAX_REGION_MAP_BYTES = 64 * 1024 * 1024
"""A region map of ``regions.MAX_ENTRIES`` networks, at about 30 bytes a line, with room."""
MAX_KEPT_ANNOUNCEMENT_BYTES = 16 * 1024
MAX_KEPT_GUARDS = 64
"""More than a node ever samples (``GuardConfig.max_sampled``, 20)."""
"""A guard's kept announcement (about 8.8 kB: ML-DSA-87 and ML-KEM-1024 keys, a signature)."""

_COOKIE = re.compile(r"[0-9a-f]{64}\Z")


class MissingFileError(ConfigError):
    """A file the node directory should hold is not there."""

    def __init__(self, path: Path, hint: str) -> None:
        super().__init__(f"{path} does not exist; {hint}")
        self.path = path


def _write_private(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(temp, flags, PRIVATE_FILE_MODE)
    try:
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _check_directory(directory: Path) -> None:
    """Refuses a node directory another user owns or that group or others may write."""
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        return  # the file inside is missing too: the caller's error says how to create it
    except OSError as exc:
        raise ConfigError(f"cannot use {directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{directory} is not a directory")
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"{directory} belongs to another user (uid {info.st_uid}); refusing to use it"
        )
    if info.st_mode & 0o022:
        raise ConfigError(
            f"{directory} has mode {stat.S_IMODE(info.st_mode):04o}, which lets other users "
            f"replace the node's files; refusing to use it. Fix with: chmod 700 {directory}"
        )


def _read(path: Path, max_bytes: int, hint: str, *, private: bool) -> bytes:
    _check_directory(path.parent)
    try:
        # O_NONBLOCK: a FIFO planted in place of a file must not hang the node.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise MissingFileError(path, hint) from None
    except OSError as exc:
        raise ConfigError(f"cannot open {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path} is not a regular file")
        if private and info.st_mode & 0o077:
            raise ConfigError(
                f"{path} has mode {stat.S_IMODE(info.st_mode):04o}, which lets other users on "
                f"this machine read or change it; refusing to use it. Fix with: chmod 600 {path}"
            )
        if info.st_mode & 0o022:
            raise ConfigError(
                f"{path} has mode {stat.S_IMODE(info.st_mode):04o}, which lets other users on "
                f"this machine change it; refusing to use it. Fix with: chmod go-w {path}"
            )
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes and (chunk := os.read(fd, max_bytes + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise ConfigError(f"{path} is larger than {max_bytes} bytes")
    return data


def _init_hint(directory: Path) -> str:
    return f"create the node directory with: murmur init --dir {directory}"


def _not_running_hint(directory: Path) -> str:
    return f"is the node running? start it with: murmur node --dir {directory}"


def init_node_dir(
    path: str | os.PathLike[str], *, force: bool = False, config: NodeConfig | None = None
) -> Identity:
    """Create a node directory with a fresh identity and a commented config.

    Refuses to replace an existing identity unless ``force``. An existing ``config.toml`` is
    kept (after checking that it parses) unless ``config`` is given or ``force`` is set.
    """
    directory = Path(path)
    try:
        directory.mkdir(mode=NODE_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {directory}: {exc.strerror}") from None
    _check_directory(directory)
    key_path = directory / IDENTITY_FILE
    if not force and (key_path.exists() or key_path.is_symlink()):
        raise ConfigError(
            f"{key_path} already exists; refusing to replace this node's identity "
            "(use --force to replace it, which gives the node a new node id)"
        )
    config_path = directory / CONFIG_FILE
    if config is not None or force or not config_path.exists():
        _write_private(config_path, render_config(config or NodeConfig()).encode())
    else:
        load_config(directory)
    seed = secrets.token_bytes(SEED_BYTES)
    identity = Identity.from_seed(seed)
    _write_private(key_path, seed)
    return identity


def load_identity(path: str | os.PathLike[str]) -> Identity:
    """The node's identity; refuses a key file that group or others may access."""
    directory = Path(path)
    key_path = directory / IDENTITY_FILE
    seed = _read(key_path, SEED_BYTES, _init_hint(directory), private=True)
    if len(seed) != SEED_BYTES:
        raise ConfigError(f"{key_path} is not a {SEED_BYTES}-byte ML-DSA-87 seed")
    return Identity.from_seed(seed)


def load_config(path: str | os.PathLike[str]) -> NodeConfig:
    directory = Path(path)
    config_path = directory / CONFIG_FILE
    data = _read(config_path, MAX_CONFIG_BYTES, _init_hint(directory), private=False)
    try:
        return parse_config(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{config_path}: not UTF-8 text") from None
    except ConfigError as exc:
        raise ConfigError(f"{config_path}: {exc}") from None


def load_region_map(path: str | os.PathLike[str], config: NodeConfig) -> RegionMap | None:
    """The region map ``config`` names, read from the node directory ``path`` unless named
    by an absolute path (None when it names none; a config asking for regional paths always
    names one); :class:`ConfigError` naming the file when it is missing, unsafe or bad (and
    the line)."""
    if config.region_map is None:
        return None
    map_path = Path(path) / config.region_map
    hint = f"privacy.region_map in {Path(path) / CONFIG_FILE} names it"
    data = _read(map_path, MAX_REGION_MAP_BYTES, hint, private=False)
    try:
        return RegionMap.parse(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{map_path}: not UTF-8 text") from None
    except ConfigError as exc:
        raise ConfigError(f"{map_path}: {exc}") from None


def write_cookie(path: str | os.PathLike[str]) -> str:
    """Write a fresh API cookie (0600) and return it."""
    cookie = secrets.token_hex(COOKIE_BYTES)
    _write_private(Path(path) / COOKIE_FILE, (cookie + "\n").encode())
    return cookie


def read_cookie(path: str | os.PathLike[str]) -> str:
    directory = Path(path)
    cookie_path = directory / COOKIE_FILE
    data = _read(cookie_path, 2 * COOKIE_BYTES + 2, _not_running_hint(directory), private=True)
    cookie = data.decode("ascii", errors="replace").strip()
    if not _COOKIE.match(cookie):
        raise ConfigError(f"{cookie_path} does not hold a cookie written by murmur")
    return cookie


def write_node_info(path: str | os.PathLike[str], info: dict[str, Any]) -> None:
    _write_private(Path(path) / NODE_INFO_FILE, json.dumps(info, indent=2).encode() + b"\n")


def read_node_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    directory = Path(path)
    info_path = directory / NODE_INFO_FILE
    data = _read(info_path, MAX_NODE_INFO_BYTES, _not_running_hint(directory), private=True)
    try:
        info = json.loads(data)
    except (ValueError, RecursionError):
        raise ConfigError(f"{info_path} is not valid JSON") from None
    if not isinstance(info, dict):
        raise ConfigError(f"{info_path} does not hold a JSON object")
    return info


def clear_node_info(path: str | os.PathLike[str]) -> None:
    """Remove ``node.json`` and ``api.cookie`` (the node calls this when it stops)."""
    directory = Path(path)
    (directory / NODE_INFO_FILE).unlink(missing_ok=True)
    (directory / COOKIE_FILE).unlink(missing_ok=True)


@dataclass(frozen=True)
class KeptGuards:
    """What ``guards.json`` holds: the guard list, and the last announcement the node held of
    each guard (unchecked here: the node verifies them as if gossip had delivered them)."""

    records: list[GuardRecord] = field(default_factory=list)
    announcements: list[bytes] = field(default_factory=list)


def write_guards(
    path: str | os.PathLike[str],
    records: list[GuardRecord],
    announcements: Mapping[NodeId, bytes],
) -> None:
    entries = [
        {
            "node_id": g.node_id.hex(),
            "added_at": g.added_at,
            "expires_at": g.expires_at,
            "unlisted_since": g.unlisted_since,
            "path_bias_outcomes": g.path_bias.outcomes,
            "path_bias_ok": g.path_bias.ok,
            "use_bias_outcomes": g.use_bias.outcomes,
            "use_bias_ok": g.use_bias.ok,
            "disabled_at": g.disabled_at,
            "announcement": record.hex() if (record := announcements.get(g.node_id)) else None,
        }
        for g in records
    ]
    _write_private(Path(path) / GUARDS_FILE, json.dumps(entries, indent=2).encode() + b"\n")


def read_guards(path: str | os.PathLike[str]) -> KeptGuards:
    """The entry guards a node kept (none before its first run). A file that is not one
    ``write_guards`` wrote is an error, not an empty list: silently drawing new guards would
    undo what guards are for, so the error says to delete the file to draw them anew."""
    guards_path = Path(path) / GUARDS_FILE
    try:
        # private: whoever could write it would choose the relays this node enters through
        data = _read(guards_path, MAX_GUARDS_BYTES, "", private=True)
    except MissingFileError:
        return KeptGuards()
    fix = (
        f"{guards_path} is not an entry guard list written by murmur; delete it to draw new guards"
    )
    try:
        entries = json.loads(data)
        if not isinstance(entries, list) or len(entries) > MAX_KEPT_GUARDS:
            raise ConfigError(fix)
        kept = KeptGuards([_guard_record(entry) for entry in entries])
        if len({g.node_id for g in kept.records}) != len(kept.records):
            raise ConfigError(fix)
        for entry in entries:
            record = entry.get("announcement")
            if record is not None:
                announcement = bytes.fromhex(record)
                if len(announcement) > MAX_KEPT_ANNOUNCEMENT_BYTES:
                    raise ValueError("announcement too large")
                kept.announcements.append(announcement)
        return kept
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError):
        raise ConfigError(fix) from None


def _guard_record(entry: Any) -> GuardRecord:
    """One entry; the path-bias keys may be missing (a file from before they were kept)."""
    node_id = bytes.fromhex(entry["node_id"])
    added_at, expires_at, unlisted = entry["added_at"], entry["expires_at"], entry["unlisted_since"]
    counts = [
        entry.get(key, 0.0)
        for key in ("path_bias_outcomes", "path_bias_ok", "use_bias_outcomes", "use_bias_ok")
    ]
    disabled = entry.get("disabled_at")
    numbers = [added_at, expires_at, *counts]
    numbers += [t for t in (unlisted, disabled) if t is not None]
    if len(node_id) != NODE_ID_BYTES or not all(
        isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t)
        for t in numbers
    ):
        raise ValueError("bad guard entry")
    return GuardRecord(
        NodeId(node_id),
        float(added_at),
        float(expires_at),
        None if unlisted is None else float(unlisted),
        # PathBiasCounts raises ValueError unless 0 <= ok <= outcomes
        PathBiasCounts(float(counts[0]), float(counts[1])),
        PathBiasCounts(float(counts[2]), float(counts[3])),
        None if disabled is None else float(disabled),
    )


class NodeDirLock:
    """The running node's exclusive hold on its directory (released when it stops, or by the
    kernel when the process dies, so a crash never leaves a stale lock)."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def lock_node_dir(path: str | os.PathLike[str]) -> NodeDirLock:
    """Takes the directory's lock, or raises ``ConfigError`` if another node holds it."""
    directory = Path(path)
    _check_directory(directory)
    lock_path = directory / LOCK_FILE
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(lock_path, flags, PRIVATE_FILE_MODE)
    except OSError as exc:
        raise ConfigError(f"cannot open {lock_path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            f"another murmur node is running in {directory} (its pid is in "
            f"{directory / NODE_INFO_FILE}); stop it first"
        ) from None
    return NodeDirLock(fd)
