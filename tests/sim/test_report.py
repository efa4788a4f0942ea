import pytest

from murmur.sim.report import circuit_floor


def test_the_circuit_floor_is_hop_one_and_either_later_hop() -> None:
    assert circuit_floor(0.1) == pytest.approx(0.019)
    assert circuit_floor(0.0) == 0.0
    assert circuit_floor(1.0) == 1.0


@pytest.mark.parametrize("p", [0.01, 0.02])
def test_the_circuit_floor_is_about_two_p_squared_for_few_spies(p: float) -> None:
    assert circuit_floor(p) == pytest.approx(2 * p * p, rel=p)
