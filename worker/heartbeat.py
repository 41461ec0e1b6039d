"""The lease-renewal thread (renews every third of the lease, stops the run when it is lost)
and the run progress it carries."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from registry import errors

log = logging.getLogger(__name__)

#: Sends one heartbeat: (run id, body) -> the answer; raises the registry's typed errors.
Beat = Callable[[int, dict[str, Any]], Any]


class Heartbeat:
    """Renews one run's lease in a background thread, and reports the attempt's MLflow run.

    ``lost`` becomes ``"cancelled"`` when the service says the run was cancelled, ``"lease"``
    when the lease is no longer current (reaped, re-claimed), or ``"unreachable"`` when no
    renewal was accepted for a whole lease (self-fencing: by then the service may have given
    the run to another worker, so this one stops it by itself, see :meth:`check`); the run must
    then stop. An unreachable service is retried at the next beat until then. The first beat
    after the progress names the MLflow run (``execute`` does so as soon as it opened it) goes
    at once, and every beat from then on carries ``mlflow_run_id``.
    """

    #: How often the thread looks for a new MLflow run id between beats.
    TICK_S = 0.25

    def __init__(
        self,
        beat: Beat,
        run_id: int,
        lease: str,
        lease_seconds: float,
        progress: Callable[[], dict[str, Any] | None] = lambda: None,
    ) -> None:
        self.beat, self.run_id, self.lease = beat, run_id, lease
        self.interval = max(lease_seconds / 3.0, 0.05)
        self.lease_seconds = lease_seconds
        self.progress = progress
        self.lost: str | None = None
        #: The MLflow run id last sent (every beat after the first one that knows it sends it).
        self._announced: str | None = None
        #: When the last accepted renewal (or the claim) was sent: the lease runs from there.
        self.renewed_at = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"heartbeat-run-{run_id}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop beating and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def check(self) -> str | None:
        """Why the run must stop, or None; ``"unreachable"`` once a whole lease has passed since
        the last accepted renewal was sent (also while a beat hangs on a cut-off network)."""
        if self.lost is None and time.monotonic() - self.renewed_at > self.lease_seconds:
            self.lost = "unreachable"
            log.warning(
                "run %s: no renewal accepted for %.0fs (the lease); stopping it (self-fencing)",
                self.run_id,
                self.lease_seconds,
            )
        return self.lost

    def _loop(self) -> None:
        due = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, min(self.TICK_S, due - time.monotonic()))):
            if time.monotonic() < due and not self._new_mlflow_run():
                continue
            if not self.beat_once():
                return
            due = time.monotonic() + self.interval

    def _new_mlflow_run(self) -> bool:
        """True once when the progress first names an MLflow run: it is sent at once, so the
        run page shows the curves from the start, not a third of a lease later."""
        found = (self.progress() or {}).get("mlflow_run_id")
        return found is not None and found != self._announced

    def beat_once(self) -> bool:
        """One renewal; False when the run must stop (the lease is gone)."""
        if self.check() is not None:
            return False
        body: dict[str, Any] = {"lease": self.lease}
        progress = self.progress()
        if progress is not None:
            body["progress"] = progress
            if isinstance(progress.get("mlflow_run_id"), str):
                body["mlflow_run_id"] = self._announced = progress["mlflow_run_id"]
        sent_at = time.monotonic()
        try:
            self.beat(self.run_id, body)
            self.renewed_at = sent_at
        except errors.Conflict as exc:
            self.lost = "cancelled" if exc.extra.get("cancel_requested") else "lease"
            log.warning("run %s: %s; stopping it", self.run_id, exc.message)
            return False
        except errors.RegistryError as exc:
            log.warning("run %s: heartbeat failed (%s); retrying", self.run_id, exc.message)
        return True


class Progress:
    """The run's latest progress (sent with heartbeats), logged, and claim->first-step timed."""

    LOG_EVERY_S = 10.0

    def __init__(self, job: Mapping[str, Any]) -> None:
        self.job = job
        self.info: dict[str, Any] | None = None
        self.first_step_s: float | None = None
        self._logged_at = 0.0
        self._phase: str | None = None

    def __call__(self, info: dict[str, Any]) -> None:
        self.info = {k: v for k, v in info.items() if isinstance(v, str | int | float | None)}
        if self.first_step_s is None and info.get("step"):
            self.first_step_s = self._claim_to_first_step(info)
            log.info(
                "run=%s claim->first-step %.3fs (training loop start)",
                self.job["run"]["id"],
                self.first_step_s,
            )
        now = time.monotonic()
        if info.get("phase") != self._phase or now - self._logged_at >= self.LOG_EVERY_S:
            self._phase, self._logged_at = info.get("phase"), now
            fields = " ".join(f"{k}={_short(v)}" for k, v in self.info.items())
            log.info("run=%s %s", self.job["run"]["id"], fields)

    def latest(self) -> dict[str, Any] | None:
        return self.info

    def _claim_to_first_step(self, info: Mapping[str, Any]) -> float:
        """When the loop started, from the step count and throughput the first report gives."""
        now = time.monotonic()
        t, d = self.job["config"]["training"], self.job["config"]["data"]
        ranks = int((self.job["config"].get("resources") or {}).get("gpus") or 1)  # all devices'
        tokens_per_step = (
            t["per_device_train_batch_size"] * t["gradient_accumulation_steps"] * d["seq_len"]
        ) * ranks
        rate = float(info.get("tokens_per_second") or 0.0)
        in_loop = info["step"] * tokens_per_step / rate if rate > 0 else 0.0
        return max(0.0, now - in_loop - float(self.job.get("claimed_at", now)))


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
