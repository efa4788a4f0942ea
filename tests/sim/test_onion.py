"""The onion protocol on production nodes in the simulator (small seeded networks)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from murmur.base.errors import ConfigError
from murmur.base.ids import NodeId
from murmur.overlay.circuits.guards import GuardRecord
from murmur.sim.crypto_standin import standin_crypto
from murmur.sim.metrics import quantile
from murmur.sim.network import NetworkConfig
from murmur.sim.node_host import WALL_CLOCK_AT_ZERO_S, node_address
from murmur.sim.onion import OnionKit, _OnionRun, _seconds_behind_spy, world_region_map
from murmur.sim.results import aggregate, overheads, paired_extra_latency_ms, summarise
from murmur.sim.scenario import RunRecord, Scenario, World, draw_world
from murmur.sim.timing import origin_events

SMALL = Scenario(nodes=30, graph="daemon", spy_fraction=0.1, tx_count=12, tx_rate_per_s=4.0)
FAST = OnionKit(standin_crypto=True)


@pytest.fixture(scope="module")
def record() -> RunRecord:
    return FAST.run(draw_world(SMALL, 2), SMALL)


def figures(record: RunRecord) -> tuple[object, ...]:
    s, b = summarise(record), summarise(record.baseline) if record.baseline else None
    assert b is not None
    return (
        s.precision, s.recall, s.reach_ms, s.bytes_sent, s.events, s.relay_participation,
        b.precision, b.reach_ms, b.bytes_sent, record.extras,
    )  # fmt: skip


def test_same_seed_same_figures(record: RunRecord) -> None:
    assert figures(FAST.run(draw_world(SMALL, 2), SMALL)) == figures(record)
    assert figures(FAST.run(draw_world(SMALL, 3), SMALL)) != figures(record)


def test_every_transaction_reaches_every_node_exactly_once(record: RunRecord) -> None:
    assert record.baseline is not None
    for run in (record, record.baseline):
        assert all(tx.delivered and None not in tx.reach_s for tx in run.txs)
    assert record.extras["duplicate_deliveries"] == 0
    assert record.extras["failed_sends"] == 0
    assert record.extras["warmup_ready_fraction"] == 1.0


def test_onion_relays_cost_latency_and_bytes_over_the_fast_path(record: RunRecord) -> None:
    onion = summarise(record)
    assert record.baseline is not None
    fast = summarise(record.baseline)
    assert (onion.protocol, fast.protocol) == ("onion", "fastpath")
    assert 0.0 < onion.relay_participation <= 1.0
    assert onion.latency_ms["p50"] > fast.latency_ms["p50"]
    assert onion.bytes_sent > fast.bytes_sent
    assert set(onion.precision) == {
        "first_spy",
        "timing",
        "timing_latency",
        "timing_known_law",
        "timing_intersection",
        "timing_end_to_end",
        "timing_circuit_pairing",
        "timing_entry_middle",
        "circuit_collusion",
        "near_entry",
        "timing_regional",
    }


def test_spies_log_cells_and_know_when_they_are_hop_one(record: RunRecord) -> None:
    log = record.log
    assert log.hops == 3 and log.cells
    assert {c.spy for c in log.cells} <= set(record.spies)
    assert record.extras["spy_hop1_circuits"] > 0
    # Every circuit a spy took for one where it is hop 1 was one (no false positives).
    assert record.extras["spy_hop1_inferred"] == record.extras["spy_hop1_inferred_correct"]


def test_a_lone_spy_at_hop_one_attributes_the_lone_transaction() -> None:
    scenario = replace(SMALL, nodes=14, tx_count=1)
    world = draw_world(scenario, 4)
    origin = world.arrivals[0].origin
    kit = OnionKit(standin_crypto=True, fast_path=False, cover_rate_per_s=0.0)
    # Without cover, first, every node but the origin spies: the one that saw a message leave
    # the origin as hop 1 is the hop 1 of the circuit the transaction took.
    everyone = kit.run(replace(world, spies=frozenset(range(14)) - {origin}), scenario)
    [event] = origin_events(everyone.log)
    assert event.node == origin
    hop_one = next(c.spy for c in everyone.log.cells if c.time == event.time)
    # Then that node alone spies, with no other traffic: timing names the origin.
    alone: World = replace(world, spies=frozenset({hop_one}))
    record = kit.run(alone, scenario)
    assert record.extras["spy_hop1_tx"] == 1 and record.extras["spy_both_ends_tx"] == 0
    result = summarise(record)
    assert result.recall["timing"] == 1.0 and result.precision["timing"] == 1.0


def test_spies_at_both_ends_name_the_origin_through_the_levels_relay_delays() -> None:
    """At the enhanced level relays hold each cell 0-30 ms; spies know that range, and spies
    at hop 1 and the exit (here every node but the origin) still pair the transaction, per
    message and through the circuit's build."""
    scenario = replace(SMALL, nodes=14, tx_count=1)
    world = draw_world(scenario, 4)
    origin = world.arrivals[0].origin
    kit = OnionKit(standin_crypto=True, fast_path=False, level="enhanced", cover_rate_per_s=0.0)
    record = kit.run(replace(world, spies=frozenset(range(14)) - {origin}), scenario)
    assert record.log.relay_delay_s == (0.0, 0.03)
    assert record.log.inbound and record.extras["spy_both_ends_tx"] == 1
    # Hop 1 dates the origin's messages when its own relay sent them on, after its hold.
    events = origin_events(record.log)
    forwarded = {f.time for f in record.log.forwards}
    came = {c.time for c in record.log.cells}
    assert events and all(e.time in forwarded and e.time not in came for e in events)
    result = summarise(record)
    assert result.recall["timing_end_to_end"] == 1.0
    assert result.recall["timing_circuit_pairing"] == 1.0
    # Hop 1 and hop 2 are spies too: they join by their link's circuit id, whatever the delays.
    assert record.extras["spy_entry_middle_tx"] == record.extras["spy_entry_and_later_tx"] == 1
    # The origin is the only honest node and every relay spies: each of its circuits is exposed.
    assert record.extras["spy_entry_and_later_circuits"] == record.extras["circuits_in_use"] > 0
    assert result.recall["timing_entry_middle"] == result.recall["circuit_collusion"] == 1.0


