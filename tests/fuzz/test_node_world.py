"""The node harness's two-hop circuits really reach the honest node through the victim.

The ``two_hops`` seed is a program of ``fuzz_node`` operations that builds a hand circuit to the
victim, extends it to the honest node, publishes a transaction at the honest node as exit and
asks it for that transaction back. If an operation became a no-op (an extension that never
completes, cells the honest node does not recognize, answers lost on the way back), the fuzzer
would stop reaching the victim as a middle relay, and this test says so.
"""

from __future__ import annotations

from fuzz import fuzz_node
from fuzz.node_world import World
from fuzz.seeds import TWO_HOP_TX, two_hops
from fuzz.source import ByteSource, run_program
from murmur.overlay.routing import MessageType
from murmur.sim.crypto_standin import standin_crypto
from murmur.wire.cells import RelayCommand
from murmur.wire.gossip import message_id


def test_a_circuit_extended_past_the_victim_reaches_the_honest_exit_and_back() -> None:
    with standin_crypto():
        world = World()
        run_program(ByteSource(two_hops().encode()), world, fuzz_node.OPERATIONS, fuzz_node.STEPS)
    (circuit,) = world.circuits
    assert circuit.hops == 2
    assert circuit.heard[0, RelayCommand.EXTENDED] == 1
    honest = world.honest.circuits.relay.counters
    assert honest.get("exit_publications") == 1
    assert honest.get("exit_replies") == 1
    tx_id = message_id(MessageType.TRANSACTION.value, TWO_HOP_TX)
    assert tx_id in world.honest.deliveries
    assert tx_id in world.victim.deliveries  # gossip brought it back to the victim
    assert world.victim.circuits.relay.counters.get("cells_relayed") >= 3  # both ways
    assert circuit.heard[1, RelayCommand.REPLY] >= 1
