"""Independent runs side by side, one per process.

Theory of operation: a run is single-threaded and shares nothing with another run (each draws
its own world from its seed), so a batch of :class:`Job` maps onto a process pool. Workers
return the small :class:`~murmur.sim.results.RunSummary`, not the whole record, and results come
back in job order, so the figures do not depend on the number of workers. With one worker (or
one job) the jobs run in this process and report progress per transaction; in a pool progress
is reported per finished job.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from murmur.sim.protocols import HostedKit, ProtocolKit
from murmur.sim.results import RunSummary, summarise
from murmur.sim.scenario import Scenario, draw_world, simulate

JobProgress = Callable[["Job", int, int], None]
"""Called with (job, done, total): transactions in-process, 1 of 1 when a pooled job ends."""


@dataclass(frozen=True, slots=True)
class Job:
    scenario: Scenario
    kit: ProtocolKit | HostedKit
    seed: int
    label: str


def run_job(job: Job, progress: JobProgress | None = None) -> RunSummary:
    world = draw_world(job.scenario, job.seed)
    report = None if progress is None else (lambda done, total: progress(job, done, total))
    if isinstance(job.kit, HostedKit):
        summary = summarise(job.kit.run(world, job.scenario, progress=report))
    else:
        summary = summarise(simulate(world, job.kit, job.scenario, progress=report))
    # The run's engine is garbage in reference cycles (its handlers close over it), and the
    # engine collects rarely while it runs (GC_YOUNG_THRESHOLD): free it before the next job
    # builds its own, or two runs' worth of nodes are alive at once.
    gc.collect()
    return summary


def run_jobs(
    jobs: Sequence[Job], *, workers: int = 1, progress: JobProgress | None = None
) -> list[RunSummary]:
    if workers <= 1 or len(jobs) <= 1:
        return [run_job(job, progress) for job in jobs]
    results: list[RunSummary | None] = [None] * len(jobs)
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        futures = {pool.submit(run_job, job): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            index = futures[future]
            results[index] = future.result()
            if progress is not None:
                progress(jobs[index], 1, 1)
    return [r for r in results if r is not None]
