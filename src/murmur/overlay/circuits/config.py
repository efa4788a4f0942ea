"""Tunables of the circuit client and relay, with their units; defaults follow the seed and Tor."""

from __future__ import annotations

from dataclasses import dataclass, field

from murmur.overlay.circuits.guards import GuardConfig
from murmur.overlay.circuits.regions import RegionMap
from murmur.overlay.circuits.selection import MIN_RELAY_SCORE
from murmur.overlay.shaping.config import DelayRange
from murmur.wire.cells import PADDING_BUCKETS_BYTES, check_buckets


@dataclass(frozen=True, slots=True)
class ClientConfig:
    hops: int = 3
    min_relay_score: float = MIN_RELAY_SCORE
    """Relays scoring below this are never chosen (seed presets: 0.1 to 0.3)."""
    pool_size: int = 3
    """Ready circuits kept in the background (seed §1.2)."""
    max_parallel_builds: int = 3
    """Pool slots being filled at once (each slot may race several candidates)."""
    max_parallel_candidates: int = 8
    """Candidate circuits being built at once over all slots (at least one slot's race).
    A relay admits about 8 link-opening creates from one peer in a burst (``create_burst``
    over ``1 + connect_cost``), and near first hops send most candidates through one or two
    relays: 12 at once at 1,000 nodes had 5,221 candidates refused as rate-limited."""
    build_race: int = 1
    """Candidate circuits built at once for each pool slot, over independently drawn paths;
    the first to finish is kept and the others are torn down. Telescoping build time weighs
    every hop's round trip, so the winner is a low-latency path: Tor's adaptive build-time
    cutoff does the same (it abandons the slowest 20 %). 1 keeps the first path drawn."""
    race_through_exit: bool = True
    """Whether a race is decided when a candidate has built every hop (True) or every hop but
    the exit (False). Deciding before the exit leaves the exit's link a random draw: it is the
    one delay a spy at hop 1 cannot measure (it knows its own link to hop 2), so racing all of
    it narrows the delay such a spy must match across; racing up to hop 2 only speeds up
    links that spy already knows."""
    near_first_hops: int = 0
    """When positive, hop 1 is drawn from this many of our outbound links with the lowest
    round-trip time (see ``CircuitClient.link_latency``); 0 draws it from every relay. Near
    first hops cut the path's first leg; outbound only, because an inbound peer chose us
    and could sit close on purpose to become everyone's hop 1. Each pool slot takes its own
    one of them (the nearest no other slot uses), so the pool's circuits keep distinct first
    hops."""
    guards: GuardConfig = field(default_factory=GuardConfig)
    """Entry guards (``guards.count`` > 0): hop 1 from a few relays kept for weeks
    (:mod:`murmur.overlay.circuits.guards`). Not with near first hops: a guard is drawn from
    every relay, and drawing it from the nearest links would tell a spy at hop 2 whose it is."""
    regions: RegionMap | None = None
    """Regional paths, when set: every hop of our circuits, entry guards included, is drawn
    from the relays whose announced address this table places in our own region (our
    advertised address's), provided at least ``min_regional_relays`` of them may be a hop;
    otherwise (our region unknown, or too thin) from every relay, as when unset. A relay's
    region is the origin's reading of the address the relay signs and must be reachable at,
    never the relay's word, so a spy is in a region only by hosting there. The three links of
    a circuit within one region cost p50 58 ms and p99 128 ms in the simulator's latency
    model, against p99 420 ms for three drawn from the world; but hop 2 and the exit learn
    the origin's region, and the delay from hop 1 to publication that a timing spy must match
    narrows."""
    min_regional_relays: int = 30
    """Relays our region must offer as hop candidates for regional paths to keep to it."""
    lifetime_s: float = 600.0
    lifetime_jitter_s: float = 180.0
    """Each circuit is rotated after ``lifetime_s`` plus uniform jitter in [0, this]."""
    build_timeout_s: float = 30.0
    send_wait_s: float = 20.0
    """How long a send waits for a circuit before ``SendFailed``/``RequestFailed``."""
    max_waiting_sends: int = 256
    request_timeout_s: float = 30.0
    max_pending_requests: int = 256
    retry_backoff_min_s: float = 1.0
    retry_backoff_max_s: float = 60.0
    maintain_interval_s: float = 5.0
    """How often a short pool retries when no path could be selected."""
    reply_reassembly_timeout_s: float = 30.0
    max_reply_reassemblies: int = 8

    def __post_init__(self) -> None:
        if min(self.hops, self.pool_size, self.max_parallel_builds, self.build_race) < 1:
            raise ValueError("hops, pool_size, max_parallel_builds and build_race must be positive")
        if self.min_regional_relays < 1:
            raise ValueError("min_regional_relays must be positive")
        if self.near_first_hops < 0:
            raise ValueError("near_first_hops must not be negative")
        if self.near_first_hops and self.guards.count:
            raise ValueError("entry guards and near first hops cannot both choose hop 1")
        if not MIN_RELAY_SCORE <= self.min_relay_score <= 1.0:
            raise ValueError(f"min_relay_score must be within [{MIN_RELAY_SCORE}, 1]")


