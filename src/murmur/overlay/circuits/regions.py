"""Which region a relay is in, from its address: a longest-prefix-match table (regional paths).

Theory of operation. Regional paths (``ClientConfig.regions``) draw every hop of a circuit from
relays in the origin's own region, which cuts the path's latency (LASTor, Akhoondi et al. 2012).
A relay's region is never what the relay says of itself: a spy would claim every region. It is
what this table, held by the origin, says of the address the relay signs into its announcement
and must be reachable at (an extension through a relay that does not listen there fails), as
Bitcoin Core's asmap does for autonomous systems. So a spy is in a region only by hosting there.

The table maps IP networks (IPv4 and IPv6, CIDR) to short labels; the longest network that
holds an address wins. An IPv4-mapped IPv6 address is looked up as its IPv4 address, as network
groups treat it. Lookups are dict probes, one per prefix length the table uses, longest first,
and their answers are cached per host (path selection asks about every relay of the directory
for each path it draws).

File format (:meth:`RegionMap.parse`): one ``CIDR REGION`` per line, e.g. ``192.0.2.0/24 eu``;
``#`` starts a comment; blank lines are skipped. A network is written without host bits and
listed once; a label is 1 to 32 of ``A-Z a-z 0-9 _ -``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from murmur.base.errors import ConfigError

MAX_ENTRIES = 1_000_000
"""Networks a table may hold (a full BGP table has about 1.2 million, most of them IPv4
networks that a region table merges into far fewer)."""
MAX_LABEL_CHARS = 32
MAX_CACHED_HOSTS = 65_536
"""Hosts whose region is remembered (more than a full directory, ``RelayDirectory.max_relays``);
the cache starts afresh when full."""

_LABEL = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_LABEL_CHARS}}}\Z")
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")

_Table = dict[int, dict[int, str]]
"""Prefix length → (network address >> host bits) → label."""


def _lengths(table: _Table) -> tuple[int, ...]:
    return tuple(sorted(table, reverse=True))


class RegionMap:
    """An immutable prefix → region table; :meth:`region_of` answers for one host."""

    __slots__ = ("_cache", "_size", "_v4", "_v4_lengths", "_v6", "_v6_lengths")

    def __init__(self, v4: _Table, v6: _Table) -> None:
        """Use :meth:`from_entries` or :meth:`parse`."""
        self._v4, self._v6 = v4, v6
        self._v4_lengths, self._v6_lengths = _lengths(v4), _lengths(v6)
        self._size = sum(map(len, v4.values())) + sum(map(len, v6.values()))
        self._cache: dict[str, str | None] = {}

    @classmethod
    def from_entries(cls, entries: Iterable[tuple[str, str]]) -> RegionMap:
        """A table of ``(cidr, region)`` pairs; :class:`ConfigError` on a bad or repeated one."""
        builder = _Builder()
        for index, (cidr, region) in enumerate(entries):
            try:
                builder.add(cidr, region)
            except ConfigError as exc:
                raise ConfigError(f"entry {index}: {exc}") from None
        return builder.build()

    @classmethod
    def parse(cls, text: str) -> RegionMap:
        """A table in the file format (module docstring); :class:`ConfigError` naming the line
        of the first bad entry."""
        builder = _Builder()
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            try:
                if len(fields) != 2:
                    raise ConfigError("expected CIDR REGION")
                builder.add(fields[0], fields[1])
            except ConfigError as exc:
                raise ConfigError(f"line {number}: {exc}") from None
        return builder.build()

    def __len__(self) -> int:
        return self._size

    def region_of(self, host: str) -> str | None:
        """The label of the longest network holding ``host``; None when none does or ``host``
        is not an IP literal."""
        cache = self._cache
        if host in cache:
            return cache[host]
        region = self._lookup(host)
        if len(cache) >= MAX_CACHED_HOSTS:
            cache.clear()
        cache[host] = region
        return region

    def _lookup(self, host: str) -> str | None:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if isinstance(ip, ipaddress.IPv4Address):
            table, lengths, bits = self._v4, self._v4_lengths, 32
        else:
            table, lengths, bits = self._v6, self._v6_lengths, 128
        value = int(ip)
        for length in lengths:
            region = table[length].get(value >> (bits - length))
            if region is not None:
                return region
        return None


class _Builder:
    """Collects entries, checking each, for one :class:`RegionMap`."""

    __slots__ = ("_count", "_v4", "_v6")

    def __init__(self) -> None:
        self._v4: _Table = {}
        self._v6: _Table = {}
        self._count = 0

    def add(self, cidr: str, region: str) -> None:
        if not _LABEL.match(region):
            raise ConfigError(
                f"region {region[:40]!r} is not 1-{MAX_LABEL_CHARS} of A-Z a-z 0-9 _ -"
            )
        if "%" in cidr:
            raise ConfigError(f"{cidr[:60]!r}: a network has no scope id")
        try:
            network = ipaddress.ip_network(cidr)
        except ValueError as exc:
            raise ConfigError(f"{cidr[:60]!r} is not a network in CIDR form ({exc})") from None
        if isinstance(network, ipaddress.IPv4Network):
            table, bits = self._v4, 32
        elif network.subnet_of(_IPV4_MAPPED):
            raise ConfigError(f"{cidr}: write an IPv4-mapped network as its IPv4 network")
        else:
            table, bits = self._v6, 128
        length = network.prefixlen
        key = int(network.network_address) >> (bits - length)
        networks = table.setdefault(length, {})
        if key in networks:
            raise ConfigError(f"{network} is listed twice")
        if self._count >= MAX_ENTRIES:
            raise ConfigError(f"more than {MAX_ENTRIES} networks")
        networks[key] = region
        self._count += 1

    def build(self) -> RegionMap:
        return RegionMap(self._v4, self._v6)
