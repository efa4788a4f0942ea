"""``murmur testnet`` stopped by SIGTERM stops its nodes and deletes their directory.

A real ``murmur testnet`` process with two nodes and a workload far longer than the test gets
SIGTERM once both nodes answer on their control API (SIGHUP takes the same path:
test_signals.py checks that it raises the same exception). Its temporary directory goes to
``tmp_path`` (through ``TMPDIR``), and each node's pid is read from the ``node.json`` it wrote
there. The exit status is 128 + the signal number (143 for SIGTERM), as a shell reports a
process the signal ended, and as the CLI already answers Ctrl-C with 130.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from murmur.base.errors import MurmurError
from murmur.interfaces.api_client import ApiClient
from murmur.runtime.keystore import read_node_info

pytestmark = pytest.mark.integration

NODES = 2
STARTUP_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 20.0


def _running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has stopped; only its exit status is left)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _node_pids(scratch: Path, testnet: subprocess.Popen[bytes]) -> list[int]:
    """The nodes' pids, once every node answers on its control API."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline and testnet.poll() is None:
        directories = sorted(scratch.glob("murmur-testnet-*/node*"))
        with contextlib.suppress(MurmurError):
            if len(directories) == NODES:
                for directory in directories:
                    ApiClient.from_node_dir(directory).call("status")
                return [int(read_node_info(d)["pid"]) for d in directories]
        time.sleep(0.1)
    raise AssertionError(f"the nodes did not start (testnet exit status {testnet.poll()})")


def test_sigterm_stops_every_node_and_removes_their_keys(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "murmur.interfaces.cli", "testnet", "--nodes", str(NODES)]
    argv += ["--messages", "1000", "--rate", "1"]
    errors = tmp_path / "testnet.err"
    with errors.open("wb") as err:
        testnet = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "TMPDIR": str(tmp_path)},
        )
    pids: list[int] = []
    try:
        pids = _node_pids(tmp_path, testnet)
        testnet.send_signal(signal.SIGTERM)
        assert testnet.wait(timeout=EXIT_TIMEOUT_S) == 143
    finally:
        for pid in [testnet.pid, *pids]:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        testnet.wait()
    assert not [pid for pid in pids if _running(pid)]
    assert not list(tmp_path.glob("murmur-testnet-*"))
    assert "Traceback" not in errors.read_text()
