"""The RQ worker: jobs run in the worker process (models, the image fetcher and the embedding-cache connection stay
open between jobs), with a heartbeat thread so that a worker killed mid-job is noticed within a minute instead of
after the job timeout. The shared resources are closed when the worker stops, after its last job and heartbeat."""

from __future__ import annotations

import threading

from rq import SimpleWorker
from rq.job import Job
from rq.queue import Queue
from rq.worker import WorkerStatus

from serving.resources import close_process_resources
from training.queue import JobSerializer

HEARTBEAT_INTERVAL = 10  # seconds between heartbeats while a job runs
HEARTBEAT_TTL = 45  # a job whose heartbeat is older than this counts as abandoned
# Maintenance is when an idle worker takes over the scheduler lock that a killed worker held (it expires after about
# a minute). RQ runs it every 10 minutes, and an idle worker only between blocking waits of its TTL minus 15 s (405 s
# by default), so debounced training jobs could wait 10 minutes for a scheduler; here it runs every 30 s.
MAINTENANCE_INTERVAL = 30
WORKER_TTL = MAINTENANCE_INTERVAL + 15


class HeartbeatWorker(SimpleWorker):
    def __init__(self, *args, serializer=JobSerializer, **kwargs):
        super().__init__(*args, serializer=serializer, **kwargs)

    def get_heartbeat_ttl(self, job: Job) -> int:
        return HEARTBEAT_TTL

    def execute_job(self, job: Job, queue: Queue) -> None:
        self.prepare_execution(job)
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job, stop), name="heartbeat", daemon=True)
        beat.start()
        try:
            self.perform_job(job, queue)
        finally:
            stop.set()
            beat.join()
        self.set_state(WorkerStatus.IDLE)

    def teardown(self) -> None:
        """After the last job (its heartbeat thread joined): close what the jobs shared (serving.resources)."""
        try:
            super().teardown()
        finally:
            close_process_resources()

    def _beat(self, job: Job, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_INTERVAL):
            execution = self.execution
            if execution is None:
                continue
            with self.connection.pipeline() as pipeline:
                execution.heartbeat(job.started_job_registry, HEARTBEAT_TTL, pipeline)
                self.heartbeat(pipeline=pipeline)
                pipeline.execute()
