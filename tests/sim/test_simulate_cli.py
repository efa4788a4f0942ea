"""``murmur simulate`` through its parser and handler (the main CLI registers the same pair)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from murmur.interfaces.cli import main
from murmur.interfaces.simulate import add_simulate_parser, run_simulate
from murmur.sim.estimators import PROTOCOL_ESTIMATORS


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="murmur")
    add_simulate_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["simulate", *argv])


def test_onion_runs_production_nodes_against_their_fast_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = parse(
        "--protocol", "onion", "--nodes", "24", "--tx", "6", "--standin-crypto", "--json",
        "--report", str(tmp_path),
    )  # fmt: skip
    assert run_simulate(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["protocol"] == "onion" and result["baseline"] == "fastpath"
    assert set(result["precision"]) == set(PROTOCOL_ESTIMATORS["onion"])
    assert set(result["recall"]) == set(result["precision"])
    assert result["crypto"] == "standin" and result["directory"] == "preloaded"
    assert result["delivered_ratio"] == 1.0 and result["relay_participation"] > 0.0
    assert result["latency_overhead_ms"]["p50"] > 0.0 and result["bandwidth_overhead"] > 1.0
    report = (tmp_path / "report.md").read_text()
    assert "fastpath" in report and "standin" in report


def test_onion_crypto_is_real_unless_asked() -> None:
    args = parse("--protocol", "onion")
    assert args.standin_crypto is False and args.announce_flood is False


def test_onion_under_churn_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--protocol", "onion", "--nodes", "20", "--churn", "1"]) == 2
    assert "churn" in capsys.readouterr().err


def test_run_prints_one_json_object(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = parse(
        "--nodes", "60", "--tx", "15", "--protocol", "dandelion", "--json",
        "--report", str(tmp_path), "--seed", "3",
    )  # fmt: skip
    assert run_simulate(args) == 0
    result = json.loads(capsys.readouterr().out)
    for key in (
        "protocol", "nodes", "spies", "precision", "recall", "entropy_bits", "latency_ms",
        "latency_overhead_ms", "bandwidth_overhead", "relay_participation", "delivered_ratio",
        "wall_seconds",
    ):  # fmt: skip
        assert key in result
    assert result["protocol"] == "dandelion" and result["nodes"] == 60
    assert result["taps"] == 0.0
    assert result["build"] in ("interpreted", "mypyc")
    assert set(result["precision"]) == {"first_spy", "stem_predecessor"}
    assert set(result["latency_ms"]) == {"p50", "p99"} == set(result["latency_overhead_ms"])
    assert result["delivered_ratio"] == 1.0
    assert (result["tx_sent"], result["tx_unsent"]) == (15, 0)
    assert 0.0 <= result["precision"]["first_spy"] <= 1.0
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# murmur simulate: dandelion") and "not sent" not in report
    for plot in ("privacy.png", "latency_cdf.png", "bandwidth.png"):
        assert (tmp_path / plot).stat().st_size > 1000


def test_a_run_under_churn_says_how_many_transactions_were_not_sent(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Each node leaves 100 times an hour and stays down 10 minutes on average; over the 20 s of
    # the workload the origins of 3 transactions (seed 1) and 6 (seed 2) are down at arrival.
    args = parse(
        "--nodes", "30", "--tx", "20", "--tx-rate", "1", "--churn", "100", "--runs", "2",
        "--protocol", "dandelion", "--json", "--report", str(tmp_path),
    )  # fmt: skip
    assert run_simulate(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["tx"], result["runs"], result["tx_sent"], result["tx_unsent"]) == (20, 2, 31, 9)
    notes = [
        line for line in (tmp_path / "report.md").read_text().splitlines() if "not sent" in line
    ]
    assert notes == [
        f"* {protocol} at 0.1 spies: 9 of 40 transactions not sent (origin down at arrival); "
        "every figure is over the 31 sent."
        for protocol in ("dandelion", "diffusion")
    ]


def test_diffusion_is_its_own_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run_simulate(parse("--nodes", "40", "--tx", "5", "--protocol", "diffusion", "--json")) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["latency_overhead_ms"] == {"p50": 0.0, "p99": 0.0}
    assert result["bandwidth_overhead"] == 1.0


def test_sweep_covers_the_standard_spy_fractions(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = parse(
        "sweep", "--nodes", "24", "--tx", "4", "--json", "--report", str(tmp_path),
        "--standin-crypto",
    )  # fmt: skip
    assert run_simulate(args) == 0
    result = json.loads(capsys.readouterr().out)
    seen = {(r["protocol"], r["spies"]) for r in result["results"]}
    protocols = ("diffusion", "dandelion", "onion", "fastpath")
    assert seen == {(p, f) for p in protocols for f in (0.05, 0.1, 0.2, 0.3)}
    report = (tmp_path / "report.md").read_text()
    assert "onion" in report and "| spy fraction | 0.05, 0.1, 0.2, 0.3 |" in report


def test_validate_reports_ours_against_the_paper(capsys: pytest.CaptureFixture[str]) -> None:
    status = run_simulate(parse("validate", "--nodes", "200", "--runs", "2", "--json"))
    result = json.loads(capsys.readouterr().out)
    assert status == (0 if result["ok"] else 1)
    assert [r["graph"] for r in result["rows"]] == ["regular4", "outdegree8", "regular4", "quasi4"]
    assert all(r["runs"] == 2 and 0.0 < r["ours"]["recall"] < 1.0 for r in result["rows"])


def test_bad_settings_exit_with_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--nodes", "4", "--graph", "regular4", "--tx", "1"]) == 2
    assert capsys.readouterr().err == "murmur: an exact 4-regular graph needs at least 5 nodes\n"
    with pytest.raises(SystemExit) as exit_:
        parse("--nodes", "20", "--fluff", "2")
    assert exit_.value.code == 2


def test_the_parser_routes_to_the_handler() -> None:
    assert parse("--nodes", "10").func is run_simulate


ONION_SMALL = ("--protocol", "onion", "--nodes", "24", "--tx", "6", "--standin-crypto", "--json")


@pytest.mark.parametrize(
    ("flag", "value", "key"),
    [
        # a second's hold at every origin adds about a second to every private message
        ("--origin-delay", "1000,1000", "origin_delay_ms"),
        # half a second at every relay that forwards a cell: hop 1 and hop 2 each hold every
        # message (the exit publishes it, it forwards no cell)
        ("--relay-delay", "500,500", "relay_delay_ms"),
    ],
)
def test_onion_delays_are_tuning_knobs(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, key: str
) -> None:
    assert run_simulate(parse(*ONION_SMALL)) == 0
    plain = json.loads(capsys.readouterr().out)
    assert run_simulate(parse(*ONION_SMALL, flag, value)) == 0
    held = json.loads(capsys.readouterr().out)
    assert plain["onion"][key] == "none"
    assert held["onion"][key] == value.replace(",", "-")
    added = held["latency_ms"]["p50"] - plain["latency_ms"]["p50"]
    assert 900.0 < added < 1100.0


def test_onion_slot_law_is_a_tuning_knob(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(*ONION_SMALL, "--level", "maximum", "--slot-law", "poisson", "--tx", "2")
    assert run_simulate(args) == 0
    assert json.loads(capsys.readouterr().out)["onion"]["slot_law"] == "poisson"
    assert main(["simulate", *ONION_SMALL, "--slot-law", "poisson"]) == 2  # standard: no slots
    assert "no slots" in capsys.readouterr().err


def test_path_bias_baseline_and_overload_reach_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--protocol", "onion", "--nodes", "20", "--tx", "4", "--standin-crypto", "--json")
    assert run_simulate(parse(*args, "--overload", "0.25", "--path-bias-baseline", "off")) == 0
    onion = json.loads(capsys.readouterr().out)["onion"]
    assert onion["overload"] == 0.25 and onion["path_bias_baseline"] == 0
    assert onion["circuits_refused_overload"] > 0


@pytest.mark.parametrize("bad", ["5", "9,1", "-1,4", "a,b"])
def test_a_bad_origin_delay_is_a_usage_error(bad: str) -> None:
    with pytest.raises(SystemExit):
        parse("--protocol", "onion", "--origin-delay", bad)
