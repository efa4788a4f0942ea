"""Privacy levels and presets: names, what each turns on, and the configs they produce."""

from __future__ import annotations

from dataclasses import replace

import pytest

from murmur.base.errors import ConfigError
from murmur.node.levels import (
    LEVELS,
    PRESETS,
    PrivacySettings,
    level_named,
    preset_named,
)
from murmur.overlay.circuits.regions import RegionMap
from murmur.overlay.circuits.selection import MIN_RELAY_SCORE
from murmur.overlay.shaping import TimingLaw
from murmur.overlay.shaping.config import DelayRange
from murmur.wire.cells import PADDING_BUCKETS_BYTES


def test_the_seeds_levels_and_presets_exist() -> None:
    assert list(LEVELS) == ["standard", "enhanced", "maximum"]
    assert list(PRESETS) == ["standard", "maximum", "censorship_resistant"]
    assert all(level_named(name).name == name for name in LEVELS)


def test_unknown_names_are_clear_errors_listing_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"'paranoid'.*standard, enhanced, maximum"):
        level_named("paranoid")
    with pytest.raises(ConfigError, match="standard, maximum, censorship_resistant"):
        preset_named("tor")


def test_every_level_pads_and_each_adds_to_the_one_below() -> None:
    standard, enhanced, maximum = (LEVELS[n] for n in ("standard", "enhanced", "maximum"))
    for level in LEVELS.values():
        assert level.shaping.buckets == PADDING_BUCKETS_BYTES
    assert standard.shaping.rate is None and standard.link_padding is None
    assert enhanced.shaping.rate is None and enhanced.link_padding is not None
    assert standard.shaping.cover and enhanced.shaping.cover
    assert enhanced.shaping.cover.rate_per_s > standard.shaping.cover.rate_per_s
    assert standard.relay_delay is None and enhanced.relay_delay is not None
    # Slots already decide when a message leaves: a delay before the queue would only add
    # latency (docs/privacy-levels.md §2).
    assert all(level.shaping.origin_delay is None for level in LEVELS.values())
    rate = maximum.shaping.rate
    assert rate is not None and rate.cover and rate.law is TimingLaw.CONSTANT
    assert (rate.rate_per_s, maximum.shaping.max_pending) == (2.0, 100)  # the seed's
    assert maximum.relay_delay is not None and maximum.link_padding is not None
    assert enhanced.relay_delay is not None and enhanced.link_padding is not None
    # maximum holds cells longer and pads idle links sooner than enhanced
    assert maximum.relay_delay.max_s > enhanced.relay_delay.max_s
    assert maximum.link_padding.quiet.max_s < enhanced.link_padding.quiet.max_s
    assert maximum.link_padding.quiet.min_s < enhanced.link_padding.quiet.min_s


def test_each_levels_summary_states_its_figures() -> None:
    """What ``murmur`` tells a user a level does must be what it does."""
    for level in LEVELS.values():
        if level.shaping.cover is not None:
            assert f"({level.shaping.cover.rate_per_s:g} msg/s)" in level.summary or (
                f"{level.shaping.cover.rate_per_s:g} msg/s cover" in level.summary
            ), level.name
        if level.shaping.rate is not None:
            assert f"({level.shaping.rate.rate_per_s:g} msg/s)" in level.summary, level.name
        if level.relay_delay is not None:
            assert f"{level.relay_delay.label_ms()} ms relay delays" in level.summary, level.name
        if level.link_padding is not None:
            assert "idle links" in level.summary or level.summary.startswith("enhanced plus")


def test_presets_set_the_circuits_and_the_default_level() -> None:
    default = PrivacySettings.from_names()
    assert (default.preset.name, default.level.name) == ("standard", "standard")
    client = default.client_config()
    assert (client.hops, client.lifetime_s, client.min_relay_score) == (3, 600.0, 0.2)
    assert client.build_race == 1  # racing is measured off by default (docs/evaluation.md)
    assert default.relay_config().forward_delay is None
    assert all(PrivacySettings.from_names(p).client_config().guards.count == 1 for p in PRESETS)

    maximum = PrivacySettings.from_names("maximum")
    assert maximum.level is LEVELS["maximum"]
    assert maximum.client_config().lifetime_s == 300.0
    assert maximum.client_config().hops == 3
    assert maximum.client_config().min_relay_score > client.min_relay_score
    assert maximum.relay_config().forward_delay == LEVELS["maximum"].relay_delay

    censored = PrivacySettings.from_names("censorship_resistant")
    client = censored.client_config()
    assert (client.hops, client.min_relay_score) == (2, MIN_RELAY_SCORE)
    assert censored.level.shaping.origin_delay is None and censored.level.shaping.cover is None
    assert censored.level.shaping.buckets == PADDING_BUCKETS_BYTES


