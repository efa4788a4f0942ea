"""Privacy levels and presets (seed onion-gossip §2 "Privacy Levels" and "Configuration").

Theory of operation. A :class:`PrivacyLevel` says how a private message leaves its origin (its
:class:`ShapingPolicy`: padding buckets, cover sizes, origin jitter, slot-based sending with
cover) and, when it is the node's own level, how the node treats the traffic it carries (a
per-cell delay at relays, padding frames on idle links). A level can be chosen per transaction;
the node's level also runs in the background (its cover starts with the node). A
:class:`PrivacyPreset` is a whole node's choice: circuit settings (hops, lifetime, minimum relay
score) and the level it uses unless the config names another. The seed's transport settings
(WebRTC, TLS tunnel) belong to phase 3 and are not here yet.

Every figure below is provisional: it is the seed's guess, or the cheapest setting that makes
the mechanism do its job, until the simulator measures attribution, latency and bandwidth for
each (docs/privacy-levels.md says which figure each one waits for).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from murmur.base.errors import ConfigError
from murmur.overlay.circuits.config import ClientConfig, RelayConfig
from murmur.overlay.circuits.guards import GuardConfig
from murmur.overlay.circuits.path_bias import PathBiasConfig
from murmur.overlay.circuits.regions import RegionMap
from murmur.overlay.shaping.config import (
    CoverConfig,
    DelayRange,
    RateConfig,
    ShapingPolicy,
    TimingLaw,
)
from murmur.overlay.shaping.link_padding import LinkPaddingConfig

LIFETIME_JITTER_FRACTION = 0.3
"""A circuit lives ``lifetime`` plus uniform jitter up to this fraction of it (600 s → 180 s)."""


@dataclass(frozen=True, slots=True)
class PrivacyLevel:
    name: str
    summary: str
    shaping: ShapingPolicy
    relay_delay: DelayRange | None = None
    """Applied by this node, as a relay, to every cell it forwards, when this is its level."""
    link_padding: LinkPaddingConfig | None = None
    """Padding frames on this node's idle links, when this is its level."""


@dataclass(frozen=True, slots=True)
class PrivacyPreset:
    name: str
    summary: str
    level: PrivacyLevel
    hops: int
    circuit_lifetime_s: float
    min_relay_score: float
    build_race: int = 1
    """Candidate circuits raced per pool slot (the fastest to build is kept)."""
    near_first_hops: int = 0
    """Hop 1 drawn from this many of our lowest-latency outbound links (0: any relay). Off in
    every preset: hop 1 then tells a spy at hop 2 that the origin is one of the few nodes that
    dialled it and have it among their nearest (:mod:`murmur.sim.near_entry`)."""
    race_through_exit: bool = True
    """Decide a build race on the whole path (True) or before the exit (False)."""
    entry_guards: int = 1
    """Relays hop 1 is taken from, kept 30 to 60 days (0: hop 1 from every relay, afresh for
    each circuit); :mod:`murmur.overlay.circuits.guards`. One in every preset, as in Tor: over
    months of rotations a sender whose hop 1 is drawn afresh is sooner or later seen by a spy
    at hop 1 with a second spy on the same circuit; with a guard only the senders whose guard
    is a spy ever are (docs/evaluation.md §6, "Entry guards")."""
    path_bias: bool = True
    """Disable an entry guard whose circuits fail past it far more often than circuits do
    (:mod:`murmur.overlay.circuits.path_bias`): a spy guard that extends circuits only to
    fellow spies would otherwise name its node as the origin of everything it sends."""
    path_bias_baseline: bool = True
    """Judge guards against how the node's own relay sees circuits fail (a network in
    trouble fails honest guards' circuits too); off: a fixed bar."""
    regional_paths: bool = False
    """Draw every hop, entry guards included, from the relays a region map places in our own
    region, while it has enough of them (``ClientConfig.regions``; the node needs the map).
    What it buys: the three links of a circuit cost p50 58 ms and p99 128 ms in the
    simulator's latency model, against p99 420 ms for three relays drawn from the world. What
    it costs: hop 2 and the exit learn the origin's region (a few regions hold every node),
    and the delay from hop 1 to publication that a timing spy at hop 1 must match narrows to
    one region's links. Off in every preset until the simulator has measured that cost."""