def test_with_near_first_hops_a_spy_at_hop_two_names_the_origin() -> None:
    """Every node but the origin spies; a spy at hop 2 pairs the transaction with the exit's
    publication and names the one honest node that dialled hop 1 and has it among its three
    nearest outbound peers. With hop 1 drawn from any relay, hop 1 says nothing: it abstains."""
    scenario = replace(SMALL, nodes=14, tx_count=1)
    world = draw_world(scenario, 4)
    origin = world.arrivals[0].origin
    spied = replace(world, spies=frozenset(range(14)) - {origin})
    for near, named in ((3, 1.0), (0, 0.0)):
        kit = OnionKit(
            standin_crypto=True, fast_path=False, cover_rate_per_s=0.0, near_first_hops=near
        )
        record = kit.run(spied, scenario)
        assert record.log.near_first_hops == near and record.log.outbound == world.graph.out
        assert summarise(record).recall["near_entry"] == named


def test_production_crypto_runs_by_default() -> None:
    scenario = replace(SMALL, nodes=12, tx_count=2)
    record = OnionKit(fast_path=False).run(draw_world(scenario, 5), scenario)
    assert record.extras["crypto"] == "real"
    assert all(tx.delivered for tx in record.txs)


def test_announcements_can_flood_instead_of_being_preloaded() -> None:
    scenario = replace(SMALL, nodes=16, tx_count=3)
    kit = OnionKit(standin_crypto=True, announce_flood=True, fast_path=False)
    record = kit.run(draw_world(scenario, 6), scenario)
    assert record.extras["directory"] == "flood"
    assert all(tx.delivered for tx in record.txs)


