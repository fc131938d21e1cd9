"""The parallel runner: many fits, in this process or on Dask workers, each model compiled once.

Calibration (:mod:`truecount.workflows.calibration`) and sensitivity
(:mod:`truecount.workflows.sensitivity`) both fit many datasets. :func:`run_tasks` maps a
picklable function over tasks, in this process (``workers == 1`` and no scheduler) or on Dask
distributed: a local cluster of ``workers`` single-threaded processes, or the existing cluster
at ``scheduler``. Results are handed to ``on_result`` as they arrive, in completion order, so the
caller can save each at once; Dask retries a task whose worker died.

:func:`compiled` is the per-process cache of compiled models that makes this cheap: the first task
a process is given for a case and spec compiles the model (10-30 s), every later task of the same
structure reuses it through :meth:`truecount.inference.fitter.Fitter.fit` (1-2 s per fit). A reading of
the case that changes only data (hours, dates) reuses the compiled model of the case itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from truecount.inputs.case import Case, load_case
from truecount.inputs.spec import load_spec

#: Compiled models of this process: (case file, spec, readings) -> (Fitter, Case).
_COMPILED: dict[tuple[str, str, tuple[str, ...]], tuple[Any, Case]] = {}


def compiled(case_path: str | os.PathLike[str], spec: str = "baseline",
             readings: tuple[str, ...] = ()) -> tuple[Any, Case]:
    """The compiled model for ``case_path`` read with ``readings`` under ``spec``, and that case.

    Built once per process. A reading whose model has the structure of the case without readings
    shares that model (only its data differ); otherwise the reading gets a model of its own.
    """
    from pathlib import Path

    from truecount.inference.fitter import Fitter, StructureError
    from truecount.inputs.spec import resolve_spec_path

    # One key however the same files are named ("baseline", "models/baseline.toml", absolute).
    case_path = str(Path(case_path).resolve())
    spec = str(resolve_spec_path(spec).resolve())
    key = (case_path, spec, tuple(readings))
    if key in _COMPILED:
        return _COMPILED[key]
    case = load_case(case_path, readings)
    if readings:
        base, _ = compiled(case_path, spec)
        try:
            base.inputs_for(case)
        except StructureError:
            pass
        else:
            _COMPILED[key] = (base, case)
            return _COMPILED[key]
    fitter = Fitter.for_case(case, load_spec(spec))
    fitter.compile()
    _COMPILED[key] = (fitter, case)
    return _COMPILED[key]


def run_tasks[T, R](function: Callable[[T], R], tasks: Sequence[T], *, workers: int = 1,
              scheduler: str | None = None,
              on_result: Callable[[R, int], None] | None = None) -> list[R]:
    """``[function(task) for task in tasks]``, in parallel; ``on_result(result, n_done)`` per result.

    Results are returned in completion order (each carries what identifies it). A task that
    raises stops the run and re-raises here, after the cluster is closed.
    """
    results: list[R] = []

    def done(result: R) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result, len(results))

    if not tasks:
        return results
    if workers == 1 and scheduler is None:
        for task in tasks:
            done(function(task))
        return results
    import logging

    from dask.distributed import Client, LocalCluster, as_completed

    # The nanny's "Worker process still alive after 4.0 seconds, killing" at shutdown is noise
    # here (the sampler's threads end with the process); keep Dask's errors only.
    dask_log = logging.getLogger("distributed")
    level = dask_log.level
    dask_log.setLevel(logging.ERROR)
    # No dashboard; the scheduler's HTTP server (which it starts anyway) on a free port, so that
    # two runs on one machine do not fight over port 8787.
    cluster = None if scheduler else LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"})
    try:
        with Client(scheduler or cluster) as client:
            futures = client.map(function, list(tasks), pure=False, retries=2)
            for future in as_completed(futures):
                done(future.result())
    finally:
        if cluster is not None:
            cluster.close()
        dask_log.setLevel(level)
    return results
