"""The config document (schema_version 1): typed schema, normalisation, hash, diff.

Pure: no Flask, no database, no torch. The rules that turn a typed document into errors and
warnings live in :mod:`registry.document.rules` (and :mod:`registry.document.advice`); parsing
text into data lives in :mod:`registry.document.parse` (``parse_document`` is re-exported here).
The ``model`` section, with its nested ``moe`` and ``mla`` objects, is defined in
:mod:`registry.document.spec_model` (re-exported here), the strict field types in
:mod:`registry.document.spec_types`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

from pydantic import Field, ValidationError
from pydantic import model_validator as _model_validator

from registry.document.canonical import canonical_json, config_hash, diff, dump, flatten
from registry.document.issues import Issue
from registry.document.parse import parse_document
from registry.document.rules import describe, type_error_message
from registry.document.ruleset import run_rules
from registry.document.spec_model import LATER_MODEL_FIELDS, NESTED, ModelSection, drop_unset
from registry.document.spec_multimodal import LATER_MULTIMODAL_FIELDS, MultimodalSection
from registry.document.spec_multimodal import drop_unset as drop_unset_multimodal
from registry.document.spec_types import ADDED_DECEMBER_2026, Bool, Float, Int, Str
from registry.document.spec_types import Section as _Section
from registry.document.spec_types import spec_field as _f
from registry.errors import InvalidConfig

__all__ = [
    "SECTIONS",
    "Document",
    "Issue",
    "ModelSection",
    "Validation",
    "canonical_json",
    "config_hash",
    "diff",
    "dump",
    "flatten",
    "normalize",
    "parse_document",
    "validate",
]

SCHEMA_VERSION = 1
#: Optional fields added later: null (or false, or an object of nulls) is left out of the
#: normalised document, so older documents keep their hash (CONTRACT 5.4, 5.6).
LATER_FIELDS: tuple[str, ...] = (
    "training.checkpoint_every_steps",
    "training.tf32",
    "training.compile",
    *LATER_MODEL_FIELDS,
    *LATER_MULTIMODAL_FIELDS,
)
#: What a null training.checkpoint_every_steps means (kept cheap for small runs).
DEFAULT_CHECKPOINT_EVERY_STEPS = 1000
#: The sections of the document, in the order they are written.
SECTIONS: tuple[str, ...] = (
    "model",
    "training",
    "generation",
    "multimodal",
    "data",
    "resources",
)


class TrainingSection(_Section):
    """The optimiser, schedule and numerics of a training run."""

    learning_rate: Float = _f(
        3e-5,
        "Peak AdamW learning rate; too high makes training unstable.",
        "1e-5 to 5e-5",
        exclusiveMinimum=0,
    )
    scheduler: Literal["linear", "cosine", "constant"] = _f(
        "linear",
        "Learning-rate schedule after the warmup: linear or cosine decay, or constant.",
        "linear warmup to start cold; cosine decay for a finer final convergence",
    )
    warmup_ratio: Float | None = _f(
        0.1,
        "Fraction of num_training_steps spent warming the learning rate up linearly; "
        "null when num_warmup_steps is given.",
        "0.1 (the first 10% of the steps)",
        minimum=0,
        exclusiveMaximum=1,
    )
    num_warmup_steps: Int | None = _f(
        None,
        "Warmup length in steps, instead of warmup_ratio (not both).",
        minimum=0,
    )
    num_training_steps: Int = _f(1000, "Optimiser steps in the run.", exclusiveMinimum=0)
    per_device_train_batch_size: Int = _f(
        16,
        "Sequences per device per micro-batch.",
        "16-32 on a 16GB GPU",
        exclusiveMinimum=0,
    )
    gradient_accumulation_steps: Int = _f(
        1,
        "Micro-batches accumulated per optimiser step (a bigger effective batch at the "
        "memory cost of one micro-batch).",
        exclusiveMinimum=0,
    )
    gradient_checkpointing: Bool = _f(
        False,
        "Recompute activations in the backward pass: much less memory, 20-35% slower.",
        "true when the run does not fit in GPU memory",
    )
    weight_decay: Float = _f(0.0, "AdamW decoupled weight decay.", minimum=0)
    max_grad_norm: Float = _f(1.0, "Gradient-norm clipping threshold.", exclusiveMinimum=0)
    precision: Literal["fp32", "bf16", "fp16"] = _f(
        "fp32",
        "Activation precision (autocast); weights and optimiser state stay fp32.",
        "bf16 where the hardware has it; fp16 can overflow",
    )
    seed: Int = _f(42, "Random seed for initialisation, data order and sampling.", minimum=0)
    eval_every_steps: Int = _f(100, "Evaluate every this many steps.", exclusiveMinimum=0)
    checkpoint_every_steps: Int | None = _f(
        None,
        "Save the training state (weights, optimiser, schedule, RNG, data position) every this "
        f"many steps for a later attempt to resume; null: every {DEFAULT_CHECKPOINT_EVERY_STEPS}"
        " steps. A warm stop always saves one.",
        "null for short runs; about an hour of training on long ones",
        exclusiveMinimum=0,
        **{"x-added": ADDED_DECEMBER_2026},
    )
    tf32: Bool | None = _f(
        True,
        "TensorFloat-32 for float32 matrix products and convolutions on a GPU (10-bit "
        "mantissa inputs, float32 accumulation: several times faster on Ampere and later); "
        "true (or null): on, on CUDA; false: strict float32. The CPU has no TF32.",
        "null; false only when float32 results must match bit for bit across GPU models",
        **{"x-added": ADDED_DECEMBER_2026},
    )
    compile: Bool | None = _f(
        False,
        "Train a torch.compile'd model (generation runs on the plain module); the first "
        "steps pay the compilation. false (or null): eager.",
        "true for long runs on a GPU; false for short ones and for debugging",
        **{"x-added": ADDED_DECEMBER_2026},
    )

    @_model_validator(mode="after")
    def _warmup_form(self) -> TrainingSection:
        # num_warmup_steps given alone replaces the default ratio; both null means no warmup.
        if self.num_warmup_steps is not None and "warmup_ratio" not in self.model_fields_set:
            self.warmup_ratio = None
        elif self.num_warmup_steps is None and self.warmup_ratio is None:
            self.warmup_ratio = 0.0
        return self


class GenerationSection(_Section):
    """Sampling parameters for generation and evaluation."""

    temperature: Float = _f(
        0.7,
        "Sampling temperature: lower is more deterministic; 0 is greedy.",
        "0.3-0.5 structured output (e.g. code); 0.7-1.0 creative writing; >1.2 loses coherence",
        minimum=0,
    )
    top_p: Float = _f(
        0.92,
        "Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p.",
        "0.9 for deterministic tasks (QA); 0.95 for open generation; tune with temperature",
        exclusiveMinimum=0,
        maximum=1,
    )
    repetition_penalty: Float = _f(
        1.0,
        "Penalty on tokens already generated; 1.0 is none.",
        "1.0-1.2",
        exclusiveMinimum=0,
    )
    max_length: Int = _f(512, "Longest generated sequence, in tokens.", exclusiveMinimum=0)
    per_device_eval_batch_size: Int = _f(
        32,
        "Sequences per device in evaluation and generation.",
        "32 for efficient inference",
        exclusiveMinimum=0,
    )


class DataSection(_Section):
    """The corpus and its tokenisation."""

    dataset: Str = _f(
        "builtin:pydoc",
        "builtin:pydoc (CPython's pydoc_data.topics), builtin:licenses "
        "(/usr/share/common-licenses) for causal_lm; builtin:stdlib-docs for classification; "
        "builtin:shapes for multimodal_matching (GET /api/v1/datasets); or file:<path> under "
        "the worker's REGISTRY_DATA_ROOT (text; JSONL of text and label; a captions folder).",
        pattern=r"^(builtin:(pydoc|licenses|stdlib-docs|shapes)|file:.+)$",
    )
    tokenizer: Literal["byte", "bpe"] = _f(
        "byte",
        "byte: 256 byte ids + pad/bos/eos (259); bpe: a byte-level BPE trained locally "
        "on the dataset and saved with the run.",
    )
    seq_len: Int = _f(128, "Training sequence length in tokens.", exclusiveMinimum=0)
    validation_fraction: Float = _f(
        0.1,
        "Share of the corpus held out for validation.",
        "0.05-0.2",
        exclusiveMinimum=0,
        exclusiveMaximum=1,
    )


class ResourcesSection(_Section):
    """The hardware the run must fit."""

    gpus: Int = _f(
        1, "GPUs (data parallel: each holds a full copy of the model).", exclusiveMinimum=0
    )
    gpu_memory_gb: Float = _f(
        16.0,
        "Memory per GPU in GiB that the run must fit in; drives the memory estimate.",
        "8 for efficient inference; 16+ for model_dim 1024-1536",
        exclusiveMinimum=0,
    )


class Document(_Section):
    """A config document, schema_version 1."""

    schema_version: Literal[1] = _f(1, "The document format version; always 1.")
    task: Literal["causal_lm", "classification", "multimodal_matching"] = _f(
        "causal_lm", "What the model is trained for."
    )
    model: ModelSection = Field(default_factory=ModelSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    generation: GenerationSection = Field(default_factory=GenerationSection)
    multimodal: MultimodalSection = Field(default_factory=MultimodalSection)
    data: DataSection = Field(default_factory=DataSection)
    resources: ResourcesSection = Field(default_factory=ResourcesSection)

    @_model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # "model:" with every field commented out is YAML null: an empty section.
        if isinstance(data, dict):
            return {k: ({} if k in SECTIONS and v is None else v) for k, v in data.items()}
        return data


SECTION_MODELS: dict[str, type[_Section]] = {
    name: cast(type[_Section], Document.model_fields[name].annotation) for name in SECTIONS
}
_TOP_LEVEL = ["schema_version", "task", *SECTIONS]


def _fields_of(path: str) -> list[str] | None:
    """The field names of a section (``model``) or a nested object (``model.moe``)."""
    section, _, nested = path.partition(".")
    model: type[_Section] | None = SECTION_MODELS.get(section)
    if nested:
        model = NESTED.get(nested) if section == "model" else None
    return list(model.model_fields) if model else None


@dataclass
class Validation:
    """The outcome of validating a document: the /validate answer."""

    valid: bool
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    normalized: dict[str, Any] | None = None
    hash: str | None = None
    estimate: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"valid", "errors", "warnings", "normalized", "hash", "estimate"}``."""
        return {
            "valid": self.valid,
            "errors": [i.to_dict() for i in self.errors],
            "warnings": [i.to_dict() for i in self.warnings],
            "normalized": self.normalized,
            "hash": self.hash,
            "estimate": self.estimate,
        }


