"""The training corpus: load it with no network, hash it, split it, draw batches."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

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


def load_corpus(dataset: str) -> bytes:
    """The raw bytes of `builtin:<name>` or `file:<path>`."""
    scheme, _, name = dataset.partition(":")
    if scheme == "builtin" and name in BUILTINS:
        return BUILTINS[name]()
    if scheme == "file":
        path = Path(name).expanduser()
        if not path.is_file():
            raise DatasetError(f"data.dataset: no such file {path}")
        return path.read_bytes()
    known = ", ".join(f"builtin:{n}" for n in BUILTINS)
    raise DatasetError(f"data.dataset: unknown dataset {dataset!r}; use {known} or file:<path>")


def dataset_sha256(raw: bytes) -> str:
    """The sha256 of the corpus bytes, recorded in the provenance."""
    return hashlib.sha256(raw).hexdigest()


def split_bytes(raw: bytes, validation_fraction: float) -> tuple[bytes, bytes]:
    """Contiguous split: the last `validation_fraction` of the corpus is validation."""
    cut = len(raw) - int(round(len(raw) * validation_fraction))
    return raw[:cut], raw[cut:]


@dataclass(frozen=True)
class Splits:
    """Token ids of the two splits, as 1-D int64 tensors on the CPU."""

    train: torch.Tensor
    validation: torch.Tensor

    def check(self, seq_len: int) -> None:
        """Fail early, with the fix, when a split cannot hold one sequence."""
        for name, ids in (("train", self.train), ("validation", self.validation)):
            if len(ids) < seq_len + 2:
                raise DatasetError(
                    f"the {name} split has {len(ids)} tokens, fewer than data.seq_len + 2 "
                    f"= {seq_len + 2}: use a larger dataset, a smaller data.seq_len or "
                    "another data.validation_fraction"
                )


def get_batch(
    ids: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch of `seq_len + 1` token windows as (inputs, next-token targets)."""
    starts = torch.randint(len(ids) - seq_len - 1, (batch_size,), generator=generator)
    windows = torch.stack([ids[s : s + seq_len + 1] for s in starts.tolist()])
    return windows[:, :-1], windows[:, 1:]


def eval_batches(
    ids: torch.Tensor, batch_size: int, seq_len: int, max_batches: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed, non-overlapping windows from the start of `ids`: the same every time."""
    n_windows = min((len(ids) - 1) // seq_len, batch_size * max_batches)
    for first in range(0, n_windows, batch_size):
        count = min(batch_size, n_windows - first)
        starts = range(first * seq_len, (first + count) * seq_len, seq_len)
        windows = torch.stack([ids[s : s + seq_len + 1] for s in starts])
        yield windows[:, :-1], windows[:, 1:]


def prompts(ids: torch.Tensor, count: int, length: int) -> torch.Tensor:
    """`count` prompts of `length` tokens, evenly spaced over `ids`."""
    stride = max((len(ids) - length) // max(count, 1), 1)
    starts = [min(i * stride, len(ids) - length) for i in range(count)]
    return torch.stack([ids[s : s + length] for s in starts])
