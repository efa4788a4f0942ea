from __future__ import annotations

from murmur.sim.validation import PAPER_FIGURES, ValidationRow, validate


def test_small_validation_orders_the_protocols_and_respects_the_floors() -> None:
    rows = {row.figure.label: row for row in validate(runs=3, nodes=300, seed=11)}
    diffusion_4, diffusion_8, dandelion_exact, dandelion_quasi = (
        rows[f.label] for f in PAPER_FIGURES
    )
    assert all(row.floors_ok for row in rows.values())
    assert dandelion_exact.precision < dandelion_quasi.precision < diffusion_4.precision
    assert diffusion_4.precision < diffusion_8.precision
    assert dandelion_exact.recall < diffusion_4.recall


def test_tolerance_is_three_of_the_papers_standard_errors() -> None:
    figure = PAPER_FIGURES[0]  # 0.091 +- 0.003, 0.233 +- 0.004

    def row(precision: float, recall: float) -> ValidationRow:
        return ValidationRow(figure, 20, 1000, 0.1, precision, 0.001, recall, 0.001, 0.0)

    assert row(0.099, 0.244).precision_ok and row(0.099, 0.244).recall_ok
    assert not row(0.101, 0.233).precision_ok
    assert not row(0.091, 0.246).recall_ok
    assert not row(0.005, 0.233).floors_ok
