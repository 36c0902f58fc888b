"""A code location for the scale-out tests (loaded by file path in step processes, Celery workers and pods).

Two probe satellites report, through a log line, where and on what they ran: the step, its
CUDA_VISIBLE_DEVICES, pid, the Celery worker and EXO_TEST_WORKER, and their compute interval.
The clusters are the YAML files listed in EXO_TEST_CLUSTERS (os.pathsep-separated), so each test
writes its own and every process that loads this file compiles the same thing.
"""

from __future__ import annotations

import json
import os
import time

import polars as pl

from exo_dagster import SatelliteConfig, StepContext, compile_clusters, load_cluster_file, satellite
from exo_dagster.catalog.registry import Registry

PROBE = "exo-probe "
REGISTRY = Registry()


class ProbeConfig(SatelliteConfig):
    seconds: float = 0.0
    fail: bool = False


def _probe(ctx: StepContext, config: ProbeConfig) -> pl.DataFrame:
    """Works for `seconds` and logs where it ran."""
    start = time.time()
    if config.fail:
        raise RuntimeError("probe asked to fail")
    time.sleep(config.seconds)
    worker = None
    try:
        from celery import current_task

        worker = current_task.request.hostname if current_task else None
    except ImportError:
        pass
    record = {
        "step": ctx.step,
        "devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "pid": os.getpid(),
        "celery_worker": worker,
        "worker_env": os.environ.get("EXO_TEST_WORKER"),
        "start": start,
        "end": time.time(),
    }
    ctx.log.info(PROBE + json.dumps(record))
    return pl.DataFrame({k: [v] for k, v in record.items()})


satellite("satellite/exotest/gpu-probe", config=ProbeConfig, resources={"gpu": 1}, kinds=("torch",), registry=REGISTRY)(
    _probe
)
satellite("satellite/exotest/cpu-probe", config=ProbeConfig, registry=REGISTRY)(_probe)

FILES = [p for p in os.environ.get("EXO_TEST_CLUSTERS", "").split(os.pathsep) if p]
defs = compile_clusters([load_cluster_file(f, registry=REGISTRY) for f in FILES])
