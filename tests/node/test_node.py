"""The node core driven directly: several nodes wired in memory, fake clock, seeded RNG."""

from __future__ import annotations

from typing import Any

import pytest

from fuzz.node_world import World
from murmur.base.errors import ConfigError
from murmur.base.ids import NodeId
from murmur.crypto.identity import Identity
from murmur.node.actions import (
    CloseConnection,
    ConnId,
    Dial,
    MessageDelivered,
    PrivateReplyArrived,
    SendBytes,
)
from murmur.node.config import (
    DEFAULT_TOPICS,
    MAX_CIRCUIT_LINKS,
    BootstrapPeer,
    HostPort,
    NodeConfig,
)
from murmur.node.node import (
    CATCH_UP_PER_HOST_PER_S,
    OWN_HOP_ONE_RESERVE,
    Node,
)
from murmur.overlay.circuits.events import ConnectTo
from murmur.overlay.gossip import GossipConfig
from murmur.overlay.routing import PrivatePathUnavailable
from murmur.overlay.stem import StemConfig
from murmur.sim.crypto_standin import standin_crypto
from murmur.sim.node_host import WALL_CLOCK_AT_ZERO_S
from murmur.sim.rng import SeededRng
from murmur.wire.cells import RelayAddress, RelayCommand
from murmur.wire.envelope import Channel, wrap
from murmur.wire.gossip import (
    MAX_MESSAGE_DATA_BYTES,
    MAX_RPC_BYTES,
    RPC_HEADER_BYTES,
    Message,
    Rpc,
    encode_rpc,
)


class Net:
    """Moves SendBytes between nodes; each connection is a pair of ConnIds."""

    def __init__(
        self, n: int, *, peers_of=None, stem_config: StemConfig | None = None, **node_args: Any
    ) -> None:
        self.now = 0.0
        self.ids = [Identity.from_seed(bytes([i + 1]) * 32) for i in range(n)]
        self.addr = {i: HostPort(f"127.{i + 1}.0.1", 10_000 + i) for i in range(n)}
        self.nodes: list[Node] = []
        for i, identity in enumerate(self.ids):
            targets = (peers_of or (lambda i: [j for j in range(i)]))(i)
            cfg = NodeConfig(
                listen=self.addr[i],
                bootstrap=tuple(BootstrapPeer(self.addr[j], self.ids[j].node_id) for j in targets),
            )
            self.nodes.append(
                Node(
                    identity=identity,
                    config=cfg,
                    rng=SeededRng(i),
                    now=0.0,
                    wall_clock_offset_s=WALL_CLOCK_AT_ZERO_S,
                    stem_config=stem_config,
                    **node_args,
                )
            )
        self.pipe: dict[tuple[int, ConnId], tuple[int, ConnId]] = {}
        self.next_conn = 100
        self.delivered: dict[int, list[MessageDelivered]] = {i: [] for i in range(n)}
        self.closed: list[tuple[int, CloseConnection]] = []
        self.replies: dict[int, list[PrivateReplyArrived]] = {i: [] for i in range(n)}

    def conn(self) -> ConnId:
        self.next_conn += 1
        return ConnId(self.next_conn)

    def connect_raw(self, i: int) -> ConnId:
        """An inbound connection to node i from a test-controlled peer."""
        c = self.conn()
        self.nodes[i].connection_opened(c, outbound=False, host="127.0.0.9", port=1, now=self.now)
        return c

    def run(self, steps: int = 50) -> None:
        for _ in range(steps):
            moved = False
            for i, node in enumerate(self.nodes):
                for action in node.drain_actions():
                    moved = True
                    self.apply(i, action)
            if not moved:
                return

    def apply(self, i: int, action) -> None:
        if isinstance(action, Dial):
            j = next(k for k, a in self.addr.items() if a == action.target.address)
            ci, cj = self.conn(), self.conn()
            self.pipe[(i, ci)] = (j, cj)
            self.pipe[(j, cj)] = (i, ci)
            self.nodes[j].connection_opened(
                cj, outbound=False, host=self.addr[i].host, port=5, now=self.now
            )
            self.nodes[i].connection_opened(
                ci,
                outbound=True,
                host=action.target.address.host,
                port=action.target.address.port,
                now=self.now,
                target=action.target,
            )
        elif isinstance(action, SendBytes):
            dest = self.pipe.get((i, action.conn_id))
            if dest is not None:
                self.nodes[dest[0]].data_received(dest[1], action.data, self.now)
        elif isinstance(action, CloseConnection):
            self.closed.append((i, action))
            dest = self.pipe.pop((i, action.conn_id), None)
            if dest is not None:
                self.pipe.pop(dest, None)
                self.nodes[dest[0]].connection_lost(dest[1], self.now)
        elif isinstance(action, MessageDelivered):
            self.delivered[i].append(action)
        elif isinstance(action, PrivateReplyArrived):
            self.replies[i].append(action)

    def tick(self, until: float, step: float = 0.25) -> None:
        while self.now < until:
            self.now += step
            for node in self.nodes:
                deadline = node.next_deadline()
                if deadline is not None and deadline <= self.now:
                    node.handle_timer(self.now)
            self.run()


