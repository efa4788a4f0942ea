"""Privacy, latency and cost metrics of one run.

Precision and recall follow Fanti et al. (Dandelion++, SIGMETRICS 2018, section 3; and their
released simulation code). The estimator maps each transaction x to a guessed origin M(x).
Writing O for the set of honest nodes that originated a transaction (every honest node in the
paper's setup of one transaction per honest node) and M^-1(v) for the transactions mapped to v:

    precision = (1 / |O|) * sum over v in O of  #{x in M^-1(v) : origin(x) = v} / |M^-1(v)|
    recall    = #{x : M(x) = origin(x)} / #transactions

so a node named as the source of k transactions, one of them its own, contributes 1/k to the
precision sum. Spies' own transactions do not exist (origins are honest) and a transaction no
spy saw counts as a miss. With one transaction per honest node both reduce exactly to the
paper's definitions, whose normaliser is the number of honest nodes. The transactions are those
sent: under churn, one whose origin was down at its arrival is not, and is not in ``origins``
(see :mod:`murmur.sim.scenario`).

Entropy (the "degree of anonymity" view, Diaz et al. 2002): the posterior of an adversary that
knows how often its estimator is right. For a transaction it placed, it gives the guess the
estimator's hit rate r in this run (correct guesses / guesses made) and spreads 1 - r evenly over
the other honest nodes; a transaction it did not place has a uniform posterior over the honest
nodes. ``entropy_bits`` is the mean entropy of that posterior over transactions: log2(honest)
when the adversary learns nothing, 0 when it is always right.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence


def precision_recall(
    guesses: Mapping[bytes, int], origins: Mapping[bytes, int]
) -> tuple[float, float]:
    if not origins:
        return 0.0, 0.0
    mapped: Counter[int] = Counter()
    correct: Counter[int] = Counter()
    for tx_id, guess in guesses.items():
        origin = origins.get(tx_id)
        if origin is None:
            continue
        mapped[guess] += 1
        if origin == guess:
            correct[guess] += 1
    originators = len(set(origins.values()))
    precision = sum(hits / mapped[v] for v, hits in correct.items()) / originators
    recall = sum(correct.values()) / len(origins)
    return precision, recall


def posterior_entropy_bits(
    guesses: Mapping[bytes, int], origins: Mapping[bytes, int], honest_nodes: int
) -> float:
    if not origins or honest_nodes < 2:
        return 0.0
    placed = [tx_id for tx_id in origins if tx_id in guesses]
    uniform = math.log2(honest_nodes)
    if not placed:
        return uniform
    r = sum(guesses[tx_id] == origins[tx_id] for tx_id in placed) / len(placed)
    placed_bits = _binary_entropy(r) + (1.0 - r) * math.log2(honest_nodes - 1)
    return (len(placed) * placed_bits + (len(origins) - len(placed)) * uniform) / len(origins)


def _binary_entropy(r: float) -> float:
    if r <= 0.0 or r >= 1.0:
        return 0.0
    return -r * math.log2(r) - (1.0 - r) * math.log2(1.0 - r)


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (NaN for a single value: one run has no spread to
    estimate it from, which is not the same as none)."""
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance / len(values))
