"""The frozen dataclasses whose ``__init__`` is written out (so that mypyc compiles it) still
behave as the generated one would: every field set, frozen, equal by value, ``replace`` works.
A field added to one of them without its line in ``__init__`` fails here, not at first use."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from murmur.base.ids import NodeId
from murmur.link.connection import MessageReceived
from murmur.node.actions import ConnId, SendBytes
from murmur.overlay.circuits.events import SendCell
from murmur.overlay.gossip.actions import SendRpc
from murmur.wire.cells import Cell, CellCommand
from murmur.wire.gossip import IHave, Message, Rpc, Subscription
from murmur.wire.link import Frame, FrameType

PEER = NodeId(b"\x01" * 32)
SAMPLES: list[Any] = [
    Frame(FrameType(1), b"payload"),
    Message("transaction", b"tx"),
    IHave("transaction", (b"\x02" * 20,)),
    Rpc(
        subscriptions=(Subscription("transaction", True),),
        messages=(Message("transaction", b"tx"),),
        ihave=(IHave("transaction", (b"\x02" * 20,)),),
    ),
    Cell(7, CellCommand.CREATE, b"body"),
    SendBytes(ConnId(3), b"bytes"),
    SendRpc(PEER, b"rpc"),
    SendCell(PEER, b"cell"),
    MessageReceived(b"frame"),
]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
def test_a_written_out_init_sets_every_field_and_keeps_the_dataclass_contract(sample: Any) -> None:
    values = {f.name: getattr(sample, f.name) for f in dataclasses.fields(sample)}
    assert type(sample)(**values) == sample
    copy = dataclasses.replace(sample)
    assert copy == sample and hash(copy) == hash(sample)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(sample, dataclasses.fields(sample)[0].name, None)