def test_directory_upkeep_is_measured_and_lazy_announcements_cost_less() -> None:
    scenario = replace(SMALL, nodes=40, tx_count=4)
    world = draw_world(scenario, 3)

    def upkeep(eager: bool) -> dict[str, float | int | str]:
        kit = OnionKit(standin_crypto=True, upkeep_window_s=20.0, eager_announcements=eager)
        return kit.run(world, scenario).extras

    lazy, eager = upkeep(False), upkeep(True)
    assert lazy["upkeep_reached"] == eager["upkeep_reached"] == 1.0
    lazy_bytes = float(lazy["upkeep_bytes_per_node_per_announcement"])
    eager_bytes = float(eager["upkeep_bytes_per_node_per_announcement"])
    record_bytes = 8_848  # one announcement record, before framing and link overhead
    assert record_bytes < lazy_bytes < 1.5 * record_bytes
    assert eager_bytes > 2.5 * lazy_bytes
    assert float(lazy["bandwidth_overhead_with_upkeep"]) > 0


def test_the_upkeep_stage_after_the_phase_stays_out_of_the_phases_log(record: RunRecord) -> None:
    """Directory upkeep runs after the onion phase; the cells and links spies see then (circuits
    rotated, cover) are no observation of the phase's transactions, so the record's log is the
    same as without upkeep, and so are the estimators' figures."""
    with_upkeep = replace(FAST, upkeep_window_s=20.0).run(draw_world(SMALL, 2), SMALL)
    assert "upkeep_reached" in with_upkeep.extras
    log, plain = with_upkeep.log, record.log
    assert all(c.time <= with_upkeep.sim_end_s for c in log.cells)
    assert (log.cells, log.links, log.inbound, log.sightings) == (
        plain.cells, plain.links, plain.inbound, plain.sightings,
    )  # fmt: skip
    ours, theirs = summarise(with_upkeep), summarise(record)
    assert (ours.precision, ours.recall) == (theirs.precision, theirs.recall)


def test_churn_is_refused() -> None:
    scenario = replace(SMALL, network=NetworkConfig(churn_per_node_per_hour=1.0))
    with pytest.raises(ConfigError):
        FAST.run(draw_world(scenario, 1), scenario)


def test_the_default_level_sends_cover_without_losing_circuits(
    record: RunRecord,
) -> None:
    extras = record.extras
    assert (extras["level"], extras["build_race"], extras["cover_rate_per_s"]) == (
        "standard",
        1,
        1.0,
    )
    assert extras["near_first_hops"] == 0 and extras["race_through_exit"] == 1
    assert int(extras["cover_messages"]) > 10 * len(record.txs)
    # A duplicate link must not take the peer's circuits down with it (with racing on it once
    # failed 162 of 173 circuits in this network).
    assert int(extras["circuits_failed"]) <= 0.1 * int(extras["circuits_built"])
    assert extras["timer_spins"] == 0  # no node left a deadline in the past


def test_cover_takes_the_cell_count_of_the_workloads_transactions(record: RunRecord) -> None:
    """Spies pair a transaction only with departures of its padded size, so cover must copy
    the network's sizes. Every node starts from the mix the workload's transactions pad to (a
    network that has long carried them: 250 bytes, one cell), not from the level's prior
    (2,048 bytes, four cells), and keeps it while they flow."""
    log = record.log
    assert set(log.tx_cells.values()) == {1}
    first_sighting = min(s.time for s in log.first.values())
    cells = [e.cells for e in origin_events(log)]
    before = [e.cells for e in origin_events(log) if e.time < first_sighting]
    assert len(before) > 20 and len(cells) > len(before) + 10
    assert set(cells) == {1}


