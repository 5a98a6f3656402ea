"""The Celery app a ventureloop worker runs:
`dagster-celery worker start -A orchestration.celery_app -i orchestration.definitions`.

dagster_celery's own `dagster_celery.app` reads its broker from a YAML file (`-y`); this one reads
the variables the executor is configured from (orchestration/wiring.py: DAGSTER_CELERY_BROKER_URL,
DAGSTER_CELERY_BACKEND_URL, DAGSTER_CELERY_QUEUE), so a worker and the runs that submit to it agree
by construction. A task names its job by code pointer and its run by instance ref: the worker imports
the code location per task with its own environment (WAREHOUSE_URL, DAGSTER_POSTGRES_URL, ...),
which must match the daemon's."""

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task, create_task
from kombu import Queue

from orchestration.wiring import celery_settings

settings = celery_settings()
app = make_app(
    CeleryExecutor.for_cli(
        broker=settings.broker_url,
        backend=settings.backend_url,
        config_source={"task_default_queue": settings.queue},
    ).app_args()
)
# make_app declares only the queue `dagster`; a worker started without -q listens on the declared
# queues, so declare the configured one instead (the same routing as make_app's).
app.conf.task_queues = [
    Queue(settings.queue, routing_key=f"{settings.queue}.#", queue_arguments={"x-max-priority": 10})
]

execute_plan = create_task(app)
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)