def validate(raw: Any) -> Validation:
    """Check a parsed document; never raises for bad input."""
    if not isinstance(raw, dict):
        issue = Issue(
            "document",
            f"the document must be a mapping of sections, got "
            f"{describe(raw)}; start from a preset or `registry export`",
            "error",
        )
        return Validation(valid=False, errors=[issue])
    errors, bad_paths, doc = _typed(raw)
    rule_errors, warnings = run_rules(doc, bad_paths)
    errors += rule_errors
    if errors:
        return Validation(valid=False, errors=errors, warnings=warnings)
    from registry.document.estimate import estimate

    doc = _without_unset_later_fields(doc)
    return Validation(True, [], warnings, doc, config_hash(doc), estimate(doc))


def _without_unset_later_fields(doc: dict[str, Any]) -> dict[str, Any]:
    training = doc["training"]
    if training.get("checkpoint_every_steps", 0) is None:
        del training["checkpoint_every_steps"]
    if training.get("tf32", False) in (None, True):  # null and true both mean "TF32 on CUDA"
        del training["tf32"]
    if training.get("compile", True) in (None, False):  # null and false both mean "eager"
        del training["compile"]
    doc["model"] = drop_unset(doc["model"])
    doc["multimodal"] = drop_unset_multimodal(doc["multimodal"])
    return doc