def test_spies_log_cover_where_they_read_it_at_the_exit_or_at_hop_2(record: RunRecord) -> None:
    """A spy logs the cover it reads: as the exit by default, as hop 2 (a circuit it passes
    cells on for) when cover is addressed there."""

    def cover_circuits(run: RunRecord) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
        cells = run.log.cells
        cover = {(c.spy, c.circuit) for c in cells if c.relay_command == "COVER"}
        return cover, cover & {(c.spy, c.circuit) for c in cells if c.leg == "next"}

    cover, onward = cover_circuits(record)
    assert cover and not onward
    kit = OnionKit(standin_crypto=True, cover_to_second_hop=True)
    middle = kit.run(draw_world(SMALL, 2), SMALL)
    assert middle.extras["cover_to_second_hop"] == 1
    cover, onward = cover_circuits(middle)
    assert cover and onward == cover
    assert all(tx.delivered for tx in middle.txs)


def test_the_fast_path_baseline_is_paired_with_the_onion_phase(record: RunRecord) -> None:
    """The baseline runs in a fork from the state the warm-up left: each transaction enters
    both networks at the same virtual time, and the run counts both processes' events."""
    assert record.baseline is not None
    assert [t.injected_at for t in record.txs] == [t.injected_at for t in record.baseline.txs]
    assert record.baseline.bytes_sent > 0 and record.baseline.sim_end_s > record.txs[-1].injected_at
    # The parent's onion phase is the run without a baseline, step for step.
    alone = replace(FAST, fast_path=False).run(draw_world(SMALL, 2), SMALL)
    assert alone.baseline is None
    assert (alone.txs, alone.bytes_sent, alone.log) == (record.txs, record.bytes_sent, record.log)
    assert alone.events < record.events


def test_the_paired_overhead_is_each_transactions_own_extra_latency(record: RunRecord) -> None:
    assert record.baseline is not None
    onion, fast = aggregate([summarise(record)]), aggregate([summarise(record.baseline)])
    cost = overheads(onion, fast)
    extra = sorted(paired_extra_latency_ms(onion, fast))
    assert len(extra) == len(record.txs) and min(extra) > 0.0
    assert cost.paired_latency_ms == {"p50": quantile(extra, 0.5), "p99": quantile(extra, 0.99)}
    # Pairs are made by origin and submission time, run by run; a transaction that did not get
    # there in either phase has no pair.
    mine_agg = replace(onion, latency_by_tx=(((0, 1.0, 300.0), (2, 2.0, 900.0), (3, 3.0, None)),))
    theirs_agg = replace(fast, latency_by_tx=(((2, 2.0, 100.0), (0, 1.0, 200.0), (3, 3.0, 50.0)),))
    assert paired_extra_latency_ms(mine_agg, theirs_agg) == [100.0, 800.0]


def test_spies_that_follow_the_protocol_get_no_guard_disabled(record: RunRecord) -> None:
    extras = record.extras
    assert extras["selective_denial"] == "none" and extras["circuits_denied"] == 0
    assert extras["path_bias"] == extras["path_bias_baseline"] == 1
    assert extras["overload"] == 0.0 and extras["circuits_refused_overload"] == 0
    assert extras["honest_guards_disabled"] == extras["spy_guards_disabled"] == 0


