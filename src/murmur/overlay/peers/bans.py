"""Bans by node id, and throttling by address.

Theory of operation. Two different answers to two different kinds of misbehaviour:

* :class:`BanList` — a peer that *authenticated* (completed the handshake, so we know its node
  id) and then broke the protocol is banned **by node id** for a while. Many honest nodes can
  share one address (CGNAT, a loopback testnet), so an address is never banned for what one
  node id did.
* :class:`AddressThrottle` — bytes from a host that never authenticated (garbage instead of a
  handshake, a truncated handshake) cannot be pinned on a node id. The host gets a **short**
  back-off instead: 1 s after the first failure, doubling up to 60 s, and one doubling is
  forgiven per quiet period without failures. A success (a completed handshake) clears it.
  Every host also has a connection-attempt token bucket, so no host can make us run handshakes
  faster than its budget. A host is an IPv4 address or an IPv6 /64 (one IPv6 subscriber
  usually owns a whole /64, and per-address keys would be free to rotate). Whoever holds many
  hosts in one site (a /48 is 65,536 /64s; a /24 of rented addresses) gets one more budget for
  the whole site (:func:`~murmur.overlay.peers.netgroup.site`), four hosts' worth, so rotating
  hosts neither multiplies the handshakes it can make us run nor, by pushing its own blocked
  hosts out of the table, buys it anything. The site is narrower than the network group
  inbound slots are balanced by (/16, /32: an ISP's block): a few hosts that spend their site's
  budget lock out only their own site, not every customer of their ISP.

Every table is bounded. The ban list evicts the ban that would expire soonest; the throttle
evicts the least recently seen host. Every call takes ``now`` (seconds); nothing reads a clock.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from murmur.base.bounded import remember
from murmur.base.ids import NodeId
from murmur.overlay.peers.netgroup import site
from murmur.overlay.peers.token_bucket import TokenBucket

DEFAULT_MAX_ENTRIES = 4096
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0
BACKOFF_QUIET_S = 120.0
ATTEMPTS_PER_S = 4.0
ATTEMPTS_BURST = 32.0
SITE_ATTEMPTS_PER_S = 4 * ATTEMPTS_PER_S
SITE_ATTEMPTS_BURST = 4 * ATTEMPTS_BURST
IPV6_PREFIX_BITS = 64


@dataclass(frozen=True, slots=True)
class Ban:
    node_id: NodeId
    until: float
    reason: str


class BanList:
    __slots__ = ("_bans", "max_entries")

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._bans: dict[bytes, Ban] = {}

    def __len__(self) -> int:
        return len(self._bans)

    def ban(self, node_id: NodeId, now: float, duration_s: float, reason: str) -> None:
        """Ban ``node_id`` until ``now + duration_s``; an existing longer ban is kept."""
        if not (math.isfinite(duration_s) and duration_s > 0):
            raise ValueError("duration_s must be a positive finite number")
        until = now + duration_s
        current = self._bans.get(node_id)
        if current is not None and current.until >= until:
            return
        if current is None and len(self._bans) >= self.max_entries:
            self._purge(now)
            if len(self._bans) >= self.max_entries:
                soonest = min(self._bans.values(), key=lambda b: b.until)
                if soonest.until >= until:
                    return  # every held ban outlasts the new one: keep them
                del self._bans[soonest.node_id]
        self._bans[node_id] = Ban(node_id, until, reason)

    def is_banned(self, node_id: NodeId, now: float) -> bool:
        ban = self._bans.get(node_id)
        if ban is None:
            return False
        if now >= ban.until:
            del self._bans[node_id]
            return False
        return True

    def active(self, now: float) -> list[Ban]:
        """Bans in force at ``now``, soonest expiry first (for status output)."""
        self._purge(now)
        return sorted(self._bans.values(), key=lambda b: b.until)

    def _purge(self, now: float) -> None:
        for node_id in [n for n, b in self._bans.items() if now >= b.until]:
            del self._bans[node_id]


def host_key(host: str) -> str:
    """The throttling key of a host: the IPv4 address, or the IPv6 /64 prefix.

    IPv4-mapped IPv6 addresses count as their IPv4 address; anything that is not an IP literal
    (a hostname, a unix socket path) is its own key.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address, IPV6_PREFIX_BITS), strict=False)
        return str(network)
    return str(address)


K = TypeVar("K")
V = TypeVar("V")


