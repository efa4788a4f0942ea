"""Path bias's relay-side baseline: what a node's own relay says of the network's circuits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from murmur.base.ids import NodeId
from murmur.overlay.circuits.path_bias import PathBiasConfig, PathBiasCounts, RelayedOutcomes


def _peer(i: int) -> NodeId:
    return NodeId(i.to_bytes(32, "big"))


def _fill(relayed: RelayedOutcomes, *, peers: int, each: int, ok_share: float) -> None:
    """``each`` outcomes from each of ``peers`` predecessors, ``ok_share`` of them ok."""
    good = round(each * ok_share)
    for p in range(peers):
        for i in range(each):
            relayed.add(_peer(p), ok=i < good)


def _wilson_low(ok: int, outcomes: int) -> float:
    """The lower end of a one-sided 95 % Wilson interval, from scipy (a two-sided 90 % one)."""
    interval = binomtest(ok, outcomes).proportion_ci(confidence_level=0.90, method="wilson")
    return float(interval.low)


def test_with_nothing_or_little_counted_the_bar_is_the_floors() -> None:
    """A guard judged before our relay has seen the network is judged against the worst
    network the bar accepts, and a few lucky extensions do not pass for a healthy one."""
    relayed = RelayedOutcomes(PathBiasConfig())
    assert relayed.extension_success() == 0.0
    assert relayed.expected_circuit_success() == pytest.approx(0.36)  # 0.6 squared
    _fill(relayed, peers=3, each=1, ok_share=1.0)
    assert relayed.extension_success() == pytest.approx(_wilson_low(3, 3), rel=1e-4)  # 0.53
    assert relayed.expected_circuit_success() == pytest.approx(0.36)


def test_the_share_read_is_the_lower_end_of_its_interval() -> None:
    relayed = RelayedOutcomes(PathBiasConfig())
    _fill(relayed, peers=10, each=10, ok_share=0.9)  # weighing 40, 36 ok (0.9 counted)
    assert relayed.extension_success() == pytest.approx(_wilson_low(36, 40), rel=1e-4)  # 0.795
    assert relayed.expected_circuit_success() == pytest.approx(_wilson_low(36, 40) ** 2, rel=1e-3)
    healthy = RelayedOutcomes(PathBiasConfig())
    _fill(healthy, peers=100, each=4, ok_share=1.0)
    assert healthy.extension_success() == pytest.approx(_wilson_low(400, 400), rel=1e-4)  # 0.993
    # the more extensions counted at one share, the closer the bound comes to it
    more = RelayedOutcomes(PathBiasConfig())
    _fill(more, peers=100, each=10, ok_share=0.9)
    assert relayed.extension_success() < more.extension_success() < 0.9


def test_a_failing_network_lowers_the_bar_as_two_extensions_would_fail() -> None:
    relayed = RelayedOutcomes(PathBiasConfig(relayed_confidence_z=0.0))  # the share counted
    _fill(relayed, peers=10, each=10, ok_share=0.7)
    assert relayed.extension_success() == pytest.approx(0.7)
    assert relayed.expected_circuit_success() == pytest.approx(0.49)
    # a guard passing 40 % of its circuits: under the fixed bar (0.5), above the lowered one
    config = relayed.config
    guard = PathBiasCounts(20.0, 8.0)
    assert guard.condemns(config, 20)
    assert not guard.condemns(config, 20, relayed.expected_circuit_success())


def test_the_bar_never_falls_below_the_floor() -> None:
    relayed = RelayedOutcomes(PathBiasConfig())
    _fill(relayed, peers=10, each=10, ok_share=0.0)
    assert relayed.extension_success() == 0.0
    assert relayed.expected_circuit_success() == pytest.approx(0.36)  # 0.6 squared
    selective = PathBiasCounts(20.0, 3.0)  # a spy guard passing what goes to fellow spies
    assert selective.condemns(relayed.config, 20, relayed.expected_circuit_success())


def test_one_predecessor_failing_on_purpose_weighs_no_more_than_its_cap() -> None:
    """The relays we extend to are chosen by whoever builds through us: one client building
    circuits that fail past us, to have its spy guard spared, counts as four outcomes."""
    relayed = RelayedOutcomes(PathBiasConfig())
    _fill(relayed, peers=9, each=10, ok_share=1.0)
    for _ in range(1_000):
        relayed.add(_peer(500), ok=False)
    assert relayed.extension_success() == pytest.approx(_wilson_low(36, 40), rel=1e-4)


def test_the_least_recently_seen_predecessors_are_forgotten() -> None:
    relayed = RelayedOutcomes(PathBiasConfig(relayed_max_peers=4))
    for p in range(4):
        relayed.add(_peer(p), ok=False)
    relayed.add(_peer(0), ok=True)  # seen again: now the most recent
    relayed.add(_peer(9), ok=True)  # forgets peer 1
    assert list(relayed._by_peer) == [_peer(2), _peer(3), _peer(0), _peer(9)]
    assert relayed.extension_success() == pytest.approx(_wilson_low(2, 5), rel=1e-4)


def test_without_the_baseline_the_bar_stays_fixed() -> None:
    relayed = RelayedOutcomes(PathBiasConfig(relayed_baseline=False))
    _fill(relayed, peers=10, each=10, ok_share=0.2)
    assert relayed.expected_circuit_success() == 1.0


@pytest.mark.parametrize(
    "bad",
    [
        {"relayed_confidence_z": -1.0},
        {"relayed_max_peers": 0},
        {"relayed_floor": 0.0},
        {"relayed_floor": 1.5},
        {"relayed_cap_per_peer": 0.5},
    ],
)
def test_baseline_settings_are_checked(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PathBiasConfig(**bad)  # type: ignore[arg-type]


def test_a_collapse_takes_one_ok_back_and_never_goes_below_none() -> None:
    relayed = RelayedOutcomes(PathBiasConfig(relayed_confidence_z=0.0))
    relayed.revoke(_peer(1))  # nothing counted for it: nothing to take back
    assert relayed._by_peer == {}
    relayed.add(_peer(1), ok=True)
    relayed.add(_peer(1), ok=True)
    relayed.revoke(_peer(1))
    assert relayed.extension_success() == 0.5
    assert PathBiasCounts(2.0, 0.0).revoke() == PathBiasCounts(2.0, 0.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 600), st.sampled_from(["ok", "failed", "collapsed"]))))
def test_any_history_keeps_the_baseline_bounded(history: list[tuple[int, str]]) -> None:
    relayed = RelayedOutcomes(PathBiasConfig())
    for peer, outcome in history:
        if outcome == "collapsed":
            relayed.revoke(_peer(peer))
        else:
            relayed.add(_peer(peer), ok=outcome == "ok")
    assert len(relayed._by_peer) <= relayed.config.relayed_max_peers
    assert 0.0 <= relayed.extension_success() <= 1.0
    assert 0.36 - 1e-12 <= relayed.expected_circuit_success() <= 1.0
    assert 0.6 - 1e-12 <= relayed.expected_circuit_success(extensions=1) <= 1.0
