"""A one-hop circuit a hostile peer builds to its victim by hand, with the pure handshake steps.

Through it the fuzzer's relay plaintexts reach the victim's relay as *recognized* cells (the
digest and the layer are made right here), so EXTEND, DATA, COVER and whatever else the fuzzer
writes in a relay header get past the crypto that random bytes never would.
"""

from __future__ import annotations

from murmur.base.ids import NodeId
from murmur.crypto.stream import KeyStream
from murmur.overlay.circuits.handshake import ClientPending, client_finish, client_onionskin
from murmur.overlay.circuits.layers import Digest
from murmur.overlay.circuits.onion_keys import OnionPublicKeys
from murmur.wire.cells import CELL_BODY_BYTES, CellCommand, Created, create_bodies, encode_cell


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
