"""The training corpus: load it with no network, hash it, split it, draw batches."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from registry.document.rules import file_dataset_problem
from registry.settings import DEFAULT_DATA_ROOT

log = logging.getLogger(__name__)

LICENSES_DIR = Path("/usr/share/common-licenses")


class DatasetError(ValueError):
    """The dataset named by `data.dataset` cannot be loaded or is too small to use."""


def _pydoc_text() -> bytes:
    from pydoc_data.topics import topics

    # Sorted so the corpus (and its hash) never depends on dict order.
    return "\n\n".join(topics[name] for name in sorted(topics)).encode("utf-8")


def _licenses_text() -> bytes:
    if not LICENSES_DIR.is_dir():
        raise DatasetError(f"builtin:licenses needs {LICENSES_DIR}, which this machine lacks")
    files = sorted(p for p in LICENSES_DIR.iterdir() if p.is_file())
    return b"\n\n".join(p.read_bytes() for p in files)


BUILTINS = {"pydoc": _pydoc_text, "licenses": _licenses_text}


def load_corpus(dataset: str, data_root: str | Path = DEFAULT_DATA_ROOT) -> bytes:
    """The raw bytes of `builtin:<name>`, or of `file:<path>` inside `data_root`."""
    scheme, _, name = dataset.partition(":")
    if scheme == "builtin" and name in BUILTINS:
        return BUILTINS[name]()
    if scheme == "file" and name.strip():
        return _read_inside(Path(data_root), name)
    known = ", ".join(f"builtin:{n}" for n in BUILTINS)
    raise DatasetError(f"data.dataset: unknown dataset {dataset!r}; use {known} or file:<path>")


def _read_inside(root: Path, name: str) -> bytes:
    """The bytes of the file `name` inside `root`.

    Missing, outside the root (by its real path, symlinks followed) or not a regular file: one
    error, raised from one place with no cause attached, so that neither its message nor its
    traceback tells an outsider whether a file exists elsewhere on this machine.
    """
    fd, why = _open_inside(root, name)
    if fd is None:
        log.warning("data.dataset file:%s refused: %s (data root %s)", name, why, root.resolve())
        raise DatasetError(
            f"data.dataset: file:{name} is not a readable file inside the worker's data root "
            "(REGISTRY_DATA_ROOT)"
        )
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def _open_inside(root: Path, name: str) -> tuple[int | None, str]:
    """A read-only descriptor of the regular file `name` names inside `root`, or why not."""
    problem = file_dataset_problem(name)
    if problem is not None:
        return None, problem
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, name))
    if not _inside(real, real_root):
        return None, f"its real path {real} is outside the data root"
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(real, flags)  # O_NONBLOCK: a FIFO must not hang the worker
    except OSError as exc:
        return None, exc.strerror or "cannot be opened"
    # A folder on the way may have been swapped for a symlink since the check: judge what
    # was opened, not the name.
    opened = _descriptor_path(fd) or real
    if not stat.S_ISREG(os.fstat(fd).st_mode) or not _inside(opened, real_root):
        os.close(fd)
        return None, f"{opened} is not a regular file inside the data root"
    return fd, ""


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def _descriptor_path(fd: int) -> str | None:
    """The path the kernel holds for `fd` (Linux /proc), or None where there is no /proc."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def dataset_sha256(raw: bytes) -> str:
    """The sha256 of the corpus bytes, recorded in the provenance."""
    return hashlib.sha256(raw).hexdigest()


def split_bytes(raw: bytes, validation_fraction: float) -> tuple[bytes, bytes]:
    """Contiguous split: the last `validation_fraction` of the corpus is validation."""
    cut = len(raw) - round(len(raw) * validation_fraction)
    return raw[:cut], raw[cut:]


#: Token ids up to this size move to the GPU whole; a larger corpus stays in pinned host memory.
DEVICE_IDS_MAX_BYTES = 2 * 2**30