def normalize(raw: Any) -> dict[str, Any]:
    """The normalised document (defaults filled in), or raise InvalidConfig."""
    result = validate(raw)
    if not result.valid or result.normalized is None:
        raise InvalidConfig([i.to_dict() for i in result.errors])
    return result.normalized


def _typed(raw: dict[Any, Any]) -> tuple[list[Issue], set[str], dict[str, Any]]:
    """Type-check, then re-check without the bad fields so the rules see everything else."""
    errors: list[Issue] = []
    bad: set[str] = set()
    cleaned: Any = raw
    for _ in range(4):
        try:
            doc = Document.model_validate(cleaned).model_dump(mode="python")
            return errors, bad, doc
        except ValidationError as exc:
            for err in exc.errors():
                path = ".".join(str(p) for p in err["loc"])
                if path not in bad:
                    bad.add(path)
                    message = type_error_message(err, _fields_of, _TOP_LEVEL)
                    errors.append(Issue(path or "document", message, "error"))
            cleaned = _without(cleaned, [e["loc"] for e in exc.errors()])
    return errors, bad, Document().model_dump(mode="python")  # pragma: no cover


def _without(raw: dict[Any, Any], locs: list[tuple[Any, ...]]) -> dict[Any, Any]:
    """A copy of ``raw`` without the values at ``locs`` (or the nearest mapping above one)."""
    out = _copied(raw)
    for loc in locs:
        node = out
        for depth, key in enumerate(loc):
            below = node.get(key)
            if depth == len(loc) - 1 or not isinstance(below, dict):
                node.pop(key, None)
                break
            node = below
    return out


def _copied(value: Any) -> Any:
    return {k: _copied(v) for k, v in value.items()} if isinstance(value, dict) else value
