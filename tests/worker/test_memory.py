"""The memory bookkeeping calls: which torch.cuda calls a run and the daemon make, in order
(a recording stand-in for torch.cuda, there being no GPU here), and the real CPU path."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from worker.memory import MIB, Memory, cpu_peak_mb


class RecordingCuda:
    """Answers the torch.cuda calls Memory makes and records them."""

    def __init__(self, allocated: list[int]) -> None:
        self.calls: list[str] = []
        self.allocated = allocated  # what memory_allocated answers, one value a call

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> Any:
            self.calls.append(name)
            if name == "memory_allocated":
                return self.allocated.pop(0)
            return {"max_memory_allocated": 300 * MIB, "max_memory_reserved": 512 * MIB}.get(
                name, True
            )

        return call


def test_a_run_resets_peaks_per_phase_and_the_daemon_frees_and_checks_after_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cuda = RecordingCuda(allocated=[0, 10 * MIB, 200 * MIB])
    memory = Memory("cuda:0", cuda)
    baseline = memory.allocated()  # the daemon, before its first run
    memory.start_phase()  # training
    trained = {"peak_memory_mb": memory.peak_mb(), **memory.peaks()}
    memory.start_phase()  # sampling
    sampled = memory.peaks("eval_")
    assert memory.after_run(baseline) is True  # 10 MiB left: within the slack
    with caplog.at_level(logging.WARNING, logger="worker.memory"):
        assert memory.after_run(baseline) is False  # 200 MiB left: logged
    assert "200 MiB still allocated on cuda:0" in caplog.text
    assert cuda.calls == [
        "is_available",
        "memory_allocated",
        "reset_peak_memory_stats",
        "max_memory_allocated",
        "max_memory_allocated",
        "max_memory_reserved",
        "reset_peak_memory_stats",
        "max_memory_allocated",
        "max_memory_reserved",
        "empty_cache",
        "memory_allocated",
        "empty_cache",
        "memory_allocated",
    ]
    assert trained == {
        "peak_memory_mb": 300.0,
        "peak_memory_allocated_mb": 300.0,
        "peak_memory_reserved_mb": 512.0,
    }
    assert sampled == {
        "eval_peak_memory_allocated_mb": 300.0,
        "eval_peak_memory_reserved_mb": 512.0,
    }


def test_on_the_cpu_no_cuda_call_is_made_and_the_peak_is_the_processes() -> None:
    import torch

    memory = Memory("cpu")
    assert memory.on_cuda is False and memory.cuda is None
    memory.start_phase()
    block = torch.ones(4 * MIB // 4)  # 4 MiB that the peak resident set includes
    assert memory.peaks() == {} and memory.allocated() == 0
    assert memory.peak_mb() == pytest.approx(cpu_peak_mb(), abs=1) and memory.peak_mb() > 4
    del block
    assert memory.free() == 0 and memory.after_run(0) is True


def test_a_cuda_device_without_cuda_makes_no_call() -> None:
    cuda = RecordingCuda(allocated=[])
    vars(cuda)["is_available"] = lambda: False  # this torch.cuda has no GPU
    memory = Memory("cuda:0", cuda)
    memory.start_phase()
    assert memory.peaks() == {} and memory.free() == 0 and cuda.calls == []


@pytest.mark.slow
def test_a_cpu_run_reports_its_peak_resident_set_and_no_cuda_peaks(trained: dict[str, Any]) -> None:
    metrics = trained["result"].metrics
    assert 0 < metrics["peak_memory_mb"] <= cpu_peak_mb()
    assert not [k for k in metrics if "allocated" in k or "reserved" in k]