def test_nodes_connect_form_mesh_and_deliver_once() -> None:
    net = Net(8)
    net.tick(5.0)
    for node in net.nodes:
        assert len(node.status(net.now)["peers"]) >= 1
    ids = []
    for k in range(20):
        ids.append(net.nodes[k % 8].publish("block_header", f"msg {k}".encode(), net.now))
        net.run()
    net.tick(net.now + 3.0)
    for i in range(8):
        got = [d.message_id for d in net.delivered[i] if d.topic == "block_header"]
        assert sorted(got) == sorted(ids), f"node {i}"
    for node in net.nodes:
        for peer in node.status(net.now)["peers"]:
            assert peer["messages_in"] > 0 and peer["bytes_in"] > peer["messages_in"]


@pytest.mark.parametrize(
    "gossip_config",
    [GossipConfig(max_peers=100), GossipConfig(max_topics=len(DEFAULT_TOPICS) + 1)],
)
def test_a_gossip_router_too_small_for_the_config_is_refused_at_start(
    gossip_config: GossipConfig,
) -> None:
    """Too few peer slots (32 inbound + 8 outbound + 64 circuit links need 104) would make an
    authenticating peer raise out of the node; too few topic slots, the node's own start."""
    with pytest.raises(ConfigError, match="gossip router cannot hold"):
        Node(
            identity=Identity.from_seed(b"\x01" * 32),
            config=NodeConfig(),
            rng=SeededRng(1),
            now=0.0,
            wall_clock_offset_s=WALL_CLOCK_AT_ZERO_S,
            gossip_config=gossip_config,
        )


def test_private_topic_is_refused_not_sent() -> None:
    net = Net(2)
    net.tick(2.0)
    with pytest.raises(PrivatePathUnavailable):
        net.nodes[0].publish("transaction", b"tx", net.now)
    net.run()
    assert net.delivered[1] == []


def test_wrong_node_id_is_rejected_and_redialled_with_backoff() -> None:
    net = Net(2)
    impostor = NodeId(b"\x00" * 32)
    node = net.nodes[1]
    target = BootstrapPeer(net.addr[0], impostor)
    node._dial_targets[0].peer = target  # dial node 0 expecting someone else
    net.tick(1.0)
    counters = node.status(net.now)["counters"]
    assert counters.get("links_closed.unexpected_peer", 0) >= 1
    assert node.status(net.now)["peers"] == []


def test_self_connection_is_refused() -> None:
    net = Net(1)
    c1, c2 = net.conn(), net.conn()
    net.pipe[(0, c1)] = (0, c2)
    net.pipe[(0, c2)] = (0, c1)
    node = net.nodes[0]
    node.connection_opened(c2, outbound=False, host="127.0.0.1", port=1, now=0.0)
    node.connection_opened(c1, outbound=True, host="127.0.0.1", port=2, now=0.0)
    net.run()
    assert node.counters.get("refused.self_connection") >= 1


