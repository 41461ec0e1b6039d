"""The guide's recommendations, as warnings: values that work but that the guide advises against.

Heads and learning-rate ranges, temperature, repetition penalty, multimodal encoder weights,
fp16 and the memory estimate. ``ADVICE`` lists them in the order they run, after
the checks of :mod:`registry.document.rules` (see :mod:`registry.document.ruleset`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from registry.document.issues import Issue, Rule, rule, warning


@rule("model.num_attention_heads")
def heads_recommended(doc: dict[str, Any]) -> Iterator[Issue]:
    """The guide recommends 8-32 heads; too many scatter attention."""
    heads = doc["model"]["num_attention_heads"]
    if not 8 <= heads <= 32:
        yield warning(
            "model.num_attention_heads",
            f"{heads} heads is outside the guide's "
            "8-32; too many heads scatter attention, too few limit it",
        )


@rule("training.learning_rate")
def learning_rate_recommended(doc: dict[str, Any]) -> Iterator[Issue]:
    """The guide recommends 1e-5 to 5e-5; higher is unstable."""
    lr = doc["training"]["learning_rate"]
    if not 1e-5 <= lr <= 5e-5:
        hint = "too high a rate makes training unstable" if lr > 5e-5 else "it may learn slowly"
        yield warning(
            "training.learning_rate", f"{lr:g} is outside the guide's 1e-5 to 5e-5; {hint}"
        )


@rule("generation.temperature")
def temperature_coherence(doc: dict[str, Any]) -> Iterator[Issue]:
    """Above 1.2 output may lose coherence; 0 means greedy decoding."""
    temperature = doc["generation"]["temperature"]
    if temperature > 1.2:
        yield warning(
            "generation.temperature",
            f"{temperature} is above 1.2: output may lose "
            "coherence; use 0.7-1.0 for creative writing",
        )
    elif temperature == 0:
        yield warning(
            "generation.temperature",
            "0 means greedy decoding (no sampling); "
            "top_p and sampling diversity then have no effect",
        )


@rule("generation.repetition_penalty")
def repetition_penalty_recommended(doc: dict[str, Any]) -> Iterator[Issue]:
    """The guide uses 1.0-1.2; below 1 rewards repetition, far above 1.2 garbles text."""
    penalty = doc["generation"]["repetition_penalty"]
    if penalty < 1.0:
        yield warning(
            "generation.repetition_penalty",
            f"{penalty} below 1.0 encourages repetition; use 1.0-1.2",
        )
    elif penalty > 1.5:
        yield warning(
            "generation.repetition_penalty",
            f"{penalty} is far above the guide's "
            "1.0-1.2 and can garble text; 1.2 already reduces repetition",
        )


@rule("task", "multimodal.visual_encoder_weight", "multimodal.text_encoder_weight")
def encoder_weights_sum(doc: dict[str, Any]) -> Iterator[Issue]:
    """For multimodal matching the two shares should sum to 1."""
    m = doc["multimodal"]
    total = m["visual_encoder_weight"] + m["text_encoder_weight"]
    if doc["task"] == "multimodal_matching" and abs(total - 1) > 1e-9:
        yield warning(
            "multimodal.text_encoder_weight",
            f"the encoder weights sum to "
            f"{total:g}, not 1; e.g. visual 0.7 and text 0.3 for image-text matching",
        )


@rule("task", "multimodal.visual_encoder_weight")
def visual_weight_for_task(doc: dict[str, Any]) -> Iterator[Issue]:
    """Text-only tasks switch the visual encoder off; matching wants it at 0.6-0.8."""
    task, visual = doc["task"], doc["multimodal"]["visual_encoder_weight"]
    if task in ("causal_lm", "classification") and visual > 0:
        yield warning(
            "multimodal.visual_encoder_weight",
            f"task {task} is text-only; the guide switches the visual encoder off (0)",
        )
    elif task == "multimodal_matching" and not 0.6 <= visual <= 0.8:
        yield warning(
            "multimodal.visual_encoder_weight",
            f"{visual} is outside the guide's 0.6-0.8 for image-text matching",
        )


@rule("training.precision")
def fp16_overflow(doc: dict[str, Any]) -> Iterator[Issue]:
    """fp16 has a narrow range; bf16 trains without loss scaling."""
    if doc["training"]["precision"] == "fp16":
        yield warning(
            "training.precision",
            "fp16 can overflow to inf/NaN without loss "
            "scaling; prefer bf16 where the GPU supports it",
        )


#: Parameters from which an fp32 run on a GPU is worth a warning (a small model is bound by
#: launches and memory traffic, not by the matrix units bf16 would speed up).
LARGE_FP32_PARAMETERS = 100_000_000


@rule("*")
def fp32_on_gpu(doc: dict[str, Any]) -> Iterator[Issue]:
    """A large model trained in fp32 on GPUs leaves most of the GPU's matrix throughput idle."""
    from registry.document.estimate import estimate

    training = doc["training"]
    if training["precision"] != "fp32" or doc["resources"]["gpus"] < 1:
        return
    est = estimate(doc)
    if est["parameters"] < LARGE_FP32_PARAMETERS:
        return
    bf16 = estimate({**doc, "training": {**training, "precision": "bf16"}})
    speed = (
        "with training.tf32: false its matrix products run in strict fp32 (about 67 of an "
        "H100's 990 dense bf16 TFLOPS)"
        if training.get("tf32") is False
        else "its matrix products run as TF32 at about half of bf16's throughput (495 of an "
        "H100's 990 dense TFLOPS)"
    )
    yield warning(
        "training.precision",
        f"fp32 for {est['parameters'] / 1e6:,.0f}M parameters on a GPU: {speed}, its "
        "activations take twice the memory and SDPA's flash kernels never run in fp32; set "
        "training.precision: bf16 (weights and optimiser state stay fp32; estimated peak "
        f"{bf16['peak_memory_gb']:.2f} GiB per device instead of {est['peak_memory_gb']:.2f})",
    )


