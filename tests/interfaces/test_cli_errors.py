"""Bad arguments and failing system calls end ``murmur`` with one line and exit status 2.

Two kinds of line: argparse's own (``murmur testnet: error: argument --rate: want ...``) for a
value out of range, refused before anything starts; ``murmur: ...`` for what only running the
command reveals (Murmur's own errors and the operating system's). Never a traceback. The CLI
runs in-process through ``main(argv)``, except ``murmur node``, which installs signal handlers
and logging for its whole process and so runs as one.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from murmur.interfaces.cli import main


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | str | None, str]:
    """The exit status and stderr of ``murmur argv`` (argparse exits through SystemExit)."""
    try:
        status: int | str | None = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["testnet", "--rate", "0"], "argument --rate: want a number > 0, got '0'"),
        (["testnet", "--rate", "nan"], "argument --rate: want a number > 0, got 'nan'"),
        (["testnet", "--nodes", "0"], "argument --nodes: want an integer >= 2, got '0'"),
        (["testnet", "--nodes", "1"], "argument --nodes: want an integer >= 2, got '1'"),
        (["testnet", "--nodes", "two"], "argument --nodes: want an integer >= 2, got 'two'"),
        (["testnet", "--size", "-5"], "argument --size: want an integer in [1, 131072], got '-5'"),
        (["testnet", "--size", "131073"], "argument --size: want an integer in [1, 131072]"),
        (["testnet", "--messages", "0"], "argument --messages: want an integer >= 1, got '0'"),
        (["testnet", "--path", "dandelion", "--tx", "0"], "argument --tx: want an integer >= 1"),
        (["simulate", "--runs", "-1"], "argument --runs: want an integer >= 1, got '-1'"),
        (["simulate", "--runs", "0"], "argument --runs: want an integer >= 1, got '0'"),
        (["simulate", "validate", "--runs", "0"], "argument --runs: want an integer >= 1"),
        (["simulate", "--nodes", "1"], "argument --nodes: want an integer >= 2, got '1'"),
        (["simulate", "--tx", "0"], "argument --tx: want an integer >= 1, got '0'"),
        (["simulate", "--spies", "1"], "argument --spies: want a fraction in [0, 1), got '1'"),
        (["simulate", "--spies", "nan"], "argument --spies: want a fraction in [0, 1)"),
        (["simulate", "--taps", "1.5"], "argument --taps: want a fraction in [0, 1], got '1.5'"),
        (["simulate", "--fluff", "-0.1"], "argument --fluff: want a fraction in [0, 1]"),
        (["simulate", "--tx-rate", "0"], "argument --tx-rate: want a number > 0, got '0'"),
        (["simulate", "--tx-rate", "nan"], "argument --tx-rate: want a number > 0, got 'nan'"),
        (["simulate", "--origins", "0"], "argument --origins: want an integer >= 1, got '0'"),
        (["simulate", "--churn", "-1"], "argument --churn: want a number >= 0, got '-1'"),
        (["simulate", "--churn", "inf"], "argument --churn: want a number >= 0, got 'inf'"),
        (["simulate", "--cover-rate", "-1"], "argument --cover-rate: want a number >= 0"),
        (["simulate", "--build-race", "0"], "argument --build-race: want an integer >= 1"),
        (["simulate", "--near-first-hops", "-1"], "argument --near-first-hops: want an integer"),
        (["simulate", "--upkeep-window", "-1"], "argument --upkeep-window: want a number >= 0"),
        (["simulate", "--overload", "1.5"], "argument --overload: want a fraction in [0, 1]"),
        (["simulate", "--jobs", "0"], "argument --jobs: want an integer >= 1, got '0'"),
        (["simulate", "--jobs", "-2"], "argument --jobs: want an integer >= 1, got '-2'"),
    ],
)
def test_a_value_out_of_range_is_refused_by_the_parser(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = run_cli(argv, capsys)
    assert status == 2
    assert f"murmur {argv[0]}: error: {message}" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["testnet", "--nodes", "3", "--path", "private"],
            "murmur: the private path needs at least 4 nodes (3-hop circuits of relays on "
            "distinct /16s, none the origin's), got 3\n",
        ),
        (
            ["testnet", "--nodes", "256", "--path", "private"],
            "murmur: the private path gives each node its own /16 of 127.0.0.0/8: "
            "at most 255 nodes, got 256\n",
        ),
        (
            ["publish", "--dir", "nowhere", "--topic", "block_header", "--hex", "zz"],
            "murmur: DATA (--hex) must be hexadecimal\n",
        ),
        (
            ["send-tx", "--dir", "nowhere", "not-hex"],
            "murmur: the transaction must be hexadecimal\n",
        ),
    ],
)
def test_a_bad_combination_is_refused_before_anything_starts(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(argv, capsys) == (2, message)


def test_init_on_a_file_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a-file"
    path.write_text("not a directory")
    status, err = run_cli(["init", "--dir", str(path)], capsys)
    assert status == 2
    assert err.startswith("murmur: ") and err.count("\n") == 1
    assert str(path) in err and "File exists" in err


def test_a_node_on_a_port_in_use_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        host, port = taken.getsockname()
        argv = ["node", "--dir", str(tmp_path), "--listen", f"{host}:{port}"]
        node = subprocess.run(
            [sys.executable, "-m", "murmur.interfaces.cli", *argv],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert node.returncode == 2
    assert node.stderr.startswith("murmur: ") and "Traceback" not in node.stderr
    assert f"('{host}', {port})" in node.stderr and "address already in use" in node.stderr
