"""Tokenizers saved with the checkpoint: bytes, or a byte-level BPE trained locally.

Both share the convention pad=0, bos=1, eos=2; the byte tokenizer maps byte b to b + 3.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from registry.document.architecture import BOS_ID, BYTE_VOCAB_SIZE, EOS_ID, PAD_ID

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"]
BYTE_OFFSET = 3  # the specials come first: byte b is token b + 3
META_FILE = "registry_tokenizer.json"
BPE_FILE = "tokenizer.json"


class Tokenizer(Protocol):
    """What training, evaluation and checkpoints need from a tokenizer."""

    kind: str
    vocab_size: int

    def encode_corpus(self, raw: bytes) -> torch.Tensor: ...
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Sequence[int]) -> str: ...
    def save(self, directory: Path) -> None: ...


def _write_meta(directory: Path, kind: str, vocab_size: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "kind": kind,
        "vocab_size": vocab_size,
        "pad_token_id": PAD_ID,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


class ByteTokenizer:
    """Every byte is a token: no training, no unknowns, vocabulary 259."""

    kind = "byte"
    vocab_size = BYTE_VOCAB_SIZE

    def encode_corpus(self, raw: bytes) -> torch.Tensor:
        """All of `raw` as a 1-D int64 tensor."""
        return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).astype(np.int64) + BYTE_OFFSET)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (UTF-8 bytes), without specials."""
        return [b + BYTE_OFFSET for b in text.encode("utf-8")]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; specials are dropped, broken UTF-8 is replaced."""
        raw = bytes(i - BYTE_OFFSET for i in ids if BYTE_OFFSET <= i < BYTE_VOCAB_SIZE)
        return raw.decode("utf-8", errors="replace")

    def save(self, directory: Path) -> None:
        """Write the tokenizer's description into `directory`."""
        _write_meta(directory, self.kind, self.vocab_size)


class BpeTokenizer:
    """A byte-level BPE from the `tokenizers` library, trained on the train split."""

    kind = "bpe"

    def __init__(self, backend: object) -> None:
        from tokenizers import Tokenizer as Backend

        assert isinstance(backend, Backend)
        self.backend = backend
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BpeTokenizer:
        """Learn merges on `text` up to `vocab_size` tokens (specials at 0, 1, 2)."""
        from tokenizers import Tokenizer as Backend
        from tokenizers import decoders, models, pre_tokenizers, trainers

        backend = Backend(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        backend.train_from_iterator(_chunks(text), trainer=trainer)
        return cls(backend)

    def encode_corpus(self, raw: bytes) -> torch.Tensor:
        """All of `raw` (decoded as UTF-8) as a 1-D int64 tensor."""
        return torch.tensor(self.encode(raw.decode("utf-8", errors="replace")), dtype=torch.int64)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without specials."""
        return list(self.backend.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, specials dropped."""
        return str(self.backend.decode(list(ids), skip_special_tokens=True))

    def save(self, directory: Path) -> None:
        """Write `tokenizer.json` (loadable by `tokenizers` and transformers) and the meta."""
        _write_meta(directory, self.kind, self.vocab_size)
        self.backend.save(str(directory / BPE_FILE))


def _chunks(text: str, lines_per_chunk: int = 1000) -> Iterator[str]:
    lines = text.splitlines(keepends=True)
    for i in range(0, len(lines), lines_per_chunk):
        yield "".join(lines[i : i + lines_per_chunk])


def build_tokenizer(kind: str, train_text: bytes, vocab_size: int) -> Tokenizer:
    """The tokenizer `data.tokenizer` names; a BPE is trained on `train_text`."""
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        return BpeTokenizer.train(train_text.decode("utf-8", errors="replace"), vocab_size)
    raise ValueError(f"data.tokenizer: unknown tokenizer {kind!r}; use byte or bpe")


def load_tokenizer(directory: Path) -> Tokenizer:
    """The tokenizer saved in `directory` by `save`."""
    meta = json.loads((directory / META_FILE).read_text())
    if meta["kind"] == "byte":
        return ByteTokenizer()
    if meta["kind"] == "bpe":
        from tokenizers import Tokenizer as Backend

        return BpeTokenizer(Backend.from_file(str(directory / BPE_FILE)))
    raise ValueError(f"{directory / META_FILE}: unknown tokenizer kind {meta['kind']!r}")
