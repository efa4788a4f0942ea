"""The node: composes the protocol cores and routes each message type to its path."""
