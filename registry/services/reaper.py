"""The reaper: a thread that re-queues runs whose lease expired, every few seconds.

``registry serve`` starts one in each gunicorn worker (REGISTRY_REAP_INTERVAL seconds apart,
default 3; 0 starts none), so an expired lease is ``queued`` again within seconds whether or
not anyone claims or lists runs. The step itself is :func:`registry.services.queue.reap`, one
transaction per tick; several reapers (processes, hosts) are safe together: one reaps at a time
(PostgreSQL's advisory lock, SQLite's single writer) and each run's row is locked while it is.
Apps that tests build start no reaper unless a test asks for one.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from registry.db import transaction
from registry.services import lost_attempts, queue

log = logging.getLogger(__name__)


def reap_once(factory: sessionmaker[Session], mlflow_uri: str | None = None) -> list[int]:
    """One reap in its own transaction, at the database's time; the ids of the runs reaped.

    With ``mlflow_uri``, the MLflow runs of the attempts the reap finished (worker lost for
    good) are then marked KILLED (:mod:`registry.services.lost_attempts`), after the commit.
    """
    with transaction(factory) as session:
        reaped = queue.reap(session, queue.db_now(session))
        ids = [run.id for run in reaped]
        states = [f"{run.id}:{run.status}@{run.attempt}" for run in reaped]
        dead = lost_attempts.dead_mlflow_runs(reaped)
    if ids:
        log.info("reaped %d run(s) whose lease expired: %s", len(ids), " ".join(states))
    if mlflow_uri is not None:
        lost_attempts.kill_mlflow_runs(mlflow_uri, dead)
    return ids


class Reaper:
    """Calls :func:`reap_once` every ``interval`` seconds in a daemon thread until stopped."""

    def __init__(
        self, factory: sessionmaker[Session], interval: float, mlflow_uri: str | None = None
    ) -> None:
        if interval <= 0:
            raise ValueError(f"the reap interval must be > 0 seconds; got {interval}")
        self.factory, self.interval, self.mlflow_uri = factory, interval, mlflow_uri
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="registry-reaper", daemon=True)

    def start(self) -> Reaper:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current tick (if any) and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> Reaper:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                reap_once(self.factory, self.mlflow_uri)
            except Exception:  # a database down for a while must not end the reaper
                log.warning("reap failed; retrying in %.1fs", self.interval, exc_info=True)
            self.ticks += 1