def test_unknown_channel_after_auth_bans_by_node_id_not_address() -> None:
    net = Net(3)
    net.tick(3.0)
    victim, offender = net.nodes[0], net.nodes[1]
    session = victim._by_peer[offender.node_id]
    # The offender (authenticated) sends a message on a channel that does not exist.
    offender_session = offender._by_peer[victim.node_id]
    offender_session.link.send_message(b"\xee garbage", net.now)
    data = offender_session.link.data_to_send()
    victim.data_received(session.conn_id, data, net.now)
    net.run()
    assert victim.counters.get("misbehaviour.bad_channel") == 1
    assert victim._bans.is_banned(offender.node_id, net.now)
    # Node 2 (same 127.0.0.1 address in this net) keeps its link to the victim.
    assert net.nodes[2].node_id in victim._by_peer
    # The offender's reconnect is refused after the handshake.
    net.tick(net.now + 120.0, step=1.0)
    assert offender.node_id not in victim._by_peer
    assert victim.counters.get("refused.banned") >= 1


def test_messages_filling_one_rpc_to_the_gossip_cap_are_relayed_without_raising() -> None:
    """Two block bodies whose records fill an RPC exactly to the gossip cap arrive in one read:
    the relay batches them for its next peer, and that RPC plus the channel byte must still fit
    one link frame (it was one byte over, and ``send_message`` raised out of ``data_received``)."""
    net = Net(3)
    net.tick(3.0)
    relay, sender, receiver = net.nodes[1], net.nodes[2], net.nodes[0]
    topic = "block_body"
    assert receiver.node_id in relay.gossip.mesh_peers(topic)
    record = 1 + len(topic) + 4  # topic length, topic, data length
    first = bytes([1]) * MAX_MESSAGE_DATA_BYTES
    second = bytes([2]) * (MAX_RPC_BYTES - RPC_HEADER_BYTES - 2 * record - len(first))
    link = sender._by_peer[relay.node_id].link
    for data in (first, second):
        rpc = encode_rpc(Rpc(messages=(Message(topic, data),)))
        link.send_message(wrap(Channel.GOSSIP, rpc), net.now)
    relay.data_received(relay._by_peer[sender.node_id].conn_id, link.data_to_send(), net.now)
    net.run()
    got = {d.data for d in net.delivered[0] if d.topic == topic}
    assert got == {first, second}


def test_unauthenticated_garbage_backs_off_the_address_only() -> None:
    net = Net(1)
    node = net.nodes[0]
    c = net.connect_raw(0)
    node.data_received(c, b"\xff" * 64, 0.0)
    actions = node.drain_actions()
    assert any(isinstance(a, CloseConnection) and a.reason == "bad_length" for a in actions)
    assert node.counters.get("address_backoffs") == 1
    c2 = net.connect_raw(0)
    assert any(
        isinstance(a, CloseConnection) and a.conn_id == c2 and a.reason == "throttled"
        for a in node.drain_actions()
    )
    node.connection_opened(ConnId(999), outbound=False, host="127.0.0.10", port=1, now=0.0)
    assert not any(isinstance(a, CloseConnection) for a in node.drain_actions())


def test_a_full_node_gives_an_over_represented_network_group_s_slot_to_a_newcomer() -> None:
    """One /16 holding every inbound slot cannot lock out peers from elsewhere (an eclipse),
    and a newcomer from that same /16 is refused, not let in by evicting its neighbours."""
    net = Net(2)
    node, newcomer = net.nodes
    crowd = []
    for k in range(node.config.limits.max_inbound):
        c = net.conn()
        node.connection_opened(c, outbound=False, host=f"203.0.{k}.1", port=1, now=0.0)
        crowd.append(c)
    assert not any(isinstance(a, CloseConnection) for a in node.drain_actions())
    net.tick(2.0)  # node 1 dials node 0 from 127.0.0.1
    assert newcomer.node_id in node._by_peer
    evicted = [a for i, a in net.closed if i == 0 and a.reason == "evicted_netgroup"]
    assert [a.conn_id for a in evicted] == [crowd[-1]]
    assert node.counters.get("inbound_evicted.netgroup") == 1

    same_group = net.conn()
    node.connection_opened(same_group, outbound=False, host="203.0.200.1", port=1, now=net.now)
    assert [(a.conn_id, a.reason) for a in node.drain_actions()] == [
        (same_group, "inbound_full")
    ]
    elsewhere = net.conn()
    node.connection_opened(elsewhere, outbound=False, host="198.51.100.1", port=1, now=net.now)
    assert [a.reason for a in node.drain_actions() if isinstance(a, CloseConnection)] == [
        "evicted_netgroup"
    ]
    assert elsewhere in node._sessions and newcomer.node_id in node._by_peer
    inbound = [s for s in node._sessions.values() if not s.outbound]
    assert len(inbound) == node.config.limits.max_inbound


