from __future__ import annotations

import gc
from dataclasses import replace

from murmur.sim.engine import Engine
from murmur.sim.parallel import Job, run_jobs
from murmur.sim.protocols import DiffusionKit
from murmur.sim.scenario import Scenario

SMALL = Scenario(nodes=40, graph="daemon", tx_count=5, tx_rate_per_s=5.0)


def test_results_come_back_in_job_order_and_no_engine_outlives_its_job() -> None:
    jobs = [Job(SMALL, DiffusionKit(), seed, f"run {seed}") for seed in (1, 2, 1)]
    first, other, again = (replace(s, wall_s=0.0) for s in run_jobs(jobs, workers=1))
    assert first == again != other
    # Engines are cyclic garbage once a run ends; the next run must not build beside them.
    assert not any(isinstance(o, Engine) for o in gc.get_objects())
