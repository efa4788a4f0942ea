from __future__ import annotations

import pytest

from murmur.base.errors import ConfigError
from murmur.sim.network import NetworkConfig, build_latency, link_uniform
from murmur.sim.rng import SeededRng


def test_region_latency_is_symmetric_constant_and_clipped() -> None:
    latency = build_latency(NetworkConfig(), 200, SeededRng(1))
    values = [latency.one_way_s(a, b) for a in range(0, 200, 7) for b in range(1, 200, 11)]
    assert all(0.010 <= v <= 0.300 for v in values)
    assert latency.one_way_s(3, 17) == latency.one_way_s(17, 3) == latency.one_way_s(3, 17)
    assert max(values) > 0.1 and min(values) < 0.05  # an inter-continental mix


def test_same_seed_same_latencies() -> None:
    a = build_latency(NetworkConfig(), 50, SeededRng(5))
    b = build_latency(NetworkConfig(), 50, SeededRng(5))
    assert [a.one_way_s(0, v) for v in range(1, 50)] == [b.one_way_s(0, v) for v in range(1, 50)]


def test_uniform_and_ideal_models() -> None:
    config = NetworkConfig(latency="uniform", latency_min_ms=20, latency_max_ms=40)
    uniform = build_latency(config, 10, SeededRng(1))
    assert all(0.020 <= uniform.one_way_s(0, v) <= 0.040 for v in range(1, 10))
    ideal = build_latency(NetworkConfig.ideal(), 10, SeededRng(1))
    assert ideal.one_way_s(0, 1) == 0.0
    assert NetworkConfig.ideal().uplink_bps is None


def test_link_uniform_is_in_the_unit_interval_and_spreads() -> None:
    draws = [link_uniform(42, a, a + 1) for a in range(5000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert 0.48 < sum(draws) / len(draws) < 0.52


def test_bad_configs_are_rejected() -> None:
    with pytest.raises(ConfigError):
        NetworkConfig(latency="telepathy")
    with pytest.raises(ConfigError):
        NetworkConfig(latency_min_ms=50, latency_max_ms=10)
    with pytest.raises(ConfigError):
        NetworkConfig(uplink_mbps=0.0)