STANDARD = PrivacyLevel(
    name="standard",
    summary="onion circuits, padding to size buckets, Poisson background cover (1 msg/s)",
    shaping=ShapingPolicy(cover=CoverConfig(rate_per_s=1.0)),
)
ENHANCED = PrivacyLevel(
    name="enhanced",
    summary="standard with 3 msg/s cover, 0-30 ms relay delays and padding on idle links",
    shaping=ShapingPolicy(cover=CoverConfig(rate_per_s=3.0)),
    relay_delay=DelayRange(0.0, 0.03),
    link_padding=LinkPaddingConfig(quiet=DelayRange(1.5, 9.5)),
)
MAXIMUM = PrivacyLevel(
    name="maximum",
    summary="enhanced plus constant-rate sending (2 msg/s) with cover and 0-50 ms relay delays",
    shaping=ShapingPolicy(
        rate=RateConfig(rate_per_s=2.0, law=TimingLaw.CONSTANT, cover=True),
        max_pending=100,
    ),
    relay_delay=DelayRange(0.0, 0.05),
    link_padding=LinkPaddingConfig(quiet=DelayRange(0.5, 2.0)),
)

LEVELS: Mapping[str, PrivacyLevel] = MappingProxyType(
    {level.name: level for level in (STANDARD, ENHANCED, MAXIMUM)}
)
"""The levels a transaction may ask for (``murmur send-tx --level``)."""

PRESETS: Mapping[str, PrivacyPreset] = MappingProxyType(
    {
        preset.name: preset
        for preset in (
            PrivacyPreset(
                name="standard",
                summary="balance of privacy and performance",
                level=STANDARD,
                hops=3,
                circuit_lifetime_s=600.0,
                min_relay_score=0.2,
            ),
            PrivacyPreset(
                name="maximum",
                summary="high-risk users: constant-rate cover, faster circuit rotation",
                level=MAXIMUM,
                hops=3,
                circuit_lifetime_s=300.0,
                min_relay_score=0.3,
            ),
            PrivacyPreset(
                name="censorship_resistant",
                summary="reachability first: two hops, any relay, padding without jitter",
                level=replace(
                    STANDARD,
                    name="censorship_resistant",
                    summary="padding to size buckets, no cover",
                    shaping=ShapingPolicy(),
                ),
                hops=2,
                circuit_lifetime_s=600.0,
                min_relay_score=0.1,
            ),
        )
    }
)
DEFAULT_PRESET = "standard"


def level_named(name: str) -> PrivacyLevel:
    level = LEVELS.get(name)
    if level is None:
        raise ConfigError(f"unknown privacy level {name!r} (valid: {', '.join(LEVELS)})")
    return level


def preset_named(name: str) -> PrivacyPreset:
    preset = PRESETS.get(name)
    if preset is None:
        raise ConfigError(f"unknown privacy preset {name!r} (valid: {', '.join(PRESETS)})")
    return preset


