"""``registry-worker``: register -> signals -> loop(claim -> run -> report), until stopped.

Read ``Daemon.work`` top to bottom. Stopping: the first SIGTERM/SIGINT is a warm stop (the
run stops at its next step, its MLflow run is marked KILLED and the run is handed back to the
queue at once); the second exits at once. SIGUSR1 (or ``registry-worker --drain --pid-file F``)
drains: no new claim, the current run finishes and is reported, exit 0. Errors are caught only
at the run boundary and recorded on the run. The worker speaks to the service over HTTP only.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry import errors
from registry.client import API, Client
from registry.settings import Settings
from worker import devices
from worker.failures import DEVICE_ATTEMPTS, DEVICE_EXIT, describe_error, is_device_fatal
from worker.heartbeat import Heartbeat, Progress
from worker.lost import InFlight, close_earlier_attempts
from worker.memory import Memory
from worker.outbox import Outbox, default_dir
from worker.signals import PidFile, PidFileError, StopSignal, drain

log = logging.getLogger("worker")

Execute = Callable[..., Any]


@dataclass
class Options:
    """What the command line decides."""

    queues: list[str] = field(default_factory=lambda: ["default"])
    once: bool = False
    max_runs: int | None = None
    state_dir: Path = field(default_factory=lambda: default_dir().parent)
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    poll_min: float = 0.5
    poll_max: float = 10.0
    #: The GPUs this daemon owns, sent with each claim (CONTRACT 5.7); None on the CPU.
    devices: int | None = None


class Daemon:
    """One worker process: claims runs of its queues one at a time and reports them."""

    def __init__(
        self,
        client: Client,
        beat_client: Client,
        execute: Execute,
        tracker: Any,
        device: str,
        options: Options,
        stop: StopSignal | None = None,
    ) -> None:
        self.client, self.beat_client = client, beat_client
        self.execute, self.tracker, self.device, self.options = execute, tracker, device, options
        self.stop = stop or StopSignal()
        self.outbox = Outbox(options.state_dir / "outbox")
        self.in_flight = InFlight(options.state_dir)
        self.runs_done = 0
        #: A device error that poisoned this process's CUDA context: the daemon must exit.
        self.device_failure: BaseException | None = None
        self.memory = Memory(device)

    # -- the loop ------------------------------------------------------------------------

    def work(self) -> int:
        """Register, send what the outbox holds, then claim and run until told to stop."""
        if not self.register():
            return 0  # stopped before the service answered
        self.flush_outbox()
        self.in_flight.close_orphan(self.tracker)  # a predecessor killed mid-run
        baseline = self.memory.allocated()  # what the daemon holds between runs
        delay = self.options.poll_min
        while self.stop.claiming:  # a warm stop or a drain ends the loop here
            job = self.claim()
            if job is None:
                if self.options.once:
                    log.info("queue empty; --once: exiting")
                    break
                self.stop.wake.wait(delay)
                delay = min(delay * 2, self.options.poll_max)
                continue
            delay = self.options.poll_min
            self.perform(job)
            self.runs_done += 1
            if self.device_failure is not None:  # a fresh process gets a fresh CUDA context
                log.error("device error: exiting %d for the supervisor to restart", DEVICE_EXIT)
                return DEVICE_EXIT
            self.memory.after_run(baseline)
            if self.options.once or self.runs_done == self.options.max_runs:
                break
        log.info("worker %s stopping after %d run(s)", self.options.name, self.runs_done)
        return 0

    def register(self) -> bool:
        """Announce this worker; retried with backoff until it answers or we are stopped."""
        body = {
            "worker": self.options.name,
            "host": socket.gethostname(),
            "devices": devices.describe_device(self.device),
            "queues": self.options.queues,
        }
        return self._with_backoff("register", lambda: self._post("/workers/register", body))

    def flush_outbox(self) -> None:
        """Deliver results kept from earlier runs (this process's or a previous one's)."""
        waiting = self.outbox.flush(self._send_complete)
        if waiting:
            log.warning("%d result(s) still waiting in %s", waiting, self.outbox.directory)

    def claim(self) -> dict[str, Any] | None:
        """One claim; None when the queue is empty or the service is unreachable."""
        body: dict[str, Any] = {"worker": self.options.name, "queues": self.options.queues}
        if self.options.devices is not None:
            body["devices"] = self.options.devices  # runs needing more GPUs stay for others
        try:
            job = self._post("/workers/claim", body)
        except errors.RegistryError as exc:
            if not transient(exc):
                raise
            log.warning("claim failed: %s", exc.message)
            return None
        if job is not None:
            job["claimed_at"] = time.monotonic()
            run = job["run"]
            log.info(
                "claimed run=%s attempt=%s kind=%s config=%s@%s",
                run["id"],
                run.get("attempt"),
                run["kind"],
                run["config"],
                run["version"],
            )
        return job

    def perform(self, job: dict[str, Any]) -> None:
        """Run one claimed job under a heartbeat; report, release or abandon it."""
        run_id, lease = int(job["run"]["id"]), str(job["lease"])
        progress = Progress(job)
        beat = Heartbeat(
            lambda rid, body: self._post(f"/runs/{rid}/heartbeat", body, client=self.beat_client),
            run_id,
            lease,
            float(job.get("lease_seconds") or 60),
            progress.latest,
        )
        workdir = Path(tempfile.mkdtemp(prefix=f"run-{run_id}-", dir=self._workdirs()))
        try:
            with beat:
                close_earlier_attempts(self.tracker, job)
                report = self._execute(job, beat, self.in_flight.watch(job, progress), workdir)
        finally:
            self.in_flight.clear()  # execute ended its MLflow run, whatever happened
            shutil.rmtree(workdir, ignore_errors=True)
        if report is not None:
            self.report(run_id, report)  # delivered only while the lease is current (409: dropped)
        elif beat.lost in (None, "unreachable"):  # cut off: hand back if it was not reaped yet
            self.release(run_id, lease)

    def _execute(
        self, job: dict[str, Any], beat: Heartbeat, progress: Callable[..., None], workdir: Path
    ) -> dict[str, Any] | None:
        """The completion to report, or None when the run was stopped without a result."""
        from worker.training import Stopped

        lease = str(job["lease"])  # opaque: sent back exactly as the claim answered it

        def should_stop() -> bool:  # beat.check(): also self-fencing when cut off too long
            return self.stop.event.is_set() or beat.check() is not None

        try:
            result = self.execute(job, self.tracker, self.device, should_stop, progress, workdir)
        except Stopped as exc:
            log.info("run=%s stopped: %s", job["run"]["id"], beat.lost or "worker stopping")
            if beat.lost == "cancelled":
                return _report(lease, "cancelled", exc, {"kind": "cancelled", "message": str(exc)})
            return None
        except Exception as exc:  # the run boundary: any failure is recorded on the run
            log.exception("run=%s failed", job["run"]["id"])
            if is_device_fatal(exc):  # the device failed, not the run: hand it back, then exit
                self.device_failure = exc
                if int(job["run"].get("attempt") or 1) < DEVICE_ATTEMPTS:
                    return None  # released; the last attempt is reported failed instead
            return _report(lease, "failed", exc, describe_error(exc, job.get("config")))
        return {
            "lease": lease,
            "status": result.status,
            "metrics": result.metrics,
            "mlflow_run_id": result.mlflow_run_id,
            "provenance": result.provenance,
        }

    def report(self, run_id: int, body: dict[str, Any]) -> None:
        """Keep the result on disk, then deliver it; retried until accepted or stopped."""
        entry = self.outbox.put(run_id, body)
        delivered = self._with_backoff(
            f"report run={run_id}", lambda: self.outbox.deliver(entry, self._send_complete)
        )
        if delivered:
            log.info("run=%s reported %s", run_id, body["status"])
        else:
            log.warning("run=%s: result kept in %s for the next start", run_id, entry.path)

    def release(self, run_id: int, lease: str) -> None:
        """Hand the run back to the queue now (a warm stop); its lease expires otherwise."""
        try:
            self._post(f"/runs/{run_id}/release", {"lease": lease})
            log.info("run=%s released to the queue", run_id)
        except errors.Conflict as exc:  # reaped (and perhaps claimed again): not ours any more
            log.warning("run=%s: release refused (409 %s): %s", run_id, exc.code, exc.message)
        except errors.RegistryError as exc:
            log.warning("run=%s: release failed (%s); the lease will expire", run_id, exc.message)

    # -- plumbing ------------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any], client: Client | None = None) -> Any:
        return (client or self.client).request("POST", API + path, json=body)

    def _send_complete(self, run_id: int, body: dict[str, Any]) -> Any:
        return self._post(f"/runs/{run_id}/complete", body)

    def _with_backoff(self, what: str, attempt: Callable[[], Any]) -> bool:
        """Call ``attempt`` until it succeeds (truthy or no error), backing off while the
        service is unreachable or failing; False when stopped first."""
        delay = self.options.poll_min
        while True:
            try:
                if attempt() is not False:
                    return True
            except errors.RegistryError as exc:
                if not transient(exc):
                    raise
                log.warning("%s: %s; retrying in %.1fs", what, exc.message, delay)
            if self.stop.event.wait(delay):
                return False
            delay = min(delay * 2, self.options.poll_max)

    def _workdirs(self) -> Path:
        path = self.options.state_dir / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path


def transient(exc: errors.RegistryError) -> bool:
    """An error worth retrying: the service is unreachable or failing (5xx)."""
    return isinstance(exc, errors.Unavailable) or exc.status >= 500


def _report(lease: str, status: str, exc: BaseException, error: dict[str, Any]) -> dict[str, Any]:
    return {
        "lease": lease,
        "status": status,
        "metrics": {},
        "mlflow_run_id": getattr(exc, "mlflow_run_id", None),
        "error": error,
    }


def warm_up(settings: Settings) -> tuple[Execute, Any]:
    """Import torch, transformers and MLflow once per daemon and open the tracking store."""
    started = time.monotonic()
    from transformers import DeepseekV2ForCausalLM, LlamaForCausalLM  # noqa: F401

    from worker.execute import execute
    from worker.tracking import MlflowTracker

    tracker = MlflowTracker(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
    tracker.client.search_experiments(max_results=1)  # creates a fresh store's tables now
    log.info("warm: imports and MLflow store ready in %.1fs", time.monotonic() - started)
    data_root = Path(settings.data_root).resolve()  # fixed now: a later chdir cannot move it
    log.info("file: datasets are read from %s (REGISTRY_DATA_ROOT) and nowhere else", data_root)
    return functools.partial(execute, data_root=data_root), tracker


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="registry-worker", description=__doc__.splitlines()[0])
    p.add_argument("--server", metavar="URL", help="the registry (default $REGISTRY_URL)")
    p.add_argument("--token", metavar="T", help="a worker token (default $REGISTRY_TOKEN)")
    p.add_argument(
        "--queue",
        action="append",
        dest="queues",
        metavar="Q",
        help="a queue to serve (repeatable; default: default)",
    )
    p.add_argument("--once", action="store_true", help="exit after one run or an empty queue")
    p.add_argument("--max-runs", type=int, metavar="N", help="exit after N runs")
    p.add_argument(
        "--gpus",
        metavar="IDS",
        help="the GPUs this daemon owns, e.g. 0 or 2,3, or none (default $CUDA_VISIBLE_DEVICES)",
    )
    p.add_argument(
        "--state-dir", type=Path, help="outbox and work folders (default ~/.cache/config-registry)"
    )
    p.add_argument("--name", help="this worker's id (default host-pid)")
    p.add_argument("--pid-file", type=Path, help="hold this pid file (what --drain reads)")
    p.add_argument(
        "--drain",
        action="store_true",
        help="tell the daemon holding --pid-file to finish its run and exit (SIGUSR1), then return",
    )
    p.add_argument("--poll-max", type=float, default=10.0, help="longest idle wait, seconds")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """The ``registry-worker`` command."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if args.drain:
        return drain(args.pid_file)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the worker never downloads models
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    options = Options(
        queues=args.queues or ["default"],
        once=args.once,
        max_runs=args.max_runs,
        poll_max=args.poll_max,
    )
    if args.state_dir:
        options.state_dir = args.state_dir
    if args.name:
        options.name = args.name
    stop = StopSignal()
    stop.install()
    try:
        with PidFile(args.pid_file) if args.pid_file else contextlib.nullcontext():
            return serve(args, settings, options, stop)
    except PidFileError as exc:
        log.error("%s", exc)
        return 2


def serve(args: argparse.Namespace, settings: Settings, options: Options, stop: StopSignal) -> int:
    """Warm up, then run the daemon until it stops; 2 when the service refuses it."""
    try:  # before anything starts CUDA: the GPUs it sees are fixed then
        group = devices.select(args.gpus, os.environ)
        devices.apply(group)
        device = devices.choose_device(group)
    except devices.DeviceListError as exc:
        log.error("%s", exc)
        return 2
    options.devices = devices.claim_devices(device)
    execute, tracker = warm_up(settings)
    server, token = args.server or settings.server_url, args.token or settings.token
    with Client(server, token) as client, Client(server, token, timeout=10.0) as beats:
        log.info("worker %s on %s serving %s from %s", options.name, device, options.queues, server)
        try:
            return Daemon(client, beats, execute, tracker, device, options, stop).work()
        except errors.RegistryError as exc:
            log.error("%s (%s)", exc.message, exc.code)
            return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
