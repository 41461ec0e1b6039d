"""Metrics on their way to the tracking server: buffered, sent in batches by a thread of their
own, kept and retried with backoff while the server is down, never dropped.

Training adds values and goes on; it never waits for the tracking server, except when the
buffer is full (``limit`` values: then it waits for room, which bounds the memory) and at the
points where everything so far must be stored (``flush``: before a checkpoint and at the end of
the run). A batch is removed from the buffer only once the server accepted it; one that fails
is sent again, whole, after a backoff of 1 s doubling to 30 s. MLflow drops a metric value that
it already holds (same key, value, step and timestamp), so a batch sent twice, because an answer
was lost on the way, is stored once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

#: Sends one batch of metric values to the tracking server; raises when it was not stored.
SendBatch = Callable[[list[Any]], None]


class TrackingUnavailable(RuntimeError):
    """The tracking server did not accept buffered metrics in time; they are still buffered."""


class MetricBuffer:
    """The values of one tracked run, sent in order by a background thread."""

    def __init__(
        self,
        send: SendBatch,
        *,
        batch: int = 1000,
        every_s: float = 5.0,
        limit: int = 200_000,
        retry_min_s: float = 1.0,
        retry_max_s: float = 30.0,
    ) -> None:
        self._send, self.batch, self.every_s, self.limit = send, batch, every_s, limit
        self.retry_min_s, self.retry_max_s = retry_min_s, retry_max_s
        self._values: deque[Any] = deque()
        self._cond = threading.Condition()
        self._urgent = False
        self._closed = False
        self._first_at: float | None = None  # when the oldest waiting value was added
        self._retry_at = 0.0
        self._delay = retry_min_s
        #: Failed sends so far (a batch retried three times counts three).
        self.failures = 0
        self._thread = threading.Thread(target=self._loop, name="metric-sender", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Values not yet stored by the server."""
        with self._cond:
            return len(self._values)

    def add(self, values: Iterable[Any], wait_s: float) -> None:
        """Queue ``values``; with the buffer full, wait up to ``wait_s`` for room (then
        TrackingUnavailable: nothing is dropped, training must not outrun the memory)."""
        items = list(values)
        with self._cond:
            if len(self._values) + len(items) > self.limit:
                log.warning(
                    "metric buffer full (%d values); waiting for the tracking server", self.limit
                )
                self._urgent = True
                self._cond.notify_all()
                room = self._cond.wait_for(
                    lambda: len(self._values) + len(items) <= self.limit, wait_s
                )
                if not room:
                    raise TrackingUnavailable(
                        f"the tracking server took no metrics for {wait_s:.0f}s and "
                        f"{len(self._values)} values wait for it"
                    )
            was_empty = not self._values
            if self._first_at is None:
                self._first_at = time.monotonic()
            self._values.extend(items)
            if was_empty or len(self._values) >= self.batch:
                self._cond.notify_all()  # the thread sets its timer, or sends a full batch

    def flush(self, wait_s: float) -> None:
        """Send everything now; return once the server stored it all, or raise
        TrackingUnavailable after ``wait_s`` (the values stay buffered and are retried)."""
        with self._cond:
            self._urgent, self._retry_at = True, 0.0  # the caller waits: try again at once
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: not self._values, wait_s):
                raise TrackingUnavailable(
                    f"{len(self._values)} metric values not stored after {wait_s:.0f}s "
                    f"({self.failures} failed sends); they stay buffered"
                )

    def close(self) -> int:
        """Stop the thread; returns how many values it leaves unsent (logged as an error)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=60)
        left = self.pending
        if left:
            log.error("%d metric values were never stored by the tracking server", left)
        return left

    # -- the sending thread ----------------------------------------------------------------

    def _due(self) -> bool:
        if not self._values or time.monotonic() < self._retry_at:
            return False
        if self._urgent or len(self._values) >= self.batch:
            return True
        return self._first_at is not None and time.monotonic() - self._first_at >= self.every_s

    def _next_wake(self) -> float | None:
        if not self._values:
            return None
        now = time.monotonic()
        if now < self._retry_at:
            return self._retry_at - now
        return max(0.01, (self._first_at or now) + self.every_s - now)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._due():
                    self._cond.wait(self._next_wake())
                if self._closed:
                    return
                chunk = [self._values[i] for i in range(min(self.batch, len(self._values)))]
            self._send_one(chunk)

    def _send_one(self, chunk: list[Any]) -> None:
        try:
            self._send(chunk)
        except Exception as exc:  # any failure: the batch stays and is sent again later
            with self._cond:
                self.failures += 1
                self._retry_at = time.monotonic() + self._delay
                log.warning(
                    "tracking server refused %d metric values (%s); %d buffered, retry in %.0fs",
                    len(chunk),
                    exc.__class__.__name__,
                    len(self._values),
                    self._delay,
                )
                self._delay = min(self._delay * 2, self.retry_max_s)
            return
        with self._cond:
            for _ in chunk:
                self._values.popleft()
            self._delay = self.retry_min_s
            self._first_at = time.monotonic() if self._values else None
            if not self._values:
                self._urgent = False
            self._cond.notify_all()
