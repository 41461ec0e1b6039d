"""The heartbeat thread names the attempt's MLflow run: at once when the progress first knows
it, then with every beat (the real thread, recording what it sends)."""

from __future__ import annotations

import threading
import time
from typing import Any

from worker.heartbeat import Heartbeat


def test_the_first_beat_after_the_mlflow_run_is_known_goes_at_once() -> None:
    sent: list[tuple[float, dict[str, Any]]] = []
    arrived = threading.Event()
    progress: dict[str, Any] | None = None

    def beat(_run_id: int, body: dict[str, Any]) -> dict[str, Any]:
        sent.append((time.monotonic(), body))
        arrived.set()
        return {}

    with Heartbeat(beat, 7, "lease-1", 60.0, lambda: progress) as heartbeat:
        time.sleep(0.6)  # several ticks with no MLflow run yet: nothing is sent early
        assert sent == []
        progress = {"phase": "started", "mlflow_run_id": "m" * 32}
        named = time.monotonic()
        assert arrived.wait(5), "no beat after the MLflow run was named"
        assert heartbeat.interval == 20.0
    at, body = sent[0]
    assert at - named < 2.0  # one tick (0.25 s), not a third of the lease (20 s)
    assert body == {"lease": "lease-1", "progress": progress, "mlflow_run_id": "m" * 32}
    assert len(sent) == 1  # announced once; the next beat waits for its interval


def test_every_beat_carries_the_mlflow_run_once_known() -> None:
    sent: list[dict[str, Any]] = []
    heartbeat = Heartbeat(lambda _r, body: sent.append(body), 7, "l", 0.3, lambda: None)
    assert heartbeat.beat_once() and "mlflow_run_id" not in sent[-1]
    heartbeat.progress = lambda: {"step": 3, "mlflow_run_id": "abc"}
    assert heartbeat.beat_once() and heartbeat.beat_once()
    assert [b.get("mlflow_run_id") for b in sent] == [None, "abc", "abc"]
