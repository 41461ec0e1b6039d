"""The parameter guide's out-of-memory remedies (section 5.1), in its order, as pure functions.

1. ``gradient_checkpointing``: ``training.gradient_checkpointing`` true (recompute activations).
2. ``smaller_batch``: half ``training.per_device_train_batch_size`` and twice
   ``training.gradient_accumulation_steps``, so the effective batch is kept exactly; only for
   an even batch (an odd one cannot be halved without changing the effective batch).
3. ``smaller_model_dim``: ``model.model_dim`` down to 768, the guide's number, when it is above
   768 and 768 fits; else the next size down that fits. A size fits when it is a multiple of
   ``2 x num_attention_heads`` (the heads divide it and each head's size is even, which RoPE
   needs) and the whole document still validates; the first of at most
   :data:`DIM_CANDIDATES` sizes down that validates is taken.

Each remedy is applied once per chain of remedied runs. ``origin`` is the document of the
chain's first run: a remedy whose field already moved from the origin's value (or checkpointing
already on) counts as applied and is skipped. A remedy whose document does not validate is
skipped too. When none is left, :func:`next_remedy` answers None and the chain stops. The
guide's last advice (model parallelism with DeepSpeed) is no change of the document: not here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from registry.document import spec

#: The guide's model_dim for a model that ran out of memory ("降低model_dim至768维").
GUIDE_MODEL_DIM = 768
#: How many smaller model_dim sizes are tried before the remedy counts as not applicable.
DIM_CANDIDATES = 8
ORDER = ("gradient_checkpointing", "smaller_batch", "smaller_model_dim")


@dataclass(frozen=True)
class Remedy:
    """One remedy: its name, the new normalised document, and what changed in words."""

    name: str
    document: dict[str, Any]
    explanation: str


Step = Callable[[dict[str, Any], dict[str, Any]], Iterator[Remedy]]


def _with(doc: dict[str, Any], section: str, **fields: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out[section].update(fields)
    return out


def _checkpointing(doc: dict[str, Any], origin: dict[str, Any]) -> Iterator[Remedy]:
    if not doc["training"].get("gradient_checkpointing"):
        yield Remedy(
            "gradient_checkpointing",
            _with(doc, "training", gradient_checkpointing=True),
            "training.gradient_checkpointing false -> true (activations recomputed in the "
            "backward pass: much less memory, 20-35% slower)",
        )


def _smaller_batch(doc: dict[str, Any], origin: dict[str, Any]) -> Iterator[Remedy]:
    t = doc["training"]
    batch, accum = t["per_device_train_batch_size"], t["gradient_accumulation_steps"]
    if batch < origin["training"]["per_device_train_batch_size"] or batch < 2 or batch % 2:
        return
    yield Remedy(
        "smaller_batch",
        _with(
            doc,
            "training",
            per_device_train_batch_size=batch // 2,
            gradient_accumulation_steps=accum * 2,
        ),
        f"training.per_device_train_batch_size {batch} -> {batch // 2} and "
        f"gradient_accumulation_steps {accum} -> {accum * 2} (effective batch {batch * accum} "
        "kept)",
    )


def smaller_dims(dim: int, heads: int) -> list[int]:
    """Candidate model_dim sizes below ``dim``, best first (see the module's rule 3)."""
    step = 2 * heads
    below = [d for d in range((dim - 1) // step * step, 0, -step)][:DIM_CANDIDATES]
    if dim > GUIDE_MODEL_DIM and GUIDE_MODEL_DIM % step == 0:
        below = [GUIDE_MODEL_DIM, *[d for d in below if d < GUIDE_MODEL_DIM]]
    return below[:DIM_CANDIDATES]


def _smaller_dim(doc: dict[str, Any], origin: dict[str, Any]) -> Iterator[Remedy]:
    dim, heads = doc["model"]["model_dim"], doc["model"]["num_attention_heads"]
    if dim < origin["model"]["model_dim"] or heads < 1:
        return
    for smaller in smaller_dims(dim, heads):
        why = (
            "the guide's size for a model that runs out of memory"
            if smaller == GUIDE_MODEL_DIM
            else "the next size down"
        )
        yield Remedy(
            "smaller_model_dim",
            _with(doc, "model", model_dim=smaller),
            f"model.model_dim {dim} -> {smaller} ({why}: {heads} heads divide it, each "
            f"{smaller // heads} wide, an even size)",
        )


STEPS: tuple[Step, ...] = (_checkpointing, _smaller_batch, _smaller_dim)


def next_remedy(
    doc: dict[str, Any], origin: dict[str, Any] | None = None, *, keep_model: bool = False
) -> Remedy | None:
    """The guide's next remedy for normalised ``doc`` that ran out of memory, or None.

    ``origin``: the chain's first document (default ``doc`` itself). The remedy's document is
    normalised and valid; remedies already applied in the chain or making it invalid are
    skipped. ``keep_model`` (a fine-tune, whose weights fix the model): no smaller model_dim."""
    origin = doc if origin is None else origin
    for step in STEPS[:2] if keep_model else STEPS:
        for remedy in step(doc, origin):
            checked = spec.validate(remedy.document)
            if checked.valid and checked.normalized is not None:
                return Remedy(remedy.name, checked.normalized, remedy.explanation)
    return None
