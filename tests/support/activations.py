"""Activation bytes of one training micro-batch, measured with autograd's saved-tensor hooks.

What is counted: every tensor autograd packs for the backward pass while the worker's training
step runs (``worker.training._Stepper.loss`` itself: the forward pass under the worker's
autocast with its routing hooks, ``causal_lm_loss`` in float32 and DeepSeek-V2's balance loss
when the document sets one; the model is ``worker.model.build_model``'s, so its experts run in
the autocast dtype and checkpointing is the non-reentrant kind), deduplicated by
storage: a storage counts once, with its ``untyped_storage().nbytes()``, however many saved
tensors view it. Not counted: storages of parameters and buffers, and weight copies (a saved
tensor made from a parameter by casts and views only, such as autocast's bfloat16 copy of a
weight or of one expert's slice): the estimate counts those as weights.

Every counted storage stays counted until it is freed (a ``weakref.finalize`` on the storage):
the step's ids and targets stay alive through backward, as in the worker's loop. Without
checkpointing the figure is what is held at the end of the forward pass (backward only frees).
With checkpointing it is the peak over forward and backward: the outer forward's saved tensors
include each layer's input (checkpoint saves it through the same hooks), and each layer's
recomputation in backward is observed by a pass-through hook wrapped around the layer's
checkpoint function: it records what the recomputation saves and hands it on to checkpoint's
own hook, which still decides what is kept. The peak is sampled whenever a tensor is saved,
the only moment the held bytes grow.
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch

from registry.document import architecture
from worker.model import build_model
from worker.moe import RoutingMonitor
from worker.training import TrainParams, _Stepper, autocast

#: Backward nodes a weight copy is made of: casts and views of one tensor.
_COPY_OR_VIEW = {
    "ToCopyBackward0",
    "TBackward0",
    "ViewBackward0",
    "SelectBackward0",
    "SliceBackward0",
    "TransposeBackward0",
    "PermuteBackward0",
    "ExpandBackward0",
    "UnsqueezeBackward0",
    "AliasBackward0",
}


def _is_weight_copy(t: torch.Tensor) -> bool:
    """True when t comes from a parameter through casts and views only."""
    fn = t.grad_fn
    while fn is not None and type(fn).__name__ in _COPY_OR_VIEW:
        nexts = [n for n, _ in fn.next_functions if n is not None]
        if len(nexts) != 1:
            return False
        fn = nexts[0]
    return fn is not None and type(fn).__name__ == "AccumulateGrad"


@dataclass
class Recorder:
    """Unique storages saved for backward that are still alive: their bytes now and at the peak."""

    excluded: set[int]
    sizes: dict[int, int] = field(default_factory=dict)  # live saved storages by data_ptr
    live: int = 0
    peak: int = 0
    recomputed: int = 0  # tensors the checkpointed layers saved again in backward

    def hold(self, t: torch.Tensor) -> None:
        """Count t's storage (once) until it is freed."""
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key in self.excluded or key in self.sizes or storage.nbytes() == 0:
            return
        if _is_weight_copy(t):
            return
        self.sizes[key] = storage.nbytes()
        self.live += storage.nbytes()
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._release, key)

    def _release(self, key: int) -> None:
        self.live -= self.sizes.pop(key)

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        self.hold(t)
        return t


def _observe_recomputation(model: Any, recorder: Recorder) -> None:
    """Wrap each layer's checkpoint call so the recomputation's saved tensors are recorded."""
    for layer in model.model.layers:
        inner = layer._gradient_checkpointing_func

        def checkpointed(fn: Any, *args: Any, _inner: Any = inner) -> Any:
            return _inner(lambda *a: _recorded(fn, recorder, *a), *args)

        layer._gradient_checkpointing_func = checkpointed


def _recorded(fn: Any, recorder: Recorder, *args: Any) -> Any:
    """Run fn with a hook that records what is saved in backward, then defers to checkpoint's."""
    pack, unpack = torch._C._autograd._top_saved_tensors_default_hooks(False)
    recomputing = torch._C._current_graph_task_id() != -1

    def observed(t: torch.Tensor) -> Any:
        if recomputing:  # checkpoint keeps it until the layer's backward has used it
            recorder.recomputed += 1
            recorder.hold(t)
        return pack(t)

    with torch.autograd.graph.saved_tensors_hooks(observed, unpack):
        return fn(*args)


def _step_loss(model: Any, doc: dict[str, Any], x: torch.Tensor, y: torch.Tensor) -> Any:
    """The loss of one micro-batch as the worker's ``_Stepper.loss`` makes it (its own code,
    run on a stand-in holding what it reads): the routing hooks (and balance loss when the
    document sets ``aux_loss_alpha``) on DeepSeek-V2's routers, the forward pass under the
    worker's autocast, the float32 language-model loss."""
    p = TrainParams.from_doc(doc)
    routing = RoutingMonitor(model, p.aux_loss_alpha)
    stepper = SimpleNamespace(
        routing=routing, amp=lambda: autocast("cpu", p.precision), forward=model
    )
    loss, _ = _Stepper.loss(stepper, x, y)  # type: ignore[arg-type]
    return loss  # the hooks stay: a checkpointed backward's recomputation runs them again


@dataclass(frozen=True)
class Measured:
    """Bytes held for backward: at the end of the forward pass and at the peak."""

    forward: int
    peak: int


def measure(
    doc: dict[str, Any], checkpointing: bool, attention: str = "sdpa", seed: int = 0
) -> Measured:
    """Run one training micro-batch of doc's model on the CPU and count what autograd holds.

    `attention` other than the worker's ``sdpa`` is set on the built model to check the
    estimate's other implementations.
    """
    doc = copy.deepcopy(doc)
    doc["training"]["gradient_checkpointing"] = checkpointing
    torch.manual_seed(seed)
    model = build_model(doc)
    if attention != model.config._attn_implementation:
        model.set_attn_implementation(attention)
    model.train()
    state = [t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())]
    recorder = Recorder(excluded=set(state))
    if checkpointing:
        _observe_recomputation(model, recorder)
    batch, seq = doc["training"]["per_device_train_batch_size"], doc["data"]["seq_len"]
    vocab = architecture.resolve_vocab_size(doc)
    generator = torch.Generator().manual_seed(seed)
    x, y = (torch.randint(3, vocab, (batch, seq), generator=generator) for _ in range(2))
    with torch.autograd.graph.saved_tensors_hooks(recorder.pack, lambda t: t):
        loss = _step_loss(model, doc, x, y)
        forward = recorder.live
        loss.backward()
    if checkpointing and recorder.recomputed == 0:
        raise AssertionError("no recomputation observed: is checkpointing still wrapped?")
    return Measured(forward=forward, peak=recorder.peak)