def test_rate_limit_drops_then_bans_a_flooding_peer() -> None:
    net = Net(2)
    net.tick(2.0)
    victim, flooder = net.nodes[0], net.nodes[1]
    session = flooder._by_peer[victim.node_id]
    for _ in range(4500):
        session.link.send_message(wrap(Channel.GOSSIP, b"\x01"), net.now)
    victim.data_received(
        victim._by_peer[flooder.node_id].conn_id, session.link.data_to_send(), net.now
    )
    assert victim.counters.get("drops.rate_limited") > 0
    assert victim._bans.is_banned(flooder.node_id, net.now)


def test_newcomers_from_many_groups_cannot_evict_the_longest_connected_peers() -> None:
    """Nineteen honest peers share one /16 (all dial from 127.0.0.1) and fill the node with
    thirteen unauthenticated strangers; newcomers from forty other /16s then churn the young
    slots, but the eight peers connected longest keep theirs."""
    net = Net(20, peers_of=lambda i: [0] if i else [])
    node = net.nodes[0]
    for i in range(1, 20):  # one after another, so their ages differ
        net.nodes[i].handle_timer(net.now)
        net.run()
        net.now += 0.25
    peers = [s for s in node._sessions.values() if s.peer_id is not None]
    assert len(peers) == 19
    oldest = {s.conn_id for s in sorted(peers, key=lambda s: s.opened_at)[:8]}
    for k in range(13):
        node.connection_opened(net.conn(), outbound=False, host=f"203.0.{k}.1", port=1, now=net.now)
    for k in range(40):
        node.connection_opened(
            net.conn(), outbound=False, host=f"{10 + k}.1.0.1", port=1, now=net.now
        )
        node.drain_actions()
    kept = {s.conn_id for s in node._sessions.values() if s.peer_id is not None}
    assert oldest <= kept
    assert node.counters.get("inbound_evicted.netgroup") >= 11


def test_a_peer_bursting_over_its_rate_now_and_then_is_not_banned() -> None:
    """Drops are forgiven over time: two bursts of 150 over-limit messages half an hour apart
    are not a flood (a lifetime count of 200 banned such a peer)."""
    net = Net(2)
    net.tick(2.0)
    victim, sender = net.nodes[0], net.nodes[1]
    session = sender._by_peer[victim.node_id]
    burst = victim.config.limits.messages_burst + 150
    for _ in range(2):
        for _ in range(burst):
            session.link.send_message(wrap(Channel.GOSSIP, encode_rpc(Rpc())), net.now)
        victim.data_received(
            victim._by_peer[sender.node_id].conn_id, session.link.data_to_send(), net.now
        )
        net.now += 1800.0
    assert victim.counters.get("drops.rate_limited") == 300
    assert not victim._bans.is_banned(sender.node_id, net.now)
    assert victim.counters.get("misbehaviour.flood") == 0


def test_duplicate_links_between_a_pair_collapse_to_one() -> None:
    net = Net(2, peers_of=lambda i: [1 - i])
    net.tick(3.0)
    a, b = net.nodes
    assert len(a.status(net.now)["peers"]) == 1
    assert len(b.status(net.now)["peers"]) == 1
    assert a._by_peer[b.node_id].outbound == (a.node_id < b.node_id)


def _retired_pair(net: Net) -> tuple[ConnId, ConnId]:
    """The two ends (node 0's, node 1's) of the link both nodes retired."""
    a, b = net.nodes
    retired_a = next(c for c, s in a._sessions.items() if s.retired)
    j, retired_b = net.pipe[(0, retired_a)]
    assert j == 1 and b._sessions[retired_b].retired
    return retired_a, retired_b


