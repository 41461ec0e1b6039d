"""A run that kills its worker every time (the test kill -9's whichever real ``registry-worker``
trains it, and restarts that worker as systemd would) ends ``failed``, "worker lost", after
three attempts, while the other queued runs keep flowing through the same workers; SQLite and
PostgreSQL, a real ``registry serve`` (3 s lease, 1 s reaper) and a real MLflow store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.settings import Settings
from tests.support.faults import RUN_TIMEOUT, Stack, kill_whoever_trains, start_stack
from tests.support.procs import wait_for

pytestmark = pytest.mark.slow

POISON = {"num_training_steps": 5000, "eval_every_steps": 5000}  # killed long before its end
FLOWING = {"num_training_steps": 10, "eval_every_steps": 10}
OTHERS = 3


@pytest.fixture
def stack(settings: Settings, tokens: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    started = start_stack(settings, tokens, tmp_path)
    yield started
    started.stop()


def test_a_run_that_kills_its_worker_every_time_fails_as_worker_lost_while_others_flow(
    stack: Stack,
) -> None:
    stack.register("poison", **POISON)
    stack.register("tiny", **FLOWING)
    poison = stack.queue("poison", priority=5)  # claimed first, every time it is queued
    others = [stack.queue("tiny") for _ in range(OTHERS)]
    for name in ("w1", "w2"):
        stack.worker(name)

    kills = kill_whoever_trains(stack, poison)
    lost = stack.run(poison)
    assert [k.attempt for k in kills] == [1, 2, 3], kills
    assert (lost["status"], lost["attempt"], lost["error"]["kind"]) == ("failed", 3, "worker_lost")
    assert "worker lost" in lost["error"]["message"]
    assert lost["metrics"] is None or lost["metrics"] == {}

    for run_id in others:
        stack.wait_run(run_id, "succeeded", lambda r: r["status"] == "succeeded")
        stack.assert_one_result("tiny", run_id, attempt=1)
    flowed = [r for r in others if stack.run(r)["finished_at"] < lost["finished_at"]]
    assert flowed, "no other run finished while the poison run was failing"

    def statuses() -> list[tuple[int, str]]:
        return [(attempt, status) for attempt, status, _ in stack.attempts("poison", poison)]

    dead = [(1, "KILLED"), (2, "KILLED"), (3, "KILLED")]  # the last by its restarted worker
    wait_for(lambda: statuses() == dead, RUN_TIMEOUT, f"MLflow runs {dead}")
    took = kills[-1].at - kills[0].at
    print(f"3 kills in {took:.1f}s; {len(flowed)} other run(s) finished meanwhile")