@dataclass(frozen=True, slots=True)
class PrivacySettings:
    """A node's resolved choice: its preset and its own level (the preset's, unless named)."""

    preset: PrivacyPreset
    level: PrivacyLevel

    @classmethod
    def from_names(cls, preset: str = DEFAULT_PRESET, level: str | None = None) -> PrivacySettings:
        chosen = preset_named(preset)
        return cls(chosen, chosen.level if level is None else level_named(level))

    def tuned(
        self,
        *,
        cover_rate_per_s: float | None = None,
        build_race: int | None = None,
        near_first_hops: int | None = None,
        race_through_exit: bool | None = None,
        origin_delay: DelayRange | None = None,
        relay_delay: DelayRange | None = None,
        slot_law: TimingLaw | None = None,
        entry_guards: int | None = None,
        circuit_lifetime_s: float | None = None,
        path_bias: bool | None = None,
        path_bias_baseline: bool | None = None,
        cover_sizes: tuple[tuple[int, float], ...] | None = None,
        cover_to_second_hop: bool | None = None,
        regional_paths: bool | None = None,
    ) -> PrivacySettings:
        """The same settings with the node's level sending background cover at another rate
        (0: none), holding each message back at the origin for ``origin_delay`` (seed §2.3),
        its relays holding each cell for ``relay_delay`` (a zero range: not at all),
        timing its slots by another law (a level with slot-based sending only), drawing its
        first cover sizes from another mix (the simulator starts every node from the mix its
        workload's transactions teach, as on a network that has long carried them), addressing
        cover to hop 2 or the exit, and the preset
        racing another number of candidate circuits and drawing hop 1 from another number of
        near links, keeping another number of entry guards (with or without path bias, and
        its bar fixed or lowered by the relay-side baseline),
        rotating circuits after another lifetime (the simulator compresses months of rotations
        into minutes this way) and drawing hops from its own region or not: the knobs the
        simulator sweeps to choose the defaults. They are not node settings (but for regional
        paths, ``privacy.regional_paths``): a node on a level of its own would stand out among
        the others."""
        level, preset = self.level, self.preset
        shaping = level.shaping
        if cover_rate_per_s is not None:
            shaping = replace(
                shaping, cover=CoverConfig(cover_rate_per_s) if cover_rate_per_s > 0 else None
            )
        if origin_delay is not None:
            shaping = replace(shaping, origin_delay=origin_delay)
        if cover_sizes is not None:
            shaping = replace(shaping, cover_sizes=cover_sizes)
        if cover_to_second_hop is not None:
            shaping = replace(shaping, cover_to_second_hop=cover_to_second_hop)
        if slot_law is not None:
            if shaping.rate is None:
                raise ConfigError(f"level {level.name!r} sends no slots to time by a law")
            shaping = replace(shaping, rate=replace(shaping.rate, law=slot_law))
        if shaping is not level.shaping:
            level = replace(level, shaping=shaping)
        if relay_delay is not None:
            level = replace(level, relay_delay=relay_delay if relay_delay.max_s > 0 else None)
        if build_race is not None:
            preset = replace(preset, build_race=build_race)
        if near_first_hops is not None:
            # near first hops choose hop 1 instead of guards, unless guards are asked for too
            guards = 0 if near_first_hops and entry_guards is None else preset.entry_guards
            preset = replace(preset, near_first_hops=near_first_hops, entry_guards=guards)
        if race_through_exit is not None:
            preset = replace(preset, race_through_exit=race_through_exit)
        if entry_guards is not None:
            preset = replace(preset, entry_guards=entry_guards)
        if circuit_lifetime_s is not None:
            preset = replace(preset, circuit_lifetime_s=circuit_lifetime_s)
        if path_bias is not None:
            preset = replace(preset, path_bias=path_bias)
        if path_bias_baseline is not None:
            preset = replace(preset, path_bias_baseline=path_bias_baseline)
        if regional_paths is not None:
            preset = replace(preset, regional_paths=regional_paths)
        return PrivacySettings(preset, level)

    def level_for(self, name: str | None) -> PrivacyLevel:
        """The level a message asked for by name, or the node's own when it named none."""
        if name is None or name == self.level.name:
            return self.level
        return level_named(name)

    def client_config(self, regions: RegionMap | None = None) -> ClientConfig:
        """The circuit client's settings; ``regions``: the node's region map, which regional
        paths need (:class:`ConfigError` without it) and nothing else uses."""
        if self.preset.regional_paths and regions is None:
            raise ConfigError("regional paths need a region map (privacy.region_map)")
        lifetime = self.preset.circuit_lifetime_s
        bias = PathBiasConfig(relayed_baseline=self.preset.path_bias_baseline)
        return ClientConfig(
            hops=self.preset.hops,
            min_relay_score=self.preset.min_relay_score,
            lifetime_s=lifetime,
            lifetime_jitter_s=lifetime * LIFETIME_JITTER_FRACTION,
            build_race=self.preset.build_race,
            near_first_hops=self.preset.near_first_hops,
            race_through_exit=self.preset.race_through_exit,
            guards=GuardConfig(
                count=self.preset.entry_guards,
                path_bias=bias if self.preset.path_bias else replace(bias, disable_below=0.0),
            ),
            regions=regions if self.preset.regional_paths else None,
        )

    def relay_config(self) -> RelayConfig:
        return RelayConfig(forward_delay=self.level.relay_delay)
