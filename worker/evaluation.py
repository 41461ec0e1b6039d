"""Validation loss, perplexity and next-token accuracy; sampling and its diversity metrics.

Sampling metrics, over the generated continuations only (prompts excluded, each cut at the
first end-of-sequence token):

* `gen_distinct_2`: for each continuation, distinct token bigrams / all token bigrams; the mean
  over continuations (so it does not grow or shrink with the number of prompts).
* `gen_repetition_rate`: rep/16 of Welleck et al. (2019): the fraction of generated tokens that
  equal one of the 16 tokens before them in the same continuation. Degenerate loops push it
  towards 1. With the byte tokenizer ordinary English already scores about 0.5 (spaces, vowels),
  so compare runs that share a tokenizer.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from worker.tokenizer import EOS_ID, PAD_ID, Tokenizer

REPETITION_WINDOW = 16
MAX_NEW_TOKENS = 256  # keeps sampling to seconds on a CPU whatever generation.max_length says
PROMPT_TOKENS = 32
MAX_PERPLEXITY_LOSS = 80.0  # exp() of more overflows the metric to inf


def causal_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy, computed in float32 whatever the autocast dtype."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


@torch.no_grad()
def evaluate_loss(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: str,
    amp: contextlib.AbstractContextManager[Any] | None = None,
) -> dict[str, float]:
    """val_loss, val_perplexity and val_accuracy (next-token argmax) over `batches`."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    tokens = 0
    started = time.perf_counter()
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with amp or contextlib.nullcontext():
            logits = model(input_ids=x, use_cache=False).logits
        loss_sum += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum")
        correct += (logits.argmax(dim=-1) == y).sum()
        tokens += y.numel()
    model.train(was_training)
    if tokens == 0:
        raise ValueError("no validation batches: the validation split is too small")
    val_loss = loss_sum.item() / tokens
    return {
        "val_loss": val_loss,
        "val_perplexity": math.exp(min(val_loss, MAX_PERPLEXITY_LOSS)),
        "val_accuracy": correct.item() / tokens,
        "eval_tokens": float(tokens),
        "eval_seconds": time.perf_counter() - started,
    }


def distinct_2(continuations: Sequence[Sequence[int]]) -> float:
    """Mean over continuations of distinct bigrams / bigrams (1.0 when none has a bigram)."""
    ratios = []
    for ids in continuations:
        bigrams = list(itertools.pairwise(ids))
        if bigrams:
            ratios.append(len(set(bigrams)) / len(bigrams))
    return sum(ratios) / len(ratios) if ratios else 1.0


def repetition_rate(
    continuations: Sequence[Sequence[int]], window: int = REPETITION_WINDOW
) -> float:
    """Fraction of tokens (after the first) found among the `window` tokens before them."""
    repeats = positions = 0
    for ids in continuations:
        for t in range(1, len(ids)):
            positions += 1
            repeats += ids[t] in ids[max(0, t - window) : t]
    return repeats / positions if positions else 0.0


def _cut_at_eos(ids: Sequence[int]) -> list[int]:
    out = []
    for i in ids:
        if i == EOS_ID:
            break
        out.append(i)
    return out


def generation_kwargs(generation: Mapping[str, Any], max_new_tokens: int) -> dict[str, Any]:
    """`generate()` arguments from the config's generation section; temperature 0 is greedy."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "repetition_penalty": float(generation["repetition_penalty"]),
        "pad_token_id": PAD_ID,
        "eos_token_id": EOS_ID,
    }
    if float(generation["temperature"]) == 0.0:
        return kwargs | {"do_sample": False}
    return kwargs | {
        "do_sample": True,
        "temperature": float(generation["temperature"]),
        "top_p": float(generation["top_p"]),
        "top_k": None,  # transformers would otherwise add its default top_k=50
    }


@dataclass(frozen=True)
class Samples:
    """What sampling produced: its metrics and a readable text of prompts and continuations."""

    metrics: dict[str, float]
    text: str


def max_new_tokens_for(generation: Mapping[str, Any], prompt_len: int, max_positions: int) -> int:
    """New tokens per sample: generation.max_length less the prompt, capped (see MAX_NEW_TOKENS)."""
    total = min(int(generation["max_length"]), max_positions)
    return max(1, min(total - prompt_len, MAX_NEW_TOKENS))


@torch.no_grad()
def sample(
    model: Any,
    tokenizer: Tokenizer,
    prompt_ids: torch.Tensor,
    generation: Mapping[str, Any],
    device: str,
    seed: int,
) -> Samples:
    """Generate one continuation per prompt with the config's generation parameters."""
    was_training = model.training
    model.eval()
    max_positions = int(getattr(model.config, "max_position_embeddings", 1 << 30))
    new_tokens = max_new_tokens_for(generation, prompt_ids.shape[1], max_positions)
    torch.manual_seed(seed)
    inputs = prompt_ids.to(device)
    output = model.generate(
        input_ids=inputs,
        attention_mask=torch.ones_like(inputs),
        **generation_kwargs(generation, new_tokens),
    )
    model.train(was_training)
    continuations = [_cut_at_eos(row) for row in output[:, inputs.shape[1] :].tolist()]
    metrics = {
        "gen_distinct_2": distinct_2(continuations),
        "gen_repetition_rate": repetition_rate(continuations),
        "gen_mean_length": sum(map(len, continuations)) / max(len(continuations), 1),
    }
    return Samples(metrics, _render(tokenizer, prompt_ids.tolist(), continuations))


def _render(tokenizer: Tokenizer, prompts: list[list[int]], continuations: list[list[int]]) -> str:
    parts = []
    for i, (prompt, cont) in enumerate(zip(prompts, continuations, strict=True)):
        parts.append(
            f"### sample {i}\n--- prompt\n{tokenizer.decode(prompt)}\n"
            f"--- continuation\n{tokenizer.decode(cont)}\n"
        )
    return "\n".join(parts)
