"""Network groups, and which inbound connection gives way when every inbound slot is taken.

Theory of operation. Addresses are cheap inside one network and dear across many: whoever rents
one server or one /16 of cloud addresses can open every inbound connection a node accepts, and
with them surround it (an eclipse: every peer it hears from is theirs). The per-host attempt
budget (:class:`~murmur.overlay.peers.bans.AddressThrottle`) slows the opening down but does not
cap how many stay open. So, like Bitcoin Core's inbound eviction, a node that is full and meets
a newcomer from a network group that holds fewer of its slots closes one connection of the group
holding the most, as long as that group would still hold at least as many as the newcomer's
afterwards (max-min fairness: an eviction never just swaps one group's connection for
another's). Inside that group it closes one that has not finished its handshake, else the
youngest. Some connections are never closed this way: those of peers this node chose to dial
(its bootstrap peers, which may have dialled it first) and its ``PROTECTED_LONGEST_INBOUND``
longest-connected inbound peers. (A retired duplicate link is not preferred either: it is still
read, so cells the peer sent on it before it lost are not lost.)

A group is an IPv4 /16 or an IPv6 /32 (an IPv4-mapped IPv6 address counts as its IPv4 address),
the prefix that circuit paths also keep their hops apart by; anything that is not an IP literal
is its own group. Many honest nodes share one address behind
CGNAT or on a loopback testnet; they share one group, and since a newcomer of the fullest group
never evicts, a testnet that fills a node's slots sees the same refusals as without this rule.
"""

from __future__ import annotations

import functools
import ipaddress
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

IPV4_PREFIX_BITS = 16
IPV6_PREFIX_BITS = 32
# A *site*: the IPv4 /24 or IPv6 /48 one customer is usually given, narrower than a group.
IPV4_SITE_BITS = 24
IPV6_SITE_BITS = 48


@functools.lru_cache(maxsize=65_536)
def _prefix(host: str, ipv4_bits: int, ipv6_bits: int) -> bytes:
    ip = ipaddress.ip_address(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return b"4" + ip.packed[: ipv4_bits // 8]
    return b"6" + ip.packed[: ipv6_bits // 8]


def network_prefix(host: str) -> bytes:
    """The /16 of an IPv4 address (also IPv4-mapped IPv6), the /32 of an IPv6 address.

    ValueError when ``host`` is not an IP literal."""
    return _prefix(host, IPV4_PREFIX_BITS, IPV6_PREFIX_BITS)


def _or_host(host: str, ipv4_bits: int, ipv6_bits: int) -> bytes:
    try:
        return _prefix(host.split("%", 1)[0], ipv4_bits, ipv6_bits)
    except ValueError:
        return b"h" + host.encode()


def netgroup(host: str) -> bytes:
    """The network group of a connection's ``host``: its :func:`network_prefix` (an IPv6
    scope id ignored), or the host itself when it is not an IP literal."""
    return _or_host(host, IPV4_PREFIX_BITS, IPV6_PREFIX_BITS)


def site(host: str) -> bytes:
    """The site of a connection's ``host`` (IPv4 /24, IPv6 /48), or the host itself when it is
    not an IP literal: what one attacker with a handful of addresses usually holds, so a limit
    per site binds them without shutting out the rest of their ISP."""
    return _or_host(host, IPV4_SITE_BITS, IPV6_SITE_BITS)


PROTECTED_LONGEST_INBOUND = 8
"""Authenticated inbound peers, the longest connected, that no newcomer evicts (Bitcoin Core
protects its longest-lived peers the same way): an attacker who opens connections from many
network groups can churn the young ones but not the peers that have served for longest."""


@dataclass(frozen=True, slots=True)
class InboundSlot:
    """One open inbound connection, as the eviction rule sees it."""

    conn_id: int
    group: bytes
    opened_at: float
    authenticated: bool
    protected: bool = False
    """Never evicted (counted in its group all the same): a peer this node chose to dial, or
    one of its longest-connected inbound peers."""


def inbound_to_evict(slots: Sequence[InboundSlot], newcomer_group: bytes) -> int | None:
    """The connection to close so a newcomer from ``newcomer_group`` gets a slot, or None.

    None when no group with an unprotected member holds at least two more slots than the
    newcomer's: then the newcomer is refused, as it would be without this rule.
    """
    held = Counter(slot.group for slot in slots)
    floor = held[newcomer_group] + 2
    evictable = [slot for slot in slots if not slot.protected and held[slot.group] >= floor]
    if not evictable:
        return None
    most = max(held[slot.group] for slot in evictable)
    # Among equally full groups, the one with the youngest member gives way (deterministic,
    # whatever order the sessions were listed in).
    candidates = [slot for slot in evictable if held[slot.group] == most]
    youngest = max(candidates, key=lambda slot: (slot.opened_at, slot.conn_id))
    in_group = [slot for slot in candidates if slot.group == youngest.group]
    victim = max(
        in_group, key=lambda slot: (not slot.authenticated, slot.opened_at, slot.conn_id)
    )
    return victim.conn_id
