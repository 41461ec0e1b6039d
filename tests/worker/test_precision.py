"""Precision on the device (issue 12): TF32 settings, the MFU table, fused AdamW only on CUDA,
and fp16's rule that a step the GradScaler skipped does not advance the schedule."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.support.worker import tiny_doc
from worker import precision
from worker.training import TrainParams, build_optimizer, build_scheduler, optimizer_step


@pytest.mark.parametrize(
    ("name", "kind", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
        ("NVIDIA H100 PCIe", "tf32", 378.0),
        ("NVIDIA H100 NVL", "fp32", 60.0),
        ("NVIDIA H200", "bf16", 989.4),
        ("NVIDIA H200 NVL", "bf16", 835.0),
        ("NVIDIA A100-SXM4-80GB", "tf32", 156.0),
        ("NVIDIA A100 80GB PCIe", "bf16", 312.0),
        ("NVIDIA GeForce RTX 4090", "bf16", None),
    ],
)
def test_peak_table_finds_the_gpu_by_name(name: str, kind: str, tflops: float | None) -> None:
    assert precision.peak_tflops(name, kind) == tflops


def test_matrix_precision_follows_autocast_and_tf32() -> None:
    assert precision.matmul_precision("bf16", False) == "bf16"
    assert precision.matmul_precision("fp16", True) == "bf16"
    assert precision.matmul_precision("fp32", True) == "tf32"
    assert precision.matmul_precision("fp32", False) == "fp32"


def test_no_mfu_and_no_tf32_on_the_cpu() -> None:
    before = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32)
    assert precision.configure_tf32("cpu", True) is False
    assert (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32) == before
    assert precision.mfu(1e9, 1e4, "cpu", "bf16", True) is None


def test_the_document_asks_for_strict_fp32_only_with_false() -> None:
    assert TrainParams.from_doc(tiny_doc()).tf32 is True
    assert TrainParams.from_doc(tiny_doc(training={"tf32": True})).tf32 is True
    strict = TrainParams.from_doc(tiny_doc(training={"tf32": False, "compile": True}))
    assert (strict.tf32, strict.compile) == (False, True)
    assert TrainParams.from_doc(tiny_doc()).flops_per_token > 0


def test_adamw_is_not_fused_on_the_cpu() -> None:
    model = torch.nn.Linear(4, 4)
    optimizer = build_optimizer(model, TrainParams.from_doc(tiny_doc()))
    assert optimizer.defaults["fused"] is None


def _parts() -> tuple[torch.nn.Linear, torch.optim.Optimizer, Any, torch.amp.GradScaler]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    p = TrainParams.from_doc(tiny_doc(training={"warmup_ratio": 0.0}))  # lr > 0 at once
    optimizer = build_optimizer(model, p)
    scheduler = build_scheduler(optimizer, p)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)  # torch's CPU GradScaler, real
    return model, optimizer, scheduler, scaler


def test_a_skipped_fp16_step_leaves_weights_and_schedule_alone() -> None:
    model, optimizer, scheduler, scaler = _parts()
    weights = model.weight.detach().clone()
    x = torch.ones(2, 4)
    loss = (model(x) * torch.tensor(float("inf"))).sum()  # an inf gradient, for real
    scaler.scale(loss).backward()
    assert model.weight.grad is not None and not torch.isfinite(model.weight.grad).all()
    _, stepped = optimizer_step(optimizer, scheduler, scaler, model.parameters(), 1.0)
    assert stepped is False
    assert scaler.get_scale() == 2.0**9  # backed off
    assert scheduler.last_epoch == 0  # the schedule did not move
    assert torch.equal(model.weight.detach(), weights)

    scaler.scale(model(x).sum()).backward()  # a finite one
    _, stepped = optimizer_step(optimizer, scheduler, scaler, model.parameters(), 1.0)
    assert stepped is True and scheduler.last_epoch == 1
    assert not torch.equal(model.weight.detach(), weights)


def test_without_a_scaler_every_step_advances_the_schedule() -> None:
    model, optimizer, scheduler, _ = _parts()
    off = torch.amp.GradScaler("cpu", enabled=False)
    model(torch.ones(2, 4)).sum().backward()
    _, stepped = optimizer_step(optimizer, scheduler, off, model.parameters(), 1.0)
    assert stepped is True and scheduler.last_epoch == 1
