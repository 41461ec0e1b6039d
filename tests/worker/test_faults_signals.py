"""Signals to real ``registry-worker`` processes behind a real ``registry serve`` (3 s lease,
1 s reaper) with a real MLflow store, on SQLite and PostgreSQL: nothing lost, nothing doubled.

- SIGSTOP past the lease, then SIGCONT: the service reaps the frozen worker's lease, another
  worker claims the run and resumes it from the frozen worker's checkpoint; woken, the frozen
  worker stops the run at its next step (a whole lease passed without an accepted renewal:
  self-fencing), its release gets 409, and it reports nothing. One result, as attempt 2.

(kill -9 is ``test_resume_e2e.py``'s; SIGTERM is ``tests/test_end_to_end.py``'s.)
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.settings import Settings
from tests.support.faults import LEASE_S, RUN_TIMEOUT, Stack, logged_at, since, start_stack
from tests.support.procs import wait_for

pytestmark = pytest.mark.slow

#: Long enough that the frozen worker cannot finish before it is frozen; checkpoints often.
TRAINING = {"num_training_steps": 60, "eval_every_steps": 60, "checkpoint_every_steps": 10}


@pytest.fixture
def stack(settings: Settings, tokens: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    started = start_stack(settings, tokens, tmp_path)
    yield started
    started.stop()


def test_sigstop_past_the_lease_then_sigcont_abandons_the_run_and_another_finishes_it(
    stack: Stack,
) -> None:
    stack.register("tiny", **TRAINING)
    run_id = stack.queue("tiny")
    frozen = stack.worker("w1", "--max-runs", "1")
    stack.wait_run(run_id, "claimed by w1", lambda r: r["worker"] == "w1")
    other = stack.worker("w2", "--max-runs", "1")  # warms up and waits for work
    step = wait_for(lambda: stack.checkpointed("tiny", run_id), RUN_TIMEOUT, "a checkpoint")
    frozen.signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    stack.wait_run(run_id, "reaped", lambda r: r["attempt"] == 2, timeout=LEASE_S + 10)
    reaped_s = since(stopped_at)
    stack.wait_run(run_id, "claimed by w2", lambda r: r["worker"] == "w2")
    woken_at = time.time()
    frozen.signal(signal.SIGCONT)

    assert frozen.wait(60) == 0, frozen.output()
    # It decides at once (a lease passed since the last accepted renewal), within one beat,
    # and stops at the end of the step it was frozen in.
    abandoned_s = logged_at(frozen, "stopping it (self-fencing)") - woken_at
    assert abandoned_s < LEASE_S / 3 + 0.5, frozen.output()
    stopped_s = logged_at(frozen, f"run={run_id} stopped: unreachable") - woken_at
    assert f"run={run_id}: release refused (409" in frozen.output()
    assert f"run={run_id} reported" not in frozen.output()
    stack.wait_run(run_id, "succeeded", lambda r: r["status"] == "succeeded")
    assert other.wait(60) == 0, other.output()
    done = stack.assert_one_result("tiny", run_id, attempt=2)
    assert done["worker"] == "w2"
    assert done["provenance"]["resumed_from"]["attempt"] == 1
    assert done["provenance"]["resumed_from"]["step"] >= step
    print(
        f"reaped {reaped_s:.1f}s after SIGSTOP; after SIGCONT: abandoned at {abandoned_s:.2f}s, "
        f"stopped at {stopped_s:.2f}s"
    )
