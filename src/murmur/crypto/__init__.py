"""Thin wrappers over pyca/cryptography: the only place primitives are named.

No home-made primitive lives here: every function is one call (or a fixed composition) of a
pyca/cryptography primitive, so the rest of the code cannot pick a wrong mode or key size.
"""
