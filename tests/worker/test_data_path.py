"""The data path without host syncs (issue 12): batches gathered where the token ids live,
identical to the row-by-row windows they replace; throughput measured after warm-up."""

from __future__ import annotations

import time

import torch

from tests.support.worker import splits_of, tiny_doc
from worker import data
from worker.reporting import WARMUP_STEPS, Clock


def _by_rows(ids: torch.Tensor, starts: list[int], length: int) -> torch.Tensor:
    return torch.stack([ids[s : s + length] for s in starts])  # the loop's old way


def test_a_batch_is_the_same_windows_the_rows_gave() -> None:
    ids = torch.randint(0, 259, (5_000,))
    x, y = data.get_batch(ids, 6, 32, torch.Generator().manual_seed(7))
    starts = torch.randint(5_000 - 33, (6,), generator=torch.Generator().manual_seed(7))
    windows = _by_rows(ids, starts.tolist(), 33)
    assert torch.equal(x, windows[:, :-1]) and torch.equal(y, windows[:, 1:])
    assert x.dtype == torch.int64 and x.device == ids.device


def test_evaluation_windows_are_the_same_fixed_rows() -> None:
    ids = torch.randint(0, 259, (1_000,))
    got = list(data.eval_batches(ids, 4, 16, max_batches=3))
    assert len(got) == 3
    for i, (x, y) in enumerate(got):
        starts = [(i * 4 + k) * 16 for k in range(4)]
        windows = _by_rows(ids, starts, 17)
        assert torch.equal(x, windows[:, :-1]) and torch.equal(y, windows[:, 1:])


def test_on_the_cpu_the_splits_stay_as_they_are() -> None:
    splits = splits_of(tiny_doc())
    assert splits.on("cpu") is splits


def test_throughput_counts_only_the_steps_after_the_warm_up() -> None:
    clock = Clock()
    assert clock.tokens_per_second(1, 100) > 0  # before the mark: the whole attempt
    time.sleep(0.2)  # a slow first steps (CUDA start-up, compilation)
    clock.mark(WARMUP_STEPS)
    time.sleep(0.05)
    after = clock.tokens_per_second(WARMUP_STEPS + 2, 1_000)
    assert 2_000 / 0.2 < after <= 2_000 / 0.05  # 2 steps over ~0.05 s, not over 0.25 s
    clock.pause()
    frozen = clock.now()
    time.sleep(0.02)
    assert clock.now() == frozen  # paused: no time passes