@dataclass(frozen=True, slots=True)
class RelayConfig:
    max_circuits: int = 8192
    max_circuits_per_peer: int = 1024
    cell_rate_per_s: float = 2000.0
    """Sustained relay cells accepted from one peer (all its circuits together): ~1.1 MB/s of
    546-byte cells, the byte rate 500 cells/s allowed when cells were 2,048 bytes, so a
    128 KiB sync response (257 cells) still passes within one burst."""
    cell_burst: float = 2000.0
    max_queued_cells_per_peer: int = 4000
    """Cells held back (not dropped) while a peer is over its rate (~2.2 MB); beyond this they
    drop."""
    create_rate_per_s: float = 5.0
    """CREATE cells and EXTEND requests accepted from one peer."""
    create_burst: float = 50.0
    connect_cost: float = 4.0
    """Extra create tokens an EXTEND costs when the relay has to open a new link for it."""
    extend_timeout_s: float = 20.0
    """Time for all of an EXTEND's cells to arrive (else the circuit is destroyed), and again
    for the next hop's CREATED (else TRUNCATED, timeout)."""
    create_timeout_s: float = 10.0
    """A CREATE whose cells have not all arrived by then is dropped (DESTROY, timeout)."""
    max_pending_creates: int = 1024
    """CREATEs partly received at once, from every peer together (~2 kB each)."""
    max_pending_creates_per_peer: int = 64
    max_circuit_lifetime_s: float = 3600.0
    onion_key_lifetime_s: float = 7 * 86_400.0
    onion_key_grace_s: float = 86_400.0
    exit_reassembly_timeout_s: float = 30.0
    max_reassemblies_per_circuit: int = 4
    max_reassembly_bytes: int = 16 * 1024 * 1024
    """All partially received messages (DATA at an exit, EXTENDs) at this relay, together."""
    max_reassembly_bytes_per_peer: int = 2 * 1024 * 1024
    """The share of it the circuits of one previous hop may hold: 16 unfinished messages of the
    largest bucket (128 KiB). A fragment that completes its message is never refused."""
    reply_buckets: tuple[int, ...] = PADDING_BUCKETS_BYTES
    """Size buckets an exit pads its replies to (``()``: exact size)."""
    forward_delay: DelayRange | None = None
    """Per-cell delay before forwarding a RELAY cell (seed §2.3 at relays); order per circuit
    and direction is kept. None forwards at once."""
    max_delayed_cells: int = 8192
    """Cells held back by ``forward_delay`` at once (~4.5 MB); beyond, the circuit is destroyed."""

    def __post_init__(self) -> None:
        check_buckets(self.reply_buckets)
        if not 0 < self.max_reassembly_bytes_per_peer <= self.max_reassembly_bytes:
            raise ValueError("max_reassembly_bytes_per_peer must be in (0, max_reassembly_bytes]")
        if self.max_delayed_cells < 1:
            raise ValueError("max_delayed_cells must be positive")
        if min(self.max_pending_creates, self.max_pending_creates_per_peer) < 1:
            raise ValueError("pending create limits must be positive")
