"""A code location with one small job, for tests/integration/test_celery_executor.py: loaded by
file path in the test process and again in the celery worker, each with the executor that the
environment chooses (orchestration.wiring.location), like orchestration/definitions.py."""

import os
import socket

import dagster as dg

from assets.resources import WarehouseResource
from orchestration.wiring import location


class ProbeConfig(dg.Config):
    label: str


@dg.op
def write_probe(context: dg.OpExecutionContext, config: ProbeConfig, warehouse: WarehouseResource) -> int:
    """Writes which process ran it, so that the test sees the step ran in the worker."""
    client = warehouse.client()
    client.execute("CREATE TABLE IF NOT EXISTS public.celery_probe (run_id TEXT, label TEXT, pid INT, host TEXT)")
    client.execute(
        "INSERT INTO public.celery_probe VALUES (%s, %s, %s, %s)",
        [context.run_id, config.label, os.getpid(), socket.gethostname()],
    )
    return os.getpid()


@dg.op
def count_probes(context: dg.OpExecutionContext, pid: int, warehouse: WarehouseResource) -> None:
    # Takes the first step's output: the io manager hands it between the steps' processes.
    rows = warehouse.client().scalar("SELECT count(*) FROM public.celery_probe WHERE run_id = %s", [context.run_id])
    context.log.info(f"{rows} probe row(s), first step in process {pid}")


@dg.job
def celery_probe() -> None:
    count_probes(write_probe())


defs = location(dg.Definitions(jobs=[celery_probe]))