def test_a_retired_duplicate_is_still_read_then_closed_and_not_redialled() -> None:
    """Cells the peer sent on the losing link before it saw the kept one complete still count;
    the loser closes after the drain, and neither side dials again to replace it."""
    from murmur.node.node import DUPLICATE_DRAIN_S
    from murmur.wire.gossip import Message, Rpc, encode_rpc

    net = Net(2, peers_of=lambda i: [1 - i])
    net.tick(1.0)
    a, b = net.nodes
    retired_a, retired_b = _retired_pair(net)
    late = b._sessions[retired_b]
    rpc = Rpc(messages=(Message("block_header", b"sent on the losing link"),))
    late.link.send_message(wrap(Channel.GOSSIP, encode_rpc(rpc)), net.now)
    a.data_received(retired_a, late.link.data_to_send(), net.now)
    net.run()
    assert [d.data for d in net.delivered[0]] == [b"sent on the losing link"]
    dials = a.counters.get("dials") + b.counters.get("dials")
    net.tick(1.0 + DUPLICATE_DRAIN_S + 60.0, step=1.0)
    assert len(a._sessions) == len(b._sessions) == 1
    assert a.node_id in b._by_peer and b.node_id in a._by_peer
    assert a.counters.get("dials") + b.counters.get("dials") == dials
    assert {c.reason for _, c in net.closed} == {"duplicate"}


def test_lost_peer_is_redialled() -> None:
    net = Net(2)
    net.tick(2.0)
    a, b = net.nodes
    session = b._by_peer[a.node_id]
    other = net.pipe.pop((1, session.conn_id))
    net.pipe.pop(other)
    b.connection_lost(session.conn_id, net.now)
    a.connection_lost(other[1], net.now)
    net.tick(net.now + 5.0)
    assert a.node_id in b._by_peer
    assert b.counters.get("dials") >= 2


def test_node_timer_pings_live_links_and_closes_a_silent_one() -> None:
    """Link timers run through the node's: keepalives hold quiet links open for minutes, and
    a link whose peer falls silent is closed at its idle timeout, while its neighbours stay."""
    net = Net(3)
    net.tick(2.0)
    a, b, c = net.nodes
    live = c._by_peer[b.node_id].conn_id
    silent = c._by_peer[a.node_id].conn_id
    mute = next(key for key, dest in net.pipe.items() if dest == (2, silent))
    net.pipe[mute] = (2, ConnId(-1))  # a's bytes to c now go nowhere
    net.tick(net.now + 120.0, step=1.0)
    idle = [
        action.conn_id for i, action in net.closed if i == 2 and action.reason == "idle_timeout"
    ]
    assert idle == [silent]
    assert c._by_peer[b.node_id].conn_id == live
    assert c.status(net.now)["peers"]


def test_handshake_frames_and_replay_in_one_read_ban_the_peer() -> None:
    """M3, a frame and its replay can arrive in one read; nothing may escape the node."""
    from murmur.link.connection import LinkConnection

    net = Net(1)
    node = net.nodes[0]
    client_identity = Identity.from_seed(b"Z" * 32)
    client = LinkConnection(
        initiator=True,
        identity=client_identity,
        rng=SeededRng(9),
        now=0.0,
        expected_peer=node.node_id,
    )
    c = net.connect_raw(0)
    node.data_received(c, client.data_to_send(), 0.0)
    reply = b"".join(a.data for a in node.drain_actions() if isinstance(a, SendBytes))
    client.receive_data(reply, 0.0)
    client.send_message(wrap(Channel.GOSSIP, b"\x00" * 8), 0.0)
    burst = client.data_to_send()
    frame = burst[4 + 7267 :]  # what follows the 7,271-byte message-3 record
    node.data_received(c, burst + frame, 0.0)
    actions = node.drain_actions()
    assert any(isinstance(a, CloseConnection) and a.conn_id == c for a in actions)
    assert node._bans.is_banned(client_identity.node_id, 0.0)


def test_only_links_the_node_dialled_are_candidate_first_hops() -> None:
    net = Net(4)  # node i dials every j < i
    net.tick(3.0)
    middle = net.nodes[2]
    candidates = middle.circuits.client._first_hop_rtt
    assert set(candidates) == {net.ids[0].node_id, net.ids[1].node_id}
    assert all(rtt is not None and rtt >= 0.0 for rtt in candidates.values())
    assert net.nodes[0].circuits.client._first_hop_rtt == {}  # it dialled no one


def test_only_peers_the_node_dialled_count_as_outbound_in_its_gossip_mesh() -> None:
    """The mesh's d_out slots go to peers this node chose: a peer that dials in cannot claim
    one, however many identities it brings."""
    net = Net(3)  # node i dials every j < i
    net.tick(3.0)
    for i, node in enumerate(net.nodes):
        outbound = {
            j for j in range(3) if j != i and node.gossip._peers[net.ids[j].node_id].outbound
        }
        assert outbound == set(range(i)), f"node {i}"