def _recent(table: OrderedDict[K, V], key: K, make: Callable[[], V], max_entries: int) -> V:
    """``table[key]``, made if missing, marked most recently used; beyond ``max_entries`` the
    least recently used entry goes."""
    value = table.get(key)
    if value is None:
        value = make()
    remember(table, key, value, max_entries)
    return value


class HostBudget:
    """A token bucket per host and one per site, for something any host that connects may ask
    of us at a cost to us (a handshake, the directory catch-up a new link is offered): a use
    takes a token from both or from neither, so rotating hosts within a site (or identities on
    one host) buys little more than the site's budget. Bounded like the throttle: the least
    recently seen host or site is forgotten."""

    __slots__ = (
        "_hosts",
        "_sites",
        "burst",
        "max_entries",
        "rate_per_s",
        "site_burst",
        "site_rate_per_s",
    )

    def __init__(
        self,
        rate_per_s: float,
        burst: float,
        *,
        site_rate_per_s: float,
        site_burst: float,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        TokenBucket(rate_per_s, burst)  # validates the pair
        TokenBucket(site_rate_per_s, site_burst)
        if site_rate_per_s < rate_per_s or site_burst < burst:
            raise ValueError("a site's budget must be at least a host's")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.site_rate_per_s = site_rate_per_s
        self.site_burst = site_burst
        self.max_entries = max_entries
        self._hosts: OrderedDict[str, TokenBucket] = OrderedDict()
        self._sites: OrderedDict[bytes, TokenBucket] = OrderedDict()

    def consume(self, host: str, now: float) -> bool:
        """One use by ``host`` if its budget and its site's both allow it (then both pay)."""
        limit = self.max_entries
        own = _recent(
            self._hosts, host_key(host), lambda: TokenBucket(self.rate_per_s, self.burst), limit
        )
        shared = _recent(
            self._sites,
            site(host),
            lambda: TokenBucket(self.site_rate_per_s, self.site_burst),
            limit,
        )
        if own.available(now) < 1 or shared.available(now) < 1:
            return False
        own.consume(now)
        shared.consume(now)
        return True


class _HostState:
    __slots__ = ("blocked_until", "failures", "last_failure")

    def __init__(self) -> None:
        self.failures = 0
        self.last_failure = -math.inf
        self.blocked_until = -math.inf


class AddressThrottle:
    __slots__ = ("_attempts", "_hosts", "backoff_base_s", "backoff_max_s", "max_entries", "quiet_s")

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        quiet_s: float = BACKOFF_QUIET_S,
        attempts_per_s: float = ATTEMPTS_PER_S,
        attempts_burst: float = ATTEMPTS_BURST,
        site_attempts_per_s: float = SITE_ATTEMPTS_PER_S,
        site_attempts_burst: float = SITE_ATTEMPTS_BURST,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if not (0 < backoff_base_s <= backoff_max_s and math.isfinite(backoff_max_s)):
            raise ValueError("need 0 < backoff_base_s <= backoff_max_s < inf")
        if not (math.isfinite(quiet_s) and quiet_s > 0):
            raise ValueError("quiet_s must be a positive finite number")
        self._attempts = HostBudget(
            attempts_per_s,
            attempts_burst,
            site_rate_per_s=site_attempts_per_s,
            site_burst=site_attempts_burst,
            max_entries=max_entries,
        )
        self.max_entries = max_entries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.quiet_s = quiet_s
        self._hosts: OrderedDict[str, _HostState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._hosts)

    def _state(self, key: str) -> _HostState:
        return _recent(self._hosts, key, _HostState, self.max_entries)

    def allow(self, host: str, now: float) -> bool:
        """May a connection attempt from ``host`` proceed now? Counts as one attempt against
        the host's budget and its site's (both or neither)."""
        if now < self._state(host_key(host)).blocked_until:
            return False
        return self._attempts.consume(host, now)

    def record_failure(self, host: str, now: float) -> float:
        """An unauthenticated failure from ``host``; returns the back-off it now serves (s)."""
        state = self._state(host_key(host))
        if state.failures:
            forgiven = int((now - state.last_failure) // self.quiet_s)
            state.failures = max(0, state.failures - max(0, forgiven))
        state.failures += 1
        state.last_failure = now
        exponent = min(state.failures - 1, 62)
        backoff_s = min(self.backoff_max_s, self.backoff_base_s * 2.0**exponent)
        state.blocked_until = now + backoff_s
        return backoff_s

    def record_success(self, host: str) -> None:
        """A peer from ``host`` authenticated: forget its failures (its attempt budget stays)."""
        state = self._hosts.get(host_key(host))
        if state is not None:
            state.failures = 0
            state.blocked_until = -math.inf
