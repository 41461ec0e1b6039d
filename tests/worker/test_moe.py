"""DeepSeek-V2's experts in the autocast dtype, routing health and the balance loss (issue 12)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.support.worker import splits_of, tiny_doc
from worker import moe
from worker.model import build_model
from worker.training import TrainParams, _Stepper, train


class _MatmulDtypes(TorchDispatchMode):
    """Records the operand dtypes of every matrix product torch dispatches."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[tuple[str, tuple[str, ...]]] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = str(func)
        if "grouped_mm" in name or name.startswith("aten.mm"):
            dtypes = tuple(str(a.dtype) for a in args if isinstance(a, torch.Tensor))
            self.seen[(name.split(".")[1], dtypes[:2])] += 1
        return func(*args, **(kwargs or {}))


class _Recorder:
    """A tracker that keeps what it is given."""

    def __init__(self) -> None:
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.artifacts: dict[str, str] = {}

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_artifact_text(self, text: str, name: str) -> None:
        self.artifacts[name] = text


def _model(**training: Any) -> tuple[Any, dict[str, Any]]:
    doc = tiny_doc(training=training) if training else tiny_doc()
    torch.manual_seed(0)
    return build_model(doc, 259), doc


def test_expert_matmuls_run_in_bf16_under_cpu_autocast() -> None:
    model, _ = _model()
    assert model.config._experts_implementation == moe.AUTOCAST_EXPERTS
    x = torch.randint(0, 259, (2, 32))
    with torch.autocast("cpu", dtype=torch.bfloat16), _MatmulDtypes() as forward:
        loss = model(input_ids=x).logits.float().mean()
    with _MatmulDtypes() as backward:
        loss.backward()
    grouped = {k: n for k, n in (forward.seen + backward.seen).items() if k[0] == "_grouped_mm"}
    assert grouped and all(d == ("torch.bfloat16", "torch.bfloat16") for _, d in grouped)
    assert model.model.layers[1].mlp.experts.gate_up_proj.grad.dtype == torch.float32
    with _MatmulDtypes() as plain:  # outside autocast: transformers' own fp32 forward
        model(input_ids=x)
    assert {d for (op, d) in plain.seen if op == "_grouped_mm"} == {
        ("torch.float32", "torch.float32")
    }


def test_the_bf16_experts_agree_with_fp32_within_bf16_rounding() -> None:
    model, _ = _model()
    x = torch.randint(0, 259, (2, 32))
    with torch.no_grad():
        exact = model(input_ids=x).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = model(input_ids=x).logits.float()
    assert (fast - exact).abs().max() < 0.1 * exact.abs().max()


def test_load_fractions_sum_to_one_per_layer_and_count_every_routed_token() -> None:
    model, _ = _model()
    monitor = moe.RoutingMonitor(model)
    assert [layer for layer, _ in monitor.layers] == [1]  # first_k_dense_replace 1 of 2
    x = torch.randint(0, 259, (3, 16))
    model(input_ids=x)  # not recording: evaluation and sampling are not counted
    assert monitor.counts == {}
    with monitor.record():
        model(input_ids=x)
    assert int(monitor.counts[1].sum()) == 3 * 16 * 2  # tokens x experts per token
    shares = monitor.fractions()
    assert sum(shares[1]) == pytest.approx(1.0) and len(shares[1]) == 4
    assert monitor.counts == {}  # read, then started afresh


@pytest.mark.parametrize("alpha", [None, 0.01])
def test_a_checkpointed_backward_does_not_count_twice(alpha: float | None) -> None:
    model, _ = _model(gradient_checkpointing=True)
    model.train()
    monitor = moe.RoutingMonitor(model, aux_loss_alpha=alpha)
    x = torch.randint(0, 259, (2, 16))
    with monitor.record():
        loss = model(input_ids=x).logits.float().mean()
    aux = monitor.aux_loss()
    (loss if aux is None else loss + aux).backward()  # recomputes the layers' forward
    assert int(monitor.counts[1].sum()) == 2 * 16 * 2
    assert len(monitor.terms) == (0 if alpha is None else 1)


def test_the_balance_loss_is_deepseek_v2s_expert_level_loss() -> None:
    alpha = 0.01
    model, _ = _model()
    monitor = moe.RoutingMonitor(model, aux_loss_alpha=alpha)
    outputs: list[Any] = []
    router = monitor.layers[0][1]
    router.register_forward_hook(lambda m, i, out: outputs.append(out))
    x = torch.randint(0, 259, (2, 8))
    with monitor.record():
        model(input_ids=x)
    aux = monitor.aux_loss()
    assert aux is not None and aux.requires_grad
    logits, _, index = outputs[0]
    scores = torch.softmax(logits.double(), dim=-1).tolist()
    tokens, experts, per_token = len(scores), 4, 2
    by_hand = 0.0
    for i in range(experts):
        routed = sum(int(i in row) for row in index.tolist())
        f_i = experts / (per_token * tokens) * routed
        p_i = sum(s[i] for s in scores) / tokens
        by_hand += f_i * p_i
    assert float(aux.detach()) == pytest.approx(alpha * by_hand, rel=1e-5)


def test_the_training_loss_includes_the_balance_term() -> None:
    doc = tiny_doc(model={"moe": {"aux_loss_alpha": 0.5}})
    torch.manual_seed(0)
    model = build_model(doc, 259)
    stepper = _Stepper(model, splits_of(doc), TrainParams.from_doc(doc), "cpu")
    x = torch.randint(0, 259, (2, 16))
    total, lm = stepper.loss(x, x)
    aux = stepper.routing.aux_loss()  # the same forward's terms, asked again
    assert aux is not None and float(aux.detach()) > 0
    assert float(total.detach()) == pytest.approx(float(lm.detach() + aux.detach()), rel=1e-6)
    plain = _Stepper(model, splits_of(doc), TrainParams.from_doc(tiny_doc()), "cpu")
    total, lm = plain.loss(x, x)
    assert torch.equal(total, lm)


def test_training_logs_the_load_per_layer_and_the_json_artifact() -> None:
    doc = tiny_doc(
        training={"num_training_steps": 4, "eval_every_steps": 2, "gradient_checkpointing": True},
        model={"moe": {"aux_loss_alpha": 0.003}},
    )
    torch.manual_seed(0)
    tracker = _Recorder()
    train(build_model(doc, 259), splits_of(doc), TrainParams.from_doc(doc), "cpu", tracker)  # type: ignore[arg-type]
    loads = [(s, m) for s, m in tracker.metrics if "moe_load_max_fraction_layer_1" in m]
    assert loads and all(0.25 <= m["moe_load_max_fraction_layer_1"] <= 1 for _, m in loads)
    assert all(m["moe_aux_loss"] > 0 for _, m in loads)
    saved = json.loads(tracker.artifacts["moe_load.json"])
    assert saved["balance_loss_alpha"] == 0.003
    for interval in saved["intervals"]:
        assert sum(interval["layers"]["1"]) == pytest.approx(1.0)
    assert [i["step"] for i in saved["intervals"]] == [s for s, _ in loads]