def test_peers_that_dial_each_other_by_address_alone_both_count_as_outbound() -> None:
    """Bootstrap entries without node ids, each node dialling the other. Node 1's first dial
    fails, so node 0's link reaches it first, as an inbound peer it cannot yet tie to its
    bootstrap entry; its own dial later makes a duplicate link to the same peer, which tells
    it node 0 is one it chose: for the stem and for the mesh's d_out alike."""
    net = Net(2, peers_of=lambda i: [])
    for i in range(2):
        config = NodeConfig(listen=net.addr[i], bootstrap=(BootstrapPeer(net.addr[1 - i], None),))
        net.nodes[i] = Node(
            identity=net.ids[i],
            config=config,
            rng=SeededRng(i),
            now=0.0,
            wall_clock_offset_s=WALL_CLOCK_AT_ZERO_S,
        )
    apply, failed = net.apply, []

    def first_dial_of_node_1_fails(i: int, action) -> None:
        if i == 1 and isinstance(action, Dial) and not failed:
            failed.append(action)
            net.nodes[1].dial_failed(action.target, net.now)
            return
        apply(i, action)

    net.apply = first_dial_of_node_1_fails
    net.tick(120.0, step=1.0)
    assert failed and net.nodes[1].counters.get("refused.duplicate") >= 1
    for i, node in enumerate(net.nodes):
        assert node.gossip._peers[net.ids[1 - i].node_id].outbound, f"node {i}"
        assert net.ids[1 - i].node_id in node.stem._graph._outbound, f"node {i}"


def test_a_peer_pinging_past_the_configured_burst_is_cut_off() -> None:
    """``pings_per_s`` and ``pings_burst`` in the config are the link's ping limit: the
    default (5 pings in 2.5 s) passes five back-to-back pings and cuts the link at the sixth."""
    net = Net(2)
    net.tick(2.0)
    victim, pinger = net.nodes[0], net.nodes[1]
    session = pinger._by_peer[victim.node_id]
    conn = victim._by_peer[pinger.node_id].conn_id
    for _ in range(victim.config.limits.pings_burst):
        session.link.ping(net.now)
    victim.data_received(conn, session.link.data_to_send(), net.now)
    assert not any(isinstance(a, CloseConnection) for a in victim.drain_actions())
    session.link.ping(net.now)
    victim.data_received(conn, session.link.data_to_send(), net.now)
    assert any(isinstance(a, CloseConnection) and a.conn_id == conn for a in victim.drain_actions())


def _lone_node(seed: int) -> Node:
    """A node with no peers, started at 0, for driving one of its rules directly."""
    return Node(
        identity=Identity.from_seed(bytes([seed]) * 32),
        config=NodeConfig(),
        rng=SeededRng(seed),
        now=0.0,
        wall_clock_offset_s=WALL_CLOCK_AT_ZERO_S,
    )


@pytest.mark.parametrize(
    ("own", "target", "dials"),
    [
        ("1.2.0.1", "1.3.0.1", True),  # the internet: global addresses only
        ("1.2.0.1", "10.0.0.5", False),  # a relay on the internet never probes its own LAN
        ("1.2.0.1", "127.0.0.1", False),  # ... nor its own host
        ("0.0.0.0", "192.168.1.1", False),  # listening everywhere is being on the internet
        (None, "127.0.0.1", False),  # no address yet: as strict
        ("127.1.0.1", "127.3.0.1", True),  # a loopback testnet
        ("10.1.0.1", "10.2.0.1", True),  # a LAN
    ],
)
def test_an_extend_dials_a_local_address_only_from_a_local_network(
    own: str | None, target: str, dials: bool
) -> None:
    """Whoever sends an EXTEND chooses the address: dialling any would make the relay a port
    scanner of its own host and network for them (the answer's timing tells a closed port
    from a filtered one from another service)."""
    node = _lone_node(7)
    if own is not None:
        node.set_advertised_address(own, 7000, 0.0)
    node.drain_actions()
    peer = NodeId(b"\x42" * 32)
    node._connect_for_circuit(ConnectTo(peer, RelayAddress(target, 7000)), 1.0)
    dialled = [a for a in node.drain_actions() if isinstance(a, Dial)]
    assert [d.target.node_id for d in dialled] == ([peer] if dials else [])
    assert node.counters.get("drops.extend_to_local_address") == (0 if dials else 1)


