"""Whole circuits over an in-memory network of CircuitHosts (fake clock, seeded randomness)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from murmur.base.ids import NodeId
from murmur.crypto.kem import MLKEM_PUBLIC_BYTES
from murmur.overlay.circuits import (
    CircuitBuilt,
    CircuitClient,
    CircuitFailed,
    ClientConfig,
    ConnectTo,
    NoCircuitAvailable,
    OnionPublicKeys,
    RelayDirectory,
    ReplyReceived,
    RequestFailed,
    SendCell,
    SendFailed,
)
from murmur.overlay.circuits.guards import GuardConfig
from murmur.overlay.circuits.regions import RegionMap
from murmur.overlay.peers.netgroup import network_prefix
from murmur.sim.rng import SeededRng
from murmur.wire.cells import (
    CELL_BYTES,
    CREATE_CELLS,
    EXTEND_CELLS,
    CellCommand,
    decode_cell,
    encode_cell,
)

from .harness import Network, Node


def _built(node: Node) -> list[CircuitBuilt]:
    return [e for e in node.events if isinstance(e, CircuitBuilt)]


def _failed(node: Node) -> list[CircuitFailed]:
    return [e for e in node.events if isinstance(e, CircuitFailed)]


def _publications(net: Network) -> list[tuple[Node, str, bytes]]:
    return [(n, t, p) for n in net.nodes.values() for t, p in n.published]


@pytest.fixture
def net() -> Network:
    network = Network(8, seed=11)
    network.run_until(1.0)
    return network


def test_every_node_keeps_a_pool_of_three_diverse_circuits(net: Network) -> None:
    for node in net.nodes.values():
        assert node.host.client.ready_circuits() == 3
        for built in _built(node):
            hops = [net.nodes[h].info for h in built.hops]
            prefixes = {network_prefix(h.address.host) for h in hops}
            assert len(hops) == 3 and len(prefixes) == 3
            assert node.node_id not in built.hops
            assert network_prefix(node.info.address.host) not in prefixes
        assert sorted(node.host.client.circuit_paths()) == sorted(b.hops for b in _built(node))


def test_a_build_sends_four_cells_per_handshake_and_one_per_answer(net: Network) -> None:
    """Each of a three-hop circuit's CREATEs is CREATE_CELLS cells, and one CREATED answers;
    the two EXTENDs are EXTEND_CELLS relay cells per link they cross (1 + 2), each answered by
    one EXTENDED per link back (1 + 2)."""
    circuits = sum(len(_built(n)) for n in net.nodes.values())
    assert circuits == 24 and not any(_failed(n) for n in net.nodes.values())
    commands = [decode_cell(cell).command for _, _, cell in net.wire]
    assert commands.count(CellCommand.CREATE) == circuits * 3 * CREATE_CELLS
    assert commands.count(CellCommand.CREATED) == circuits * 3
    assert commands.count(CellCommand.RELAY) == circuits * 3 * (EXTEND_CELLS + 1)


def test_multi_cell_payload_reaches_one_exit_exactly_once(net: Network) -> None:
    origin = net.node(0)
    payload = bytes(range(256)) * 40  # 10,240 bytes: six cells
    origin.host.send("transaction", payload, net.now)
    net.run_until(2.0)
    ((exit_node, topic, got),) = _publications(net)
    assert (topic, got) == ("transaction", payload)
    assert exit_node is not origin
    assert any(b.hops[-1] == exit_node.node_id for b in _built(origin))


def test_every_cell_on_every_link_has_the_same_size(net: Network) -> None:
    origin = net.node(1)
    origin.host.send("transaction", b"t" * 50, net.now)
    origin.host.send("transaction", b"T" * 100_000, net.now)
    origin.host.send_cover(net.now)
    net.run_until(1000.0)  # builds, sends, cover, rotations with DESTROY
    commands = {decode_cell(cell).command for _, _, cell in net.wire}
    assert commands == set(CellCommand)
    assert {len(cell) for _, _, cell in net.wire} == {CELL_BYTES}


def test_request_reply_returns_to_the_origin_and_no_relay_sees_plaintext() -> None:
    net = Network(8, seed=5, answer=lambda topic, payload: b"REPLY-MARKER:" + payload[::-1] * 3)
    net.run_until(1.0)
    origin = net.node(2)
    question = b"QUESTION-MARKER:" + bytes(range(200)) * 20
    request_id = origin.host.send_request("sync_request", question, net.now)
    net.run_until(2.0)
    replies = [e for e in origin.events if isinstance(e, ReplyReceived)]
    assert replies == [ReplyReceived(request_id, b"REPLY-MARKER:" + question[::-1] * 3)]
    askers = [n for n in net.nodes.values() if n.requests_seen]
    assert len(askers) == 1 and askers[0] is not origin
    for _, _, cell in net.wire:
        assert b"QUESTION-MARKER" not in cell and b"REPLY-MARKER" not in cell


def test_cover_cells_are_dropped_silently_at_the_exit(net: Network) -> None:
    origin = net.node(3)
    assert origin.host.send_cover(net.now)
    net.run_until(2.0)
    assert _publications(net) == []
    dropped = [n for n in net.nodes.values() if n.host.relay.counters.get("exit_cover_dropped")]
    assert len(dropped) == 1


def test_invalid_payloads_are_dropped_and_counted_at_the_exit() -> None:
    net = Network(8, seed=6, validate=lambda topic, payload: not payload.startswith(b"bad"))
    net.run_until(1.0)
    origin = net.node(0)
    origin.host.send("transaction", b"bad transaction", net.now)
    origin.host.send("transaction", b"good transaction", net.now)
    net.run_until(2.0)
    assert [p for _, _, p in _publications(net)] == [b"good transaction"]
    invalid = sum(n.host.relay.counters.get("exit_invalid_dropped") for n in net.nodes.values())
    assert invalid == 1


def test_a_vanishing_hop_tears_circuits_down_and_the_pool_rebuilds(net: Network) -> None:
    origin = net.node(0)
    victim = _built(origin)[0].hops[1]
    through_victim = sum(victim in b.hops for b in _built(origin))
    net.kill(victim)
    broken = [f for f in _failed(origin) if f.was_ready]
    assert len(broken) == through_victim and all(
        f.reason.startswith(("destroyed", "hop")) for f in broken
    )
    for node in net.nodes.values():
        for circuit_leg in node.host.relay._legs:
            assert circuit_leg[0] != victim
    net.run_until(net.now + 30.0)
    assert origin.host.client.ready_circuits() == 3
    for built in _built(origin)[-through_victim:]:
        assert victim not in built.hops
    origin.host.send("transaction", b"after the failure", net.now)
    net.run_until(net.now + 1.0)
    assert [p for _, _, p in _publications(net)] == [b"after the failure"]


def test_circuits_rotate_after_their_lifetime(net: Network) -> None:
    origin = net.node(4)
    first = {b.circuit for b in _built(origin)}
    net.run_until(600.0)
    assert origin.host.client.counters.get("circuits_rotated") == 0
    net.run_until(781.5)
    assert origin.host.client.counters.get("circuits_rotated") == 3
    assert origin.host.client.ready_circuits() == 3
    assert first.isdisjoint(b.circuit for b in _built(origin)[-3:])


def test_unknown_circuit_cells_are_dropped_by_the_host(net: Network) -> None:
    a, b = net.node(0), net.node(1)
    b.host.receive_cell(a.node_id, encode_cell(424242, CellCommand.RELAY, b"x"), net.now)
    b.host.receive_cell(a.node_id, b"too short", net.now)
    assert b.host.drain_actions() == []
    metrics = b.host.metrics()
    assert metrics["relay.drop_unknown_circuit"] == 1
    assert metrics["relay.drop_bad_cell_size"] == 1


def test_no_circuit_available_when_too_few_prefixes() -> None:
    net = Network(3, seed=2)
    net.run_until(1.0)
    origin = net.node(0)
    assert origin.host.client.ready_circuits() == 0
    with pytest.raises(NoCircuitAvailable):
        origin.host.send("transaction", b"tx", net.now)


def test_send_waits_a_bounded_time_then_fails_clearly() -> None:
    config = ClientConfig(send_wait_s=5.0)
    net = Network(6, seed=3, client_config=config)
    net.refuse_links.update(net.nodes)
    net.run_until(1.0)
    origin = net.node(0)
    send_id = origin.host.send("transaction", b"tx", net.now)
    net.run_until(net.now + 4.9)
    assert not any(isinstance(e, SendFailed) for e in origin.events)
    net.run_until(net.now + 0.2)
    assert SendFailed(send_id, "no_circuit") in origin.events
    assert origin.host.client.counters.get("circuit_failed_connect_failed") >= 1


def test_sends_and_requests_waiting_for_a_circuit_fail_at_once_when_the_node_stops() -> None:
    """Left waiting, each would fail only at its deadline, which a stopped node's timer never
    brings: its caller waited out its own timeout."""
    net = Network(6, seed=3)
    net.refuse_links.update(net.nodes)
    net.run_until(1.0)
    origin = net.node(0)
    send_id = origin.host.send("transaction", b"tx", net.now)
    request_id = origin.host.send_request("sync_request", b"anyone?", net.now)
    origin.host.client.fail_pending("node_stopped")
    net.pump()
    stopped = [SendFailed(send_id, "node_stopped"), RequestFailed(request_id, "node_stopped")]
    assert [e for e in origin.events if isinstance(e, SendFailed | RequestFailed)] == stopped
    net.run_until(net.now + 60.0)  # past both deadlines: neither fails again
    assert [e for e in origin.events if isinstance(e, SendFailed | RequestFailed)] == stopped


def test_a_request_on_a_circuit_fails_at_once_when_the_node_stops(net: Network) -> None:
    origin = net.node(0)
    request_id = origin.host.send_request("sync_request", b"anyone?", net.now)
    net.pump()
    origin.host.client.fail_pending("node_stopped")
    net.run_until(net.now + 60.0)
    assert [e for e in origin.events if isinstance(e, RequestFailed)] == [
        RequestFailed(request_id, "node_stopped")
    ]


def test_unreachable_later_hop_truncates_and_the_pool_routes_around_it() -> None:
    net = Network(8, seed=4)
    net.refuse_links.add(net.node(5).node_id)
    net.run_until(60.0)
    origin = net.node(0)
    assert origin.host.client.ready_circuits() == 3
    reasons = {f.reason for n in net.nodes.values() for f in _failed(n)}
    assert "truncated_connect_failed" in reasons


def test_a_silent_hop_makes_the_build_time_out() -> None:
    config = ClientConfig(build_timeout_s=10.0)
    net = Network(5, seed=8, client_config=config)
    for node in list(net.nodes)[1:]:
        net.black_holes.add(node)
    net.run_until(11.0)
    origin = net.node(0)
    assert {f.reason for f in _failed(origin)} == {"build_timeout"}
    assert origin.host.client.ready_circuits() == 0


def test_unanswered_request_fails_after_its_timeout(net: Network) -> None:
    origin = net.node(0)
    request_id = origin.host.send_request("sync_request", b"anyone?", net.now)
    net.run_until(net.now + 29.0)
    assert not any(isinstance(e, RequestFailed) for e in origin.events)
    net.run_until(net.now + 2.0)
    assert RequestFailed(request_id, "timeout") in origin.events
    unanswered = sum(
        n.host.relay.counters.get("exit_requests_unanswered") for n in net.nodes.values()
    )
    assert unanswered == 1


def test_a_race_keeps_the_first_candidate_built_and_tears_down_its_rivals() -> None:
    """Silent relays stall every candidate through them; racing six candidates per slot fills
    the pool at once from the ones that answer, and the stalled rivals are destroyed."""
    config = ClientConfig(build_race=6, build_timeout_s=10.0)
    net = Network(14, seed=5, client_config=config)
    silent = set(list(net.nodes)[9:])
    net.black_holes.update(silent)
    net.run_until(1.0)
    origin = net.node(0)
    client = origin.host.client
    assert client.ready_circuits() == 3
    assert client.counters.get("races_started") == 3
    assert client.counters.get("race_losers") == 3 * 5
    assert client.counters.get("circuits_failed") == 0
    for built in _built(origin):
        assert not silent & set(built.hops)
    destroys = [
        decode_cell(cell)
        for src, _, cell in net.wire
        if src == origin.node_id and decode_cell(cell).command is CellCommand.DESTROY
    ]
    assert destroys  # rivals that had reached a relay were torn down there
    net.run_until(12.0)  # the rivals' build deadlines pass without a failure: they are gone
    assert client.counters.get("circuits_failed") == 0 and client.ready_circuits() == 3


def test_without_a_race_a_silent_hop_holds_its_slot_until_the_timeout() -> None:
    config = ClientConfig(build_race=1, build_timeout_s=10.0)
    net = Network(14, seed=5, client_config=config)
    net.black_holes.update(list(net.nodes)[9:])
    net.run_until(1.0)
    client = net.node(0).host.client
    assert client.ready_circuits() < 3  # some first draws went through a silent relay
    assert client.counters.get("race_losers") == 0


def test_near_first_hops_wait_for_a_measured_link_then_use_the_nearest() -> None:
    config = ClientConfig(near_first_hops=2)
    net = Network(12, seed=3, client_config=config)
    net.run_until(1.0)
    origin = net.node(0)
    client = origin.host.client
    assert client.ready_circuits() == 0  # no outbound link measured yet: the pool waits
    others = [n.node_id for n in list(net.nodes.values())[1:]]
    for rtt, peer in zip((0.30, 0.02, 0.25, 0.05, 0.20), others, strict=False):
        client.link_latency(peer, rtt)
    client.link_latency(others[0], None)  # no longer a link we chose
    net.run_until(2.0)
    assert client.ready_circuits() == 3
    assert {built.hops[0] for built in _built(origin)} <= {others[1], others[3]}


def test_with_near_first_hops_and_a_race_each_pool_slot_takes_its_own_first_hop() -> None:
    """A race over the whole near set would put every slot on the nearest link (its round trip
    counts most in the build time); one near hop 1 per slot keeps the pool on three."""
    config = ClientConfig(near_first_hops=3, build_race=4, max_parallel_candidates=12)
    net = Network(14, seed=3, client_config=config)
    net.run_until(1.0)
    origin = net.node(0)
    client = origin.host.client
    others = [n.node_id for n in list(net.nodes.values())[1:]]
    for rtt, peer in zip((0.01, 0.02, 0.03, 0.20, 0.25), others, strict=False):
        client.link_latency(peer, rtt)
    net.run_until(3.0)
    assert client.ready_circuits() == 3
    assert sorted(built.hops[0] for built in _built(origin)) == sorted(others[:3])


REGIONAL_NODES = 12
EU = frozenset(range(7))
"""Harness node i is at 10.{i + 1}.0.1: nodes 0-6 in eu, 7-11 in na."""
REGIONS = RegionMap.from_entries(
    [(f"10.{i + 1}.0.0/16", "eu" if i in EU else "na") for i in range(REGIONAL_NODES)]
)


def _regional_run(
    min_regional_relays: int, guards: GuardConfig | None = None
) -> tuple[Network, list[str]]:
    """A 12-node network with regional paths, run through several rotations; each node's
    region too."""
    client_config = ClientConfig(
        regions=REGIONS,
        min_regional_relays=min_regional_relays,
        lifetime_s=60.0,
        lifetime_jitter_s=10.0,
        guards=guards or GuardConfig(),
    )
    net = Network(REGIONAL_NODES, seed=11, client_config=client_config)
    net.run_until(300.0)
    return net, ["eu" if i in EU else "na" for i in range(REGIONAL_NODES)]


def _hop_regions(net: Network, node: Node) -> set[str | None]:
    hosts = {n.node_id: n.info.address.host for n in net.nodes.values()}
    return {REGIONS.region_of(hosts[hop]) for built in _built(node) for hop in built.hops}


def test_regional_paths_keep_all_three_hops_in_our_region_when_it_is_populated() -> None:
    # eu nodes see 6 other eu relays, na nodes 4: both at least the 4 asked for
    net, regions = _regional_run(4)
    for i, node in enumerate(net.nodes.values()):
        counters = node.host.client.counters
        started = counters.get("circuits_started")
        assert len(_built(node)) >= 12
        assert _hop_regions(net, node) == {regions[i]}
        assert counters.get("paths_regional") == started > 0
        assert counters.get("paths_not_regional") == 0


def test_regional_paths_fall_back_to_every_relay_when_our_region_is_thin() -> None:
    # 5 asked for: eu (6 others) keeps to itself, na (4 others) draws from every relay
    net, regions = _regional_run(5)
    for i, node in enumerate(net.nodes.values()):
        counters = node.host.client.counters
        started = counters.get("circuits_started")
        if regions[i] == "eu":
            assert _hop_regions(net, node) == {"eu"}
            assert (counters.get("paths_regional"), counters.get("paths_not_regional")) == (
                started,
                0,
            )
        else:
            assert _hop_regions(net, node) == {"eu", "na"}
            assert (counters.get("paths_regional"), counters.get("paths_not_regional")) == (
                0,
                started,
            )


def test_regional_paths_take_the_entry_guard_from_our_region() -> None:
    net, regions = _regional_run(4, guards=GuardConfig(count=1, settle_s=0.0))
    for i, node in enumerate(net.nodes.values()):
        (guard,) = node.host.client.guards.records()
        assert REGIONS.region_of(net.nodes[guard.node_id].info.address.host) == regions[i]
        assert {built.hops[0] for built in _built(node)} == {guard.node_id}
        assert _hop_regions(net, node) == {regions[i]}


def test_without_an_address_or_a_regional_relay_count_paths_are_not_regional() -> None:
    config = ClientConfig(regions=REGIONS, min_regional_relays=1)
    net = Network(REGIONAL_NODES, seed=11, client_config=config)
    client = net.node(0).host.client
    client.own_host = None  # we advertise no address yet: our region is unknown
    net.run_until(1.0)
    assert client.ready_circuits() == 3
    assert client.counters.get("paths_regional") == 0
    assert client.counters.get("paths_not_regional") == client.counters.get("circuits_started")
    with pytest.raises(ValueError, match="min_regional_relays"):
        ClientConfig(regions=REGIONS, min_regional_relays=0)


def test_with_near_first_hops_a_send_before_any_measured_link_still_goes_out() -> None:
    net = Network(8, seed=3, client_config=ClientConfig(near_first_hops=3))
    net.run_until(1.0)
    origin = net.node(0)
    origin.host.client.send("transaction", b"early", net.now)
    net.run_until(3.0)
    assert [p for _, _, p in _publications(net)] == [b"early"]


def test_races_never_have_more_candidates_in_flight_than_the_cap() -> None:
    config = ClientConfig(build_race=4, max_parallel_candidates=8, build_timeout_s=10.0)
    net = Network(14, seed=5, client_config=config)
    net.black_holes.update(list(net.nodes)[1:])  # every build stalls
    net.run_until(1.0)
    client = net.node(0).host.client
    assert client.counters.get("races_started") == 2
    assert client.counters.get("circuits_started") == 8


def test_a_race_decided_before_the_exit_extends_only_its_winner_to_an_exit() -> None:
    """Candidates race to their second hop; only the winner extends to its (random) exit, so
    no exit is drawn for the race, and losers cost no exit handshake."""

    def creates(race_through_exit: bool) -> tuple[int, int]:
        config = ClientConfig(build_race=4, race_through_exit=race_through_exit)
        net = Network(14, seed=5, client_config=config)
        net.run_until(1.0)
        client = net.node(0).host.client
        assert client.ready_circuits() == 3 and client.counters.get("circuits_failed") == 0
        total = sum(1 for _, _, c in net.wire if decode_cell(c).command is CellCommand.CREATE)
        return total, client.counters.get("race_losers")

    early, early_losers = creates(False)
    full, full_losers = creates(True)
    assert early_losers == full_losers == 3 * 3
    assert early < full


def test_a_race_decided_before_the_exit_shares_its_slots_first_hop() -> None:
    """Without near first hops such a race draws hop 1 once per slot and races hop 2 from it:
    the node dials one first hop per slot, as without a race, not one per candidate."""
    directory = Network(30, seed=5).node(0).host.client.directory

    def dials(race_through_exit: bool) -> tuple[int, int, int]:
        config = ClientConfig(build_race=4, race_through_exit=race_through_exit)
        client = CircuitClient(
            node_id=NodeId(bytes(32)), directory=directory, rng=SeededRng(2), now=0.0, config=config
        )
        client.handle_timer(0.0)
        dialled = [a.peer for a in client.drain_actions() if isinstance(a, ConnectTo)]
        counters = client.counters
        assert len(dialled) == len(set(dialled))
        return len(dialled), counters.get("races_started"), counters.get("circuits_started")

    shared, races, candidates = dials(False)
    assert (shared, candidates) == (races, 4 * races) and races >= 2
    independent, races, candidates = dials(True)
    assert 2 * races < independent <= candidates == 4 * races


def test_a_first_hop_with_an_unusable_onion_key_does_not_wedge_the_pool() -> None:
    """A relay can announce an ML-KEM key of the right size that does not parse. A hop 1 we
    already have a link to then fails at once, before any cell is sent: that slot's race is
    lost and the pool backs off and builds again, rather than counting a build that no longer
    exists as in flight for ever (which left the node without circuits for good)."""
    good = list(Network(6, seed=5).directory)
    directory = RelayDirectory()
    client = CircuitClient(
        node_id=NodeId(bytes(32)), directory=directory, rng=SeededRng(2), now=0.0
    )
    for info in good:  # linked to every relay before it knows any of them
        client.link_ready(info.node_id, 0.0)
    for info in good:
        keys = OnionPublicKeys(info.onion_keys.x25519, b"\xff" * MLKEM_PUBLIC_BYTES)
        directory.upsert(replace(info, onion_keys=keys))
    client.handle_timer(10.0)
    assert client.counters.get("circuit_failed_bad_onion_key") >= 1
    assert not [a for a in client.drain_actions() if isinstance(a, SendCell)]
    for info in good:  # the relays announce usable keys again
        directory.upsert(info)
    now = 10.0
    while (deadline := client.next_deadline()) is not None and deadline <= 30.0:
        now = max(now, deadline)
        client.handle_timer(now)
    creates = [
        a
        for a in client.drain_actions()
        if isinstance(a, SendCell) and decode_cell(a.cell).command is CellCommand.CREATE
    ]
    assert len(creates) == 3 * CREATE_CELLS  # the pool's three slots, built anew
