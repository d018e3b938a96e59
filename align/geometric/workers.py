"""Independent searches run side by side on the machine's cores.

Most of an anchor start (scikit-learn's k-means on a few thousand rows, SciPy's quadratic assignment, Python loops
over subsample rounds) keeps one core busy whatever the thread settings, so two starts on two cores take the time
of one. They run in joblib's worker processes (the work holds the GIL for much of its time, so threads would not
overlap; loky's workers are spawned fresh, never forked from a process whose OpenMP pool has started, do not
re-run the caller's script, and are reused by later calls), each with an equal share of the cores for its BLAS
and OpenMP threads. The calls must not depend on each other or on shared random state: each carries its own
seed, so the outcome is the same whether they run side by side or one after another.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from joblib import Parallel, delayed


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_side_by_side(fn: Callable, calls: Sequence[tuple], workers: int) -> list:
    """`[fn(*args) for args in calls]`, up to `workers` of them at a time in worker processes (one at a time: here).
    `fn` and its arguments and results must be picklable."""
    workers = max(1, min(workers, len(calls), available_cores()))
    if workers == 1:
        return [fn(*args) for args in calls]
    threads = max(1, available_cores() // workers)
    return Parallel(n_jobs=workers, backend="loky", inner_max_num_threads=threads)(
        delayed(fn)(*args) for args in calls)
