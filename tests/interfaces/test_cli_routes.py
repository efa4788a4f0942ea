"""The CLI's route choices: names it knows reach the control API, others are refused."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from murmur.interfaces import api_client
from murmur.interfaces.cli import build_parser, main


class _FakeClient:
    calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    @classmethod
    def from_node_dir(cls, path: str) -> _FakeClient:
        return cls()

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((method, params))
        return {"message_id": "00" * 20}


def test_send_tx_passes_the_route_to_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_client, "ApiClient", _FakeClient)
    assert main(["send-tx", "--dir", "d", "--route", "dandelion", "abcd"]) == 0
    assert main(["send-tx", "--dir", "d", "abcd"]) == 0
    (_, routed), (_, default) = _FakeClient.calls[-2:]
    assert routed == {"topic": "transaction", "data_hex": "abcd", "route": "dandelion"}
    assert "route" not in default  # the node's configured route applies


@pytest.mark.parametrize(
    "argv",
    [
        ["send-tx", "--dir", "d", "--route", "mixnet", "abcd"],
        ["testnet", "--path", "mixnet"],
    ],
)
def test_unknown_route_names_are_refused(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert "invalid choice: 'mixnet'" in capsys.readouterr().err


def test_testnet_accepts_the_dandelion_path() -> None:
    assert build_parser().parse_args(["testnet", "--path", "dandelion"]).path == "dandelion"