def _without_and_with(
    scenario: Scenario, knob: str, **kit: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The extras of two runs of one world (seed 3), ``knob`` off then on: no fast path,
    circuits rotated every 20 s so that path-bias outcomes pile up within the run."""
    world = draw_world(scenario, 3)
    off, on = (
        OnionKit(
            standin_crypto=True, fast_path=False, circuit_lifetime_s=20.0, **{knob: value}, **kit
        )
        .run(world, scenario)
        .extras
        for value in (False, True)
    )
    return off, on


@pytest.mark.parametrize(
    ("mode", "level", "spy_guards_dropped"),
    [("extend", None, 2), ("carry", None, 2), ("carry", "maximum", 1)],
)
def test_spy_guards_that_deny_service_are_dropped_by_path_bias(
    mode: str, level: str | None, spy_guards_dropped: int
) -> None:
    """Spies serve circuits from honest relays only towards fellow spies (an active
    adversary), refusing to extend them or dropping what they carry (also where relays hold
    cells and send at constant rates: the maximum level): honest nodes behind a spy guard
    keep only circuits with a spy at hop 2 too, until path bias disables the guard. Honest
    guards are never disabled by the noise spies make at hop 2. Six heavy senders, and
    circuits that rotate every 20 s, so that outcomes pile up within the run. (Carried cells
    are judged by messages only, and only the heavy senders send, so only their spy guards
    can be found; how many of them drew one differs between levels, whose draws differ.)

    What spies see at hop 1 and a later hop is measured as the node-seconds honest nodes
    spent behind a spy guard over the workload: all that such a node gets through is seen at
    both. The transactions spies saw at both are too few here to compare (4 against 0 at the
    maximum level, all from one heavy sender; a change elsewhere once made a pair 3 against
    3). The node-seconds are read off guard lists drawn as the nodes start, the same in both
    runs but for the guards path bias disabled."""
    scenario = replace(SMALL, spy_fraction=0.2, tx_count=150, tx_rate_per_s=1.0, origin_count=6)
    off, on = _without_and_with(scenario, "path_bias", selective_denial=mode, level=level)
    assert off["selective_denial"] == on["selective_denial"] == mode
    assert off["circuits_denied"] > 50 and on["circuits_denied"] > 50
    assert off["path_bias"] == 0 and off["spy_guards_disabled"] == 0
    assert on["path_bias"] == 1 and on["spy_guards_disabled"] >= spy_guards_dropped
    assert off["honest_guards_disabled"] == on["honest_guards_disabled"] == 0
    assert on["nodes_behind_spy_guard"] < off["nodes_behind_spy_guard"]
    assert on["node_seconds_behind_spy_guard"] < off["node_seconds_behind_spy_guard"]


def test_the_time_behind_a_spy_guard_is_read_off_the_guard_list() -> None:
    """Within the span (10 s to 100 s): behind the spy from the start until path bias
    disabled it at 40 s, then behind the honest guard sampled next; a spy sampled later
    (at 70 s) is no node's guard while an earlier one is usable."""
    spy, honest, later_spy = (NodeId(bytes([i]) * 32) for i in (1, 2, 3))
    wall = WALL_CLOCK_AT_ZERO_S
    guards = [
        GuardRecord(spy, wall - 5.0, wall + 1e6, disabled_at=wall + 40.0),
        GuardRecord(honest, wall - 5.0, wall + 1e6),
        GuardRecord(later_spy, wall + 70.0, wall + 1e6),
    ]
    spies = {spy, later_spy}
    assert _seconds_behind_spy(guards, (10.0, 100.0), spies.__contains__) == 30.0
    assert _seconds_behind_spy(guards[:1], (10.0, 100.0), spies.__contains__) == 30.0
    kept = [replace(guards[0], disabled_at=None), *guards[1:]]
    assert _seconds_behind_spy(kept, (10.0, 100.0), spies.__contains__) == 90.0


def test_an_overloaded_network_disables_honest_guards_only_without_the_relay_baseline() -> None:
    """Every honest relay refuses 35 % of the circuits extended to it, so circuits past an
    honest guard fail more than half the time: under path bias's fixed bar nearly every node
    drops its guard, twice, each time a fresh chance of drawing a spy. Judged against what
    its own relay sees of the network, almost none does. (30 nodes, 6 heavy senders, circuits
    rotated every 20 s; the spies follow the protocol, so every guard disabled is a false
    alarm.)"""
    scenario = replace(SMALL, tx_count=150, tx_rate_per_s=1.0, origin_count=6)
    off, on = _without_and_with(scenario, "path_bias_baseline", overload=0.35)
    assert off["path_bias_baseline"] == 0 and on["path_bias_baseline"] == 1
    assert off["overload"] == on["overload"] == 0.35
    assert off["circuits_refused_overload"] > 500 and on["circuits_refused_overload"] > 500
    false_alarms = {
        b: e["honest_guards_disabled"] + e["spy_guards_disabled"]
        for b, e in ((False, off), (True, on))
    }
    assert false_alarms[False] >= 20
    assert false_alarms[True] <= false_alarms[False] / 5
    assert off["guard_outcomes_spared"] == 0 and on["guard_outcomes_spared"] > 0
    assert off["guard_disables_withheld"] > on["guard_disables_withheld"]


def test_an_overload_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="overload"):
        OnionKit(overload=1.2)


