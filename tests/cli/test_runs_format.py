"""``registry runs show`` says how a re-run reproduced its original."""

from __future__ import annotations

from registry.cli.runs import describe_reproduction, format_run
from registry.services.reproduction import compare

H200 = {"device": "cuda:0 NVIDIA H200", "gpu_name": "NVIDIA H200", "torch": "2.13.0"}
A100 = H200 | {"device": "cuda:0 NVIDIA A100", "gpu_name": "NVIDIA A100"}


def test_the_verdicts() -> None:
    same = compare({"val_loss": 2.5}, {"val_loss": 2.5}, H200, H200)
    assert describe_reproduction(same).startswith("identical")
    close = compare({"val_loss": 2.5}, {"val_loss": 2.51}, H200, A100)
    assert describe_reproduction(close) == (
        "another environment: gpu_name NVIDIA H200 -> NVIDIA A100; "
        "within the tolerance (1% relative, 1e-06 absolute)"
    )
    far = compare({"val_loss": 2.5, "train_loss": 2.0}, {"val_loss": 3.0, "train_loss": 2.0})
    assert describe_reproduction(far) == (
        "same environment; outside the tolerance (1% relative, 1e-06 absolute): val_loss"
    )
    assert describe_reproduction({"deltas": {}, "identical": False}) == (
        "same environment; metrics differ"  # a result stored before the tolerance
    )


def test_show_prints_the_verdict_and_a_device_errors_hint() -> None:
    run = {
        "id": 2,
        "kind": "train",
        "config": "c",
        "version": 1,
        "status": "failed",
        "attempt": 3,
        "reproduction": compare({"val_loss": 2.5}, {"val_loss": 2.5}, H200, A100),
        "error": {"kind": "device_error", "message": "CUDA error: ...", "hint": "not the config"},
    }
    text = format_run(run)
    assert "  reproduction: another environment: gpu_name" in text
    assert "    hint: not the config" in text