def test_tuning_near_first_hops_replaces_the_guard_and_lifetimes_compress() -> None:
    default = PrivacySettings.from_names()
    near = default.tuned(near_first_hops=3).client_config()
    assert (near.near_first_hops, near.guards.count) == (3, 0)
    assert default.tuned(near_first_hops=0).client_config().guards.count == 1
    unguarded = default.tuned(entry_guards=0, circuit_lifetime_s=20.0).client_config()
    assert (unguarded.guards.count, unguarded.lifetime_s, unguarded.lifetime_jitter_s) == (
        0,
        20.0,
        6.0,
    )
    with pytest.raises(ValueError, match="near first hops"):
        default.tuned(near_first_hops=3, entry_guards=1).client_config()


def test_a_named_level_overrides_the_presets_and_messages_may_ask_for_others() -> None:
    settings = PrivacySettings.from_names("maximum", "standard")
    assert settings.level is LEVELS["standard"]
    assert settings.client_config().lifetime_s == 300.0  # still the maximum preset's circuits
    assert settings.level_for(None) is LEVELS["standard"]
    assert settings.level_for("maximum") is LEVELS["maximum"]
    with pytest.raises(ConfigError):
        settings.level_for("max")


def test_tuned_settings_change_only_the_cover_rate_and_the_race() -> None:
    base = PrivacySettings.from_names()
    tuned = base.tuned(cover_rate_per_s=0.25, build_race=2)
    assert tuned.level.shaping.cover is not None and tuned.level.shaping.cover.rate_per_s == 0.25
    assert tuned.client_config().build_race == 2
    assert tuned.level.shaping.buckets == base.level.shaping.buckets
    assert base.tuned(cover_rate_per_s=0.0).level.shaping.cover is None
    assert base.tuned() == base


def test_tuned_settings_hold_messages_at_the_origin_and_time_slots_by_another_law() -> None:
    base = PrivacySettings.from_names()
    held = base.tuned(origin_delay=DelayRange(0.05, 0.15)).level.shaping
    assert held.origin_delay == DelayRange(0.05, 0.15)
    assert held.cover == base.level.shaping.cover and held.rate is None
    maximum = PrivacySettings.from_names("maximum")
    poisson = maximum.tuned(slot_law=TimingLaw.POISSON).level.shaping.rate
    assert poisson is not None and poisson.law is TimingLaw.POISSON
    assert poisson.rate_per_s == maximum.level.shaping.rate.rate_per_s  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="no slots"):
        base.tuned(slot_law=TimingLaw.POISSON)


def test_tuned_settings_give_relays_another_delay_or_none() -> None:
    base = PrivacySettings.from_names()
    assert base.relay_config().forward_delay is None
    delayed = base.tuned(relay_delay=DelayRange(0.0, 0.03))
    assert delayed.relay_config().forward_delay == DelayRange(0.0, 0.03)
    assert delayed.level.shaping == base.level.shaping
    enhanced = PrivacySettings.from_names(level="enhanced")
    assert enhanced.tuned(relay_delay=DelayRange(0.0, 0.0)).relay_config().forward_delay is None


def test_tuned_settings_start_cover_from_another_size_mix() -> None:
    base = PrivacySettings.from_names()
    mix = ((512, 3.0), (8192, 1.0))
    shaping = base.tuned(cover_sizes=mix).level.shaping
    assert shaping.cover_sizes == mix
    assert replace(shaping, cover_sizes=base.level.shaping.cover_sizes) == base.level.shaping
    with pytest.raises(ValueError, match="at least one size"):
        base.tuned(cover_sizes=())


def test_tuned_settings_switch_path_bias_and_its_baseline() -> None:
    base = PrivacySettings.from_names()
    bias = base.client_config().guards.path_bias
    assert bias.disable_below > 0.0 and bias.relayed_baseline
    off = base.tuned(path_bias=False).client_config().guards.path_bias
    assert off.disable_below == 0.0  # never disables a guard
    fixed = base.tuned(path_bias_baseline=False).client_config().guards.path_bias
    assert not fixed.relayed_baseline and fixed.disable_below == bias.disable_below


def test_regional_paths_are_off_in_every_preset_and_need_a_region_map() -> None:
    regions = RegionMap.parse("192.0.2.0/24 eu\n")
    assert not any(preset.regional_paths for preset in PRESETS.values())
    base = PrivacySettings.from_names()
    assert base.client_config(regions).regions is None  # a map alone turns nothing on
    regional = base.tuned(regional_paths=True)
    config = regional.client_config(regions)
    assert config.regions is regions and config.min_regional_relays == 30
    assert replace(config, regions=None) == base.client_config()
    with pytest.raises(ConfigError, match="need a region map"):
        regional.client_config()
