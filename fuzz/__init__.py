"""Coverage-guided fuzz harnesses (atheris) for everything a peer can send.

Each ``fuzz_*`` module has one ``one_input(data: bytes) -> None`` that raises only when it has
found a bug, and a ``main()`` that hands it to atheris. Nothing here imports atheris at module
level, so ``tests/fuzz/test_corpus_replay.py`` replays the checked-in corpora in the normal
test suite without it. Run a campaign with ``python -m fuzz.fuzz_node CORPUS_DIR [libFuzzer
flags]`` from the repository root (or ``make fuzz``).
"""
