"""Memory bookkeeping of a long-lived daemon: per-phase peaks, and clean hands between runs.

On CUDA each phase (training, then sampling; or the evaluation of an evaluate run) starts by
resetting the peak statistics, so that no run reports another run's (or phase's) peak, and
ends by reading both the allocated peak (what tensors held) and the reserved peak (what the
caching allocator took from the GPU, which is what runs out). Between runs the daemon frees
the cache and checks that allocated memory is back to what it held before its first run.
On the CPU only ``peak_memory_mb`` is reported: the process's peak resident set size, which
cannot be reset. Every torch.cuda call sits behind :attr:`Memory.on_cuda`.
"""

from __future__ import annotations

import gc
import logging
import resource
from typing import Any

log = logging.getLogger(__name__)

MIB = 2**20
#: Allocated memory above the baseline that the check after a run tolerates (cuBLAS and
#: cuDNN workspaces and the like stay allocated once created).
SLACK_MB = 64.0


def cpu_peak_mb() -> float:
    """The process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Memory:
    """The memory calls one daemon makes on its device; ``cuda`` is torch.cuda."""

    def __init__(self, device: str, cuda: Any = None) -> None:
        self.device = device
        if cuda is None and device.startswith("cuda"):
            import torch

            cuda = torch.cuda
        self.cuda = cuda
        self.on_cuda = bool(device.startswith("cuda") and cuda is not None and cuda.is_available())

    def start_phase(self) -> None:
        """Reset the peak statistics: what follows is measured alone."""
        if self.on_cuda:
            self.cuda.reset_peak_memory_stats(self.device)

    def peaks(self, prefix: str = "") -> dict[str, float]:
        """``{prefix}peak_memory_allocated_mb`` and ``..._reserved_mb`` since the phase began
        (CUDA); on the CPU ``{}`` (see :func:`cpu_peak_mb`)."""
        if not self.on_cuda:
            return {}
        return {
            f"{prefix}peak_memory_allocated_mb": self.cuda.max_memory_allocated(self.device) / MIB,
            f"{prefix}peak_memory_reserved_mb": self.cuda.max_memory_reserved(self.device) / MIB,
        }

    def peak_mb(self) -> float:
        """The compatible ``peak_memory_mb``: the allocated peak on CUDA, peak RSS on the CPU."""
        if self.on_cuda:
            return float(self.cuda.max_memory_allocated(self.device)) / MIB
        return cpu_peak_mb()

    def allocated(self) -> int:
        """Bytes tensors hold on the device now (0 on the CPU)."""
        return int(self.cuda.memory_allocated(self.device)) if self.on_cuda else 0

    def free(self) -> int:
        """Collect garbage and give the allocator's cached blocks back; bytes still allocated."""
        gc.collect()
        if not self.on_cuda:
            return 0
        self.cuda.empty_cache()
        return self.allocated()

    def after_run(self, baseline: int) -> bool:
        """Free, then check allocated memory is back to ``baseline``; a warning when not."""
        left = self.free()
        if left - baseline <= SLACK_MB * MIB:
            return True
        log.warning(
            "%.0f MiB still allocated on %s after the run (%.0f MiB before the first): "
            "something keeps tensors of a finished run alive",
            left / MIB,
            self.device,
            baseline / MIB,
        )
        return False
