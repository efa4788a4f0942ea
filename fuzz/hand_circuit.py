"""Circuits between a hostile peer and its victim, done by hand with the pure handshake steps.

Through a :class:`HandCircuit` (the peer as origin) the fuzzer's relay plaintexts reach the
victim's relay as *recognized* cells (the digest and the layer are made right here), so EXTEND,
DATA, COVER and whatever else the fuzzer writes in a relay header get past the crypto that
random bytes never would; through a :class:`HandHop` (the peer as the victim's first hop) they
reach the victim's circuit client the same way.
"""

from __future__ import annotations

from murmur.base.errors import RemoteProtocolError
from murmur.base.ids import NodeId
from murmur.crypto.stream import KeyStream
from murmur.overlay.circuits.handshake import (
    ClientPending,
    client_finish,
    client_onionskin,
    relay_answer,
)
from murmur.overlay.circuits.layers import Digest, RelayLayer
from murmur.overlay.circuits.onion_keys import OnionKeyPair, OnionPublicKeys
from murmur.wire.cells import (
    CELL_BODY_BYTES,
    CREATE_CELLS,
    RELAY_DATA_BYTES,
    CellCommand,
    Created,
    Onionskin,
    RelayCommand,
    create_bodies,
    decode_create_body,
    encode_cell,
)


class HandCircuit:
    def __init__(
        self, circ_id: int, relay_id: NodeId, relay_keys: OnionPublicKeys, x25519_seed: bytes
    ) -> None:
        self.circ_id = circ_id
        skin, self._pending = client_onionskin(relay_id, relay_keys, x25519_seed=x25519_seed)
        self.create_cells = [
            encode_cell(circ_id, CellCommand.CREATE, body) for body in create_bodies(skin)
        ]
        self._forward: KeyStream | None = None
        self._digest: Digest | None = None

    @property
    def built(self) -> bool:
        return self._forward is not None

    def finish(self, created_body: bytes) -> None:
        """Takes the victim's CREATED body (the victim is trusted to answer correctly here)."""
        pending: ClientPending = self._pending
        keys = client_finish(Created.decode_body(created_body), pending).keys
        self._forward = KeyStream(keys.forward_key)
        self._digest = Digest(keys.forward_digest)

    def recognized_cell(self, plaintext: bytes) -> bytes:
        """A RELAY cell the victim recognizes as its own, whatever ``plaintext`` says (it is cut
        or zero-filled to a body; its recognized and digest fields are overwritten)."""
        assert self._forward is not None and self._digest is not None
        body = bytearray(plaintext[:CELL_BODY_BYTES].ljust(CELL_BODY_BYTES, b"\x00"))
        body[0:2] = b"\x00\x00"
        return self._cell(self._forward.apply(self._digest.seal(body)))

    def opaque_cell(self, body: bytes) -> bytes:
        """A RELAY cell under this hop's layer that it will not recognize (for a later hop)."""
        assert self._forward is not None
        return self._cell(self._forward.apply(body[:CELL_BODY_BYTES].ljust(CELL_BODY_BYTES, b"\1")))

    def _cell(self, body: bytes) -> bytes:
        return encode_cell(self.circ_id, CellCommand.RELAY, body)


class HandHop:
    """The hostile peer as the first hop of circuits the victim builds through it: it answers
    the victim's CREATE with its announced onion key, so it holds the hop's layer and can send
    the victim's circuit client backward cells it recognizes (EXTENDED, TRUNCATED, REPLY, ...
    with whatever data the fuzzer writes)."""

    def __init__(self, node_id: NodeId, onion_keys: OnionKeyPair) -> None:
        self._node_id = node_id
        self._onion_keys = onion_keys
        self._creates: dict[int, list[bytes]] = {}
        self.layers: dict[int, RelayLayer] = {}

    def on_create(self, circ_id: int, body: bytes) -> bytes | None:
        """One CREATE cell from the victim; the CREATED cell once the onionskin is whole and
        good (none for a bad one: this peer then never answers)."""
        chunks = self._creates.setdefault(circ_id, [])
        chunks.append(decode_create_body(body).chunk)
        if len(chunks) < CREATE_CELLS:
            return None
        del self._creates[circ_id]
        try:  # an onionskin a hostile origin made up, passed on by an honest relay
            skin = Onionskin.decode_body(b"".join(chunks))
            created, schedule = relay_answer(
                skin, self._onion_keys, node_id=self._node_id, y_seed=bytes(32)
            )
        except RemoteProtocolError:
            return None
        self.layers[circ_id] = RelayLayer(schedule.keys)
        return encode_cell(circ_id, CellCommand.CREATED, created.encode())

    def backward_cell(self, circ_id: int, command: RelayCommand, data: bytes) -> bytes:
        body = self.layers[circ_id].originate_backward(command, data[:RELAY_DATA_BYTES])
        return encode_cell(circ_id, CellCommand.RELAY, body)