def test_links_for_relayed_circuits_leave_room_for_the_nodes_own_hop_one() -> None:
    """Peers choose where a relay's EXTENDs go; once they have used the links a relay may open
    for them, the node can still dial its own guard."""
    node = _lone_node(8)
    node.drain_actions()

    def dial(i: int, *, own: bool) -> bool:
        peer = NodeId(i.to_bytes(32, "big"))
        address = RelayAddress(f"8.{i // 250}.{i % 250}.1", 7000)
        node._connect_for_circuit(ConnectTo(peer, address, own_circuit=own), 1.0)
        return any(isinstance(a, Dial) for a in node.drain_actions())

    relayed = [dial(i, own=False) for i in range(1, MAX_CIRCUIT_LINKS + 1)]
    assert sum(relayed) == MAX_CIRCUIT_LINKS - OWN_HOP_ONE_RESERVE
    assert node.counters.get("drops.circuit_links_full") == OWN_HOP_ONE_RESERVE
    assert [dial(1000 + i, own=True) for i in range(OWN_HOP_ONE_RESERVE + 1)] == [True] * (
        OWN_HOP_ONE_RESERVE
    ) + [False]


def test_an_extend_refused_by_policy_is_answered_within_the_same_input() -> None:
    """The relay's TRUNCATED for an extension the node will not dial is sent while the node
    handles the EXTEND, not left queued until the node's next event (seconds, on a quiet
    node), which the origin would spend waiting to build elsewhere."""
    with standin_crypto():
        world = World()
        world.victim.set_advertised_address("1.2.0.1", 7001, world.now)  # on the internet now
        world.settle()
        world.open_circuit()
        (circuit,) = world.circuits
        unknown = NodeId(b"\x42" * 32)  # a relay the victim has no link with, on a LAN address
        keys = world.honest.private.onion_keys.current.public
        world._send_cells(
            circuit.extend_cells(unknown, keys, RelayAddress("10.9.0.1", 7002), b"\x05" * 32)
        )
    assert world.victim.counters.get("drops.extend_to_local_address") == 1
    assert circuit.heard[0, RelayCommand.TRUNCATED] == 1


def test_a_node_waiting_on_its_dials_does_not_ask_to_be_woken_at_once() -> None:
    """With more bootstrap peers than outbound slots and every slot's dial in flight, the next
    target cannot be dialled before a dial ends: the node's deadline must not lie in the past
    (the runtime re-arms its timer at ``max(0, deadline - now)`` and would spin)."""
    from murmur.overlay.peers.limits import PeerLimits

    bootstrap = tuple(
        BootstrapPeer(HostPort(f"8.8.{i}.1", 7000), NodeId(bytes([i]) * 32)) for i in range(1, 4)
    )
    node = Node(
        identity=Identity.from_seed(b"\x09" * 32),
        config=NodeConfig(bootstrap=bootstrap, limits=PeerLimits(max_outbound=2)),
        rng=SeededRng(9),
        now=0.0,
        wall_clock_offset_s=WALL_CLOCK_AT_ZERO_S,
    )
    node.handle_timer(0.0)
    assert len([a for a in node.drain_actions() if isinstance(a, Dial)]) == 2
    deadline = node.next_deadline()
    assert deadline is None or deadline > 0.0


def test_a_peer_banned_for_what_it_sent_on_a_retired_duplicate_loses_its_kept_link_too() -> None:
    """A ban by node id is the peer's, whichever of its links broke the protocol: a peer that
    fails a tag on the losing link is not left gossiping on the kept one until it reconnects."""
    net = Net(2, peers_of=lambda i: [1 - i])
    net.tick(1.0)
    a, b = net.nodes
    retired_a, _ = _retired_pair(net)
    kept = a._by_peer[b.node_id].conn_id
    a.data_received(retired_a, b"\x00\x00\x00\x20" + b"\x01" * 32, net.now)  # fails its tag
    closed = {c.conn_id for c in a.drain_actions() if isinstance(c, CloseConnection)}
    assert a._bans.is_banned(b.node_id, net.now)
    assert closed == {retired_a, kept}
    assert b.node_id not in a._by_peer and not a._sessions