def on_device(ids: torch.Tensor, device: str) -> torch.Tensor:
    """Token ids where batches are gathered: on a GPU whole (the corpora are small: the ids of
    builtin:pydoc take about 30 MiB), unless over DEVICE_IDS_MAX_BYTES; then in pinned host
    memory, from which each batch is copied without blocking. The CPU's stay as they are."""
    if torch.device(device).type != "cuda":
        return ids
    if ids.numel() * ids.element_size() <= DEVICE_IDS_MAX_BYTES:
        return ids.to(device)
    log.info("token ids (%d bytes) stay in pinned host memory", ids.numel() * ids.element_size())
    return ids.pin_memory()


@dataclass(frozen=True)
class Splits:
    """Token ids of the two splits, as 1-D int64 tensors (on the CPU unless moved by `on`)."""

    train: torch.Tensor
    validation: torch.Tensor

    def on(self, device: str) -> Splits:
        """The splits where training reads them (see :func:`on_device`)."""
        if torch.device(device).type != "cuda":
            return self
        return Splits(on_device(self.train, device), on_device(self.validation, device))

    def check(self, seq_len: int) -> None:
        """Fail early, with the fix, when a split cannot hold one sequence."""
        for name, ids in (("train", self.train), ("validation", self.validation)):
            if len(ids) < seq_len + 2:
                raise DatasetError(
                    f"the {name} split has {len(ids)} tokens, fewer than data.seq_len + 2 "
                    f"= {seq_len + 2}: use a larger dataset, a smaller data.seq_len or "
                    "another data.validation_fraction"
                )


def _windows(ids: torch.Tensor, starts: torch.Tensor, length: int) -> torch.Tensor:
    """Rows ids[s : s + length] for each start, gathered where `ids` lives: one indexing
    kernel on a GPU, no per-row copies and no stack of host tensors. Only the start positions
    travel (from pinned memory, without blocking); from a pinned host corpus, the batch does."""
    if ids.is_pinned():
        rows = ids[starts[:, None] + torch.arange(length)]
        return rows.pin_memory().to("cuda", non_blocking=True)
    if starts.device != ids.device:
        starts = starts.pin_memory().to(ids.device, non_blocking=True)
    return ids[starts[:, None] + torch.arange(length, device=ids.device)]


def get_batch(
    ids: torch.Tensor,
    batch_size: int,
    seq_len: int,
    generator: torch.Generator,
    part: tuple[int, int] = (0, 1),
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch of `seq_len + 1` token windows as (inputs, next-token targets), on the
    device of `ids`. The start positions are drawn on the CPU by `generator` (whose state a
    checkpoint keeps), so a batch is the same on every device.

    `part` = (rank, world): draw the whole `batch_size * world` batch's starts and keep the
    rank's `batch_size` of them, so that `world` ranks together see exactly the batch that
    one process with `batch_size * world` sees (`worker.distributed`)."""
    rank, world = part
    starts = torch.randint(len(ids) - seq_len - 1, (batch_size * world,), generator=generator)
    starts = starts[rank * batch_size : (rank + 1) * batch_size]
    windows = _windows(ids, starts, seq_len + 1)
    return windows[:, :-1], windows[:, 1:]


def eval_batches(
    ids: torch.Tensor, batch_size: int, seq_len: int, max_batches: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed, non-overlapping windows from the start of `ids`: the same every time."""
    n_windows = min((len(ids) - 1) // seq_len, batch_size * max_batches)
    for first in range(0, n_windows, batch_size):
        count = min(batch_size, n_windows - first)
        starts = torch.arange(first * seq_len, (first + count) * seq_len, seq_len)
        windows = _windows(ids, starts, seq_len + 1)
        yield windows[:, :-1], windows[:, 1:]


def prompts(ids: torch.Tensor, count: int, length: int) -> torch.Tensor:
    """`count` prompts of `length` tokens, evenly spaced over `ids`."""
    stride = max((len(ids) - length) // max(count, 1), 1)
    starts = [min(i * stride, len(ids) - length) for i in range(count)]
    return torch.stack([ids[s : s + length] for s in starts])
