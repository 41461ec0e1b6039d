"""DeepSeek-V2's mixture of experts in training: experts in the autocast dtype, routing health
and the expert-level load-balancing loss.

**Experts in the autocast dtype.** transformers 5 computes DeepseekV2's routed experts with
``grouped_mm`` (``integrations/moe.py``), which autocast does not cover, so it casts the input
to the weights' dtype: under bf16 autocast the expert matrix products ran in fp32 (measured on
the CPU: ``aten._grouped_mm`` saw float32 operands while every other matrix product saw
bfloat16). :data:`AUTOCAST_EXPERTS` is the same grouped forward with the expert weights and
input cast to the autocast dtype first (as autocast itself casts an ``nn.Linear``); it is
registered under its own name in transformers' ``ExpertsInterface`` (its extension point: no
existing implementation is replaced) and chosen per model with
``model.set_experts_implementation``. Outside autocast it is transformers' own forward.

**Routing health.** :class:`RoutingMonitor` hooks every router (``DeepseekV2TopkRouter``): while
it records (the training forward only; not evaluation, sampling or the recomputation of a
checkpointed backward), each layer's expert counts are added up on the device, and read with
the loop's own sync at each report, never per step.

**Balance loss** (DeepSeek-V2, eq. 12-14), per MoE layer: ``alpha_1 * sum_i f_i * P_i`` with
``f_i = N' / (K' T) * (tokens routed to expert i)`` and ``P_i = (1 / T) * sum_t s_(i,t)`` (N'
routed experts, K' of them per token, T tokens, s the router's softmax), summed over layers.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from typing import Any

import torch

AUTOCAST_EXPERTS = "registry_autocast_grouped_mm"


class _Cast:
    """An experts module seen through its weights cast to `dtype` (everything else is its)."""

    def __init__(self, experts: Any, dtype: torch.dtype) -> None:
        self._experts = experts
        self.gate_up_proj = experts.gate_up_proj.to(dtype)
        self.down_proj = experts.down_proj.to(dtype)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._experts, name)


def autocast_experts_forward(
    self: Any, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """transformers' grouped experts forward, in the autocast dtype when autocast is on."""
    from transformers.integrations.moe import grouped_mm_experts_forward

    device_type = hidden_states.device.type
    if not torch.is_autocast_enabled(device_type):
        return grouped_mm_experts_forward(self, hidden_states, top_k_index, top_k_weights)
    dtype = torch.get_autocast_dtype(device_type)
    cast: Any = _Cast(self, dtype)
    return grouped_mm_experts_forward(
        cast, hidden_states.to(dtype), top_k_index, top_k_weights.to(dtype)
    )


def use_autocast_experts(model: Any) -> bool:
    """Make `model`'s grouped experts run in the autocast dtype; False if it has none."""
    from transformers.integrations.moe import ExpertsInterface

    if getattr(model.config, "_experts_implementation", None) != "grouped_mm":
        return False  # eager (grouped_mm unavailable) or a model without experts
    if AUTOCAST_EXPERTS not in ExpertsInterface._global_mapping:
        ExpertsInterface.register(AUTOCAST_EXPERTS, autocast_experts_forward)
    model.set_experts_implementation(AUTOCAST_EXPERTS)
    return True


def routers(model: torch.nn.Module) -> list[tuple[int, Any]]:
    """(layer index, router) of every MoE layer, in order."""
    from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2TopkRouter

    found = []
    for name, module in model.named_modules():
        if isinstance(module, DeepseekV2TopkRouter):
            parts = name.split(".")
            found.append((int(parts[parts.index("layers") + 1]), module))
    return found


class RoutingMonitor:
    """Counts routed tokens per expert and layer on the device; the balance loss if asked."""

    def __init__(self, model: torch.nn.Module, aux_loss_alpha: float | None = None) -> None:
        self.layers = routers(model)
        self.alpha = aux_loss_alpha
        self.recording = False
        self.counts: dict[int, torch.Tensor] = {}
        self.terms: list[torch.Tensor] = []
        self.aux_sum: torch.Tensor | None = None
        self.aux_count = 0
        self.history: list[dict[str, Any]] = []
        self.handles = [
            router.register_forward_hook(functools.partial(self._hook, layer))
            for layer, router in self.layers
        ]

    @property
    def active(self) -> bool:
        return bool(self.layers)

    def _hook(self, layer: int, module: Any, inputs: Any, output: Any) -> None:
        logits, _, index = output
        term = None
        if self.alpha is not None and torch.is_grad_enabled():
            # also when recomputed in a checkpointed backward (then dropped): non-reentrant
            # checkpointing wants the same tensors saved both times
            term = self._balance_term(logits, index, int(module.num_experts))
        if not self.recording:
            return
        hits = self._hits(index, int(module.num_experts))
        self.counts[layer] = self.counts[layer] + hits if layer in self.counts else hits
        if term is not None:
            self.terms.append(term)

    @staticmethod
    def _hits(index: torch.Tensor, experts: int) -> torch.Tensor:
        """Tokens routed to each expert (a comparison and a sum: deterministic, no sync)."""
        return (index.reshape(-1, 1) == torch.arange(experts, device=index.device)).sum(0)

    def _balance_term(self, logits: torch.Tensor, index: torch.Tensor, experts: int) -> Any:
        """sum_i f_i P_i of one layer (eq. 12-14 of the DeepSeek-V2 paper)."""
        scores = logits.softmax(dim=-1, dtype=torch.float32)
        tokens, per_token = scores.shape[0], index.shape[-1]
        f = self._hits(index, experts).to(torch.float32) * experts / (per_token * tokens)
        return (f * scores.mean(dim=0)).sum()

    @contextlib.contextmanager
    def record(self) -> Iterator[None]:
        """Count (and collect the balance terms of) the forward passes inside."""
        self.recording, self.terms = True, []
        try:
            yield
        finally:
            self.recording = False

    def aux_loss(self) -> torch.Tensor | None:
        """alpha_1 * sum over MoE layers of sum_i f_i P_i for the last recorded forward."""
        if self.alpha is None or not self.terms:
            return None
        loss = self.alpha * torch.stack(self.terms).sum()
        done = loss.detach()
        self.aux_sum = done if self.aux_sum is None else self.aux_sum + done
        self.aux_count += 1
        return loss

    def fractions(self) -> dict[int, list[float]]:
        """Each layer's share of routed tokens per expert since the last call (one sync)."""
        if not self.counts:
            return {}
        layers = sorted(self.counts)
        stacked = torch.stack([self.counts[k] for k in layers]).to(torch.float64)
        shares = (stacked / stacked.sum(dim=1, keepdim=True)).tolist()
        self.counts = {}
        return dict(zip(layers, shares, strict=True))

    def report(self, step: int) -> dict[str, float]:
        """Metrics at `step`: each layer's largest expert share, and the mean balance loss
        over the forward passes since the last report."""
        shares = self.fractions()
        if not shares:
            return {}
        self.history.append({"step": step, "layers": {str(k): v for k, v in shares.items()}})
        metrics = {f"moe_load_max_fraction_layer_{k}": max(v) for k, v in shares.items()}
        if self.aux_sum is not None and self.aux_count:
            metrics["moe_aux_loss"] = float(self.aux_sum) / self.aux_count
            self.aux_sum, self.aux_count = None, 0
        return metrics

    def artifact(self) -> str:
        """moe_load.json: every reported step's shares per layer and expert."""
        return json.dumps({"balance_loss_alpha": self.alpha, "intervals": self.history}) + "\n"

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