def test_a_peer_s_rate_limit_is_shared_by_its_duplicate_links() -> None:
    """What a peer sends on a retired duplicate still counts as the peer's, so it is charged
    to the peer's one budget: each extra link it opens does not buy it another."""
    net = Net(2, peers_of=lambda i: [1 - i])
    net.tick(1.0)
    a, b = net.nodes
    retired_a, retired_b = _retired_pair(net)
    kept_a = a._by_peer[b.node_id].conn_id
    kept_b = b._by_peer[a.node_id]
    burst = a.config.limits.messages_burst
    for conn, sender in ((kept_a, kept_b), (retired_a, b._sessions[retired_b])):
        for _ in range(burst):
            sender.link.send_message(wrap(Channel.GOSSIP, encode_rpc(Rpc())), net.now)
        a.data_received(conn, sender.link.data_to_send(), net.now)
    assert a.counters.get("misbehaviour.flood") == 1  # twice the burst at once is a flood
    assert a._bans.is_banned(b.node_id, net.now)


def test_a_retired_duplicate_closing_late_leaves_the_redial_in_flight_alone() -> None:
    """The kept link goes first and the node redials its target; the retired duplicate then
    closes at the end of its drain. Its dial ended long ago: the target's pending dial is the
    new one, and must not be marked failed (the node would dial the same peer twice)."""
    from murmur.node.node import DUPLICATE_DRAIN_S

    net = Net(2, peers_of=lambda i: [1 - i])
    net.tick(1.0)
    dialler = next(
        i
        for i, node in enumerate(net.nodes)
        if any(s.retired and s.outbound for s in node._sessions.values())
    )
    node = net.nodes[dialler]
    peer = net.nodes[1 - dialler]
    kept = node._by_peer[peer.node_id].conn_id
    node.connection_lost(kept, net.now)  # the kept link's transport broke
    dials = []
    start = net.now
    while net.now < start + DUPLICATE_DRAIN_S + 5.0:
        net.now += 0.25
        if (deadline := node.next_deadline()) is not None and deadline <= net.now:
            node.handle_timer(net.now)
        dials += [a for a in node.drain_actions() if isinstance(a, Dial)]  # never answered
    assert not node._sessions  # the duplicate closed at the end of its drain
    assert len(dials) == 1


def test_a_dial_answered_by_another_node_does_not_throttle_that_address_s_inbound() -> None:
    """Whoever sends an EXTEND names both the address and the node id: one naming an honest
    node's address with another id makes the relay's dial end in ``unexpected_peer``. The
    address throttle paces what hosts connect to us; that failure is our dial's, and must not
    refuse the honest node (or anyone behind its address) when it connects in."""
    net = Net(2)
    node = net.nodes[1]
    honest = net.addr[0]
    node._dial_targets[0].peer = BootstrapPeer(honest, NodeId(b"\x00" * 32))
    net.tick(1.0)
    assert node.counters.get("links_closed.unexpected_peer") >= 1
    node.connection_opened(net.conn(), outbound=False, host=honest.host, port=1, now=net.now)
    assert not any(isinstance(a, CloseConnection) for a in node.drain_actions())


def test_a_host_reconnecting_is_offered_the_directory_twice_then_once_per_ten_minutes() -> None:
    """Each catch-up is up to 129 records of ~9 kB for whoever asks: a host reconnecting as
    fast as the throttle allows would otherwise pull megabytes a second from the node. Over
    budget it is still offered the node's own announcement."""
    with standin_crypto():
        world = World()  # the hostile host's first link, before the victim held any record
        offered = []
        for wait_s in (2.0, 1.0, 1.0, 1 / CATCH_UP_PER_HOST_PER_S):
            world.advance(wait_s)
            before = world.victim.gossip.counters.get("gossip.offer.ids")
            world.reconnect_hostile(drop_old=True)
            offered.append(world.victim.gossip.counters.get("gossip.offer.ids") - before)
    # the victim's own record and the honest node's, then its own alone, until the budget refills
    assert offered == [2, 1, 1, 2]
    assert world.victim.counters.get("catch_up.withheld") == 2
