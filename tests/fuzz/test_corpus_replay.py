"""The fuzz harnesses' checked-in corpora and findings, replayed without atheris.

``fuzz/corpus/<harness>/`` is each campaign's minimized corpus (the coverage it reached, kept so a
change that breaks an input found once fails here); ``tests/vectors/fuzz/<harness>/`` holds the
inputs that once crashed, hung or grew a harness, each named for its finding.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fuzz import fuzz_control_api, fuzz_node, fuzz_relay, fuzz_wire

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fuzz" / "corpus"
FINDINGS = ROOT / "tests" / "vectors" / "fuzz"
HARNESSES: dict[str, Callable[[bytes], None]] = {
    "fuzz_wire": fuzz_wire.one_input,
    "fuzz_node": fuzz_node.one_input,
    "fuzz_relay": fuzz_relay.one_input,
    "fuzz_control_api": fuzz_control_api.one_input,
}


def _files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file()) if folder.is_dir() else []


@pytest.mark.parametrize("harness", sorted(HARNESSES))
def test_corpus_replays_cleanly(harness: str) -> None:
    inputs = _files(CORPUS / harness)
    assert inputs, f"no corpus for {harness}"
    for path in inputs:
        try:
            HARNESSES[harness](path.read_bytes())
        except BaseException as exc:
            raise AssertionError(f"{harness} fails on fuzz/corpus/{harness}/{path.name}") from exc


@pytest.mark.parametrize(
    "path",
    [path for harness in sorted(HARNESSES) for path in _files(FINDINGS / harness)],
    ids=lambda path: f"{path.parent.name}/{path.name}",
)
def test_finding_stays_fixed(path: Path) -> None:
    HARNESSES[path.parent.name](path.read_bytes())
