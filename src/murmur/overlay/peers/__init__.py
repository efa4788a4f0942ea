"""Peer-management primitives: rate limits, bans, address throttling, reconnect back-off.

Plain data structures with the time passed in (``now``, seconds) and randomness injected; the
peer manager composes them.
"""
