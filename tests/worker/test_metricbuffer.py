"""MetricBuffer: batches in order, kept and retried while the server refuses them, bounded.

The sender here is a list that refuses batches while ``down`` is set (the buffer's own logic
is under test; a real MLflow server stopped and restarted mid-run is
tests/worker/test_tracking_outage.py)."""

from __future__ import annotations

import threading
import time

import pytest

from worker.metricbuffer import MetricBuffer, TrackingUnavailable


class Store:
    """Stores batches, or raises ConnectionError while ``down`` is set."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.down = threading.Event()
        self.refused = 0

    def send(self, batch: list[int]) -> None:
        if self.down.is_set():
            self.refused += 1
            raise ConnectionError("tracking server down")
        self.batches.append(list(batch))

    @property
    def values(self) -> list[int]:
        return [v for b in self.batches for v in b]


def _buffer(store: Store, **kwargs: float) -> MetricBuffer:
    options = {"batch": 4, "every_s": 60.0, "retry_min_s": 0.01, "retry_max_s": 0.05} | kwargs
    return MetricBuffer(store.send, **options)  # type: ignore[arg-type]


def test_full_batches_go_at_once_and_flush_sends_the_rest_in_order() -> None:
    store = Store()
    buffer = _buffer(store)
    buffer.add(range(10), wait_s=1)
    buffer.flush(wait_s=5)
    assert store.values == list(range(10))
    assert all(len(b) <= 4 for b in store.batches) and buffer.pending == 0
    assert buffer.close() == 0


def test_a_partial_batch_goes_after_every_s_without_a_flush() -> None:
    store = Store()
    buffer = _buffer(store, every_s=0.1)
    buffer.add([1, 2], wait_s=1)
    deadline = time.monotonic() + 5
    while not store.batches and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.batches == [[1, 2]]
    buffer.close()


def test_values_refused_while_down_are_kept_and_arrive_once_in_order() -> None:
    store = Store()
    store.down.set()
    buffer = _buffer(store)
    started = time.monotonic()
    for step in range(12):
        buffer.add([step], wait_s=1)  # training never waits while there is room
    assert time.monotonic() - started < 1
    with pytest.raises(TrackingUnavailable, match="stay buffered"):
        buffer.flush(wait_s=0.3)
    assert buffer.pending == 12 and store.refused >= 2 and buffer.failures == store.refused
    store.down.clear()
    buffer.flush(wait_s=5)
    assert store.values == list(range(12))  # nothing lost, nothing doubled
    assert buffer.close() == 0


def test_a_full_buffer_waits_for_room_then_refuses_without_dropping() -> None:
    store = Store()
    store.down.set()
    buffer = _buffer(store, limit=6)
    buffer.add(range(6), wait_s=1)
    with pytest.raises(TrackingUnavailable, match="took no metrics"):
        buffer.add([6], wait_s=0.2)
    assert buffer.pending == 6
    threading.Timer(0.2, store.down.clear).start()
    buffer.add([6], wait_s=5)  # room once the server takes the first batch
    buffer.flush(wait_s=5)
    assert store.values == list(range(7))
    buffer.close()


def test_close_reports_what_was_never_stored() -> None:
    store = Store()
    store.down.set()
    buffer = _buffer(store)
    buffer.add([1, 2, 3], wait_s=1)
    assert buffer.close() == 3