def test_an_unknown_denial_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match="selective denial"):
        OnionKit(selective_denial="sometimes")


def _regional_run(regional: bool) -> tuple[_OnionRun, RunRecord, list[str]]:
    """A 90-node world run with or without regional paths; each node's region too. About
    40 % of nodes are in eu, so eu holds the 30 other relays regional paths ask for."""
    scenario = replace(SMALL, nodes=90, tx_count=4)
    world = draw_world(scenario, 6)
    kit = OnionKit(
        standin_crypto=True, fast_path=False, cover_rate_per_s=0.0, regional_paths=regional
    )
    with standin_crypto(True):
        run = _OnionRun(world, scenario, kit, None)
        record = run.run()
    regions = world_region_map(world)
    return run, record, [regions.region_of(node_address(v).host) or "" for v in range(90)]


def test_with_regional_paths_every_hop_is_in_the_origins_region_while_it_is_populated() -> None:
    run, record, labels = _regional_run(True)
    population = Counter(labels)
    populated = {label for label, count in population.items() if count - 1 >= 30}
    assert populated and set(population) - populated  # both cases occur in this world
    regional = other = 0
    for v, node in enumerate(run.nodes):
        hops = [
            [labels[run.index_of[hop]] for hop in path]
            for path in node.circuits.client.circuit_paths()
        ]
        assert all(len(path) == 3 for path in hops)
        if labels[v] in populated:
            assert all(set(path) == {labels[v]} for path in hops)
            regional += len(hops)
        else:
            other += len(hops)
    assert regional > 0 and other > 0
    assert record.extras["regional_paths"] == 1
    assert record.extras["paths_regional"] > 0 and record.extras["paths_not_regional"] > 0
    # The adversary knows the rule and the public map: its log places every node.
    assert record.log.regions == dict(enumerate(labels))


def test_without_regional_paths_hops_come_from_every_region() -> None:
    run, record, labels = _regional_run(False)
    mixed = [
        path
        for v, node in enumerate(run.nodes)
        for path in node.circuits.client.circuit_paths()
        if {labels[run.index_of[hop]] for hop in path} != {labels[v]}
    ]
    assert mixed
    assert (record.extras["regional_paths"], record.extras["paths_regional"]) == (0, 0)
    assert record.extras["paths_not_regional"] == 0  # counted only with a region map
    assert record.log.regions == {}


def test_regional_paths_need_a_world_with_regions() -> None:
    scenario = replace(SMALL, nodes=8, tx_count=1, network=NetworkConfig.ideal())
    with pytest.raises(ConfigError, match="regions latency model"):
        OnionKit(standin_crypto=True, regional_paths=True).run(draw_world(scenario, 1), scenario)


def test_the_preloaded_directory_is_a_long_running_nodes_not_a_floods_aftermath() -> None:
    """Every node holds every other relay in its book and directory, sharing one decoded record
    per relay, while its gossip caches hold only its own announcements: no n² cache entries."""
    scenario = replace(SMALL, nodes=20, tx_count=1)
    kit = OnionKit(standin_crypto=True, fast_path=False, cover_rate_per_s=0.0)
    with standin_crypto(True):
        run = _OnionRun(draw_world(scenario, 2), scenario, kit, None)
        run._preload_directories()
    infos = [{relay.node_id: relay for relay in node.private.directory} for node in run.nodes]
    assert all(len(known) == 19 for known in infos)
    some = run.nodes[0].identity.node_id
    assert len({id(known[some]) for known in infos[1:]}) == 1
    for node in run.nodes:
        status = node.gossip.status()
        assert status["seen"] <= 3 and status["mcache_messages"] <= 3  # its own records
