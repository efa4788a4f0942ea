"""The link layer: hybrid post-quantum handshake and encrypted framing over any byte stream."""