@rule("*")
def memory_fits(doc: dict[str, Any]) -> Iterator[Issue]:
    """The estimated peak training memory per device must fit resources.gpu_memory_gb."""
    from registry.document.estimate import estimate

    est = estimate(doc)
    budget, peak = doc["resources"]["gpu_memory_gb"], est["peak_memory_gb"]
    if peak <= budget:
        return
    yield warning(
        "resources.gpu_memory_gb",
        f"estimated peak training memory {peak:.2f} GiB per device "
        f"exceeds gpu_memory_gb ({budget:g}) by {peak - budget:.2f} GiB; "
        + "; or ".join(_memory_remedies(doc, est)),
    )


def _memory_remedies(doc: dict[str, Any], est: dict[str, Any]) -> list[str]:
    """The guide's remedies (5.1), with the estimate each gives where there is one."""
    training, gpus = doc["training"], doc["resources"]["gpus"]
    remedies = []
    if not training["gradient_checkpointing"]:
        remedies.append(
            "set training.gradient_checkpointing: true (estimate "
            f"{est['peak_memory_gb_with_checkpointing']:.2f} GiB)"
        )
    remedies.append(
        "halve training.per_device_train_batch_size and double gradient_accumulation_steps"
    )
    if doc["model"]["model_dim"] > 768:
        remedies.append("lower model.model_dim to 768")
    if gpus > 1:
        sharded = f"{est['peak_memory_gb_fully_sharded']:.2f} GiB per device"
        if not training["gradient_checkpointing"]:
            with_ckpt = est["memory_per_device_gb"]["fully_sharded"]["with_checkpointing"]
            sharded += f", {with_ckpt:.2f} GiB with gradient checkpointing"
        remedies.append(
            f"shard the weights, gradients and optimiser state over the {gpus} GPUs (fully "
            "sharded data parallel: PyTorch FSDP or DeepSpeed ZeRO-3, the guide's model "
            f"parallelism): {sharded}"
        )
    need = est["gpus_to_fit_fully_sharded"]
    if need is not None and need > gpus:
        remedies.append(
            f"set resources.gpus to at least {need} and shard over them (fully sharded "
            "with gradient checkpointing fits then)"
        )
    return remedies


#: The guide's recommendations, in the order they run.
ADVICE: tuple[Rule, ...] = (
    heads_recommended,
    learning_rate_recommended,
    temperature_coherence,
    repetition_penalty_recommended,
    encoder_weights_sum,
    visual_weight_for_task,
    fp16_overflow,
    fp32_on_gpu,
    memory_fits,
)
