"""Coverage-guided fuzz harnesses (atheris) for everything a peer can send.

Each ``fuzz_*`` module has one ``one_input(data: bytes) -> None`` that raises only when it has
found a bug. Nothing but ``__main__`` imports atheris, so ``tests/fuzz/test_corpus_replay.py``
replays the checked-in corpora in the normal test suite without it. Run a campaign from the
repository root with ``python -m fuzz fuzz_node [libFuzzer flags] CORPUS_DIR...`` (or ``make
fuzz``).
"""
