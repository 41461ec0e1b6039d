"""The validation rules of the config document: one small named function per rule.

Each rule reads a typed, normalised document (a dict) and yields :class:`Issue` s that name
the field by its dotted path and say what to do. A rule runs only when none of the fields it
reads is already in error, so rules never see a value of the wrong type or a zero divisor.
The guide's advisory warnings live in :mod:`registry.document.advice`; ``ruleset`` runs both.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from registry.document import architecture as arch
from registry.document import datasets
from registry.document.issues import Issue, Rule, RuleFunc, error, get, rule, warning

# -- field checks -----------------------------------------------------------------------------

#: Sizes and counts: each must be > 0 and at most this (beyond it no run could start).
SIZE_LIMITS: dict[str, float] = {
    "model.model_dim": 65_536,
    "model.num_attention_heads": 1_024,
    "model.num_hidden_layers": 1_024,
    "model.intermediate_size": 1_048_576,
    "model.max_position_embeddings": 1_048_576,
    "model.vocab_size": 4_194_304,
    "training.num_training_steps": 1_000_000_000,
    "training.per_device_train_batch_size": 65_536,
    "training.gradient_accumulation_steps": 65_536,
    "training.eval_every_steps": 1_000_000_000,
    "training.checkpoint_every_steps": 1_000_000_000,  # positive when set; null is the default
    "generation.max_length": 1_048_576,
    "generation.per_device_eval_batch_size": 65_536,
    "data.seq_len": 1_048_576,
    "resources.gpus": 4_096,
    "resources.gpu_memory_gb": 1_048_576,
}
#: Counts that may be zero.
COUNT_LIMITS: dict[str, int] = {
    "training.num_warmup_steps": 1_000_000_000,
    "training.seed": 2**32 - 1,
}


def _size_rule(path: str, limit: float, allow_zero: bool) -> RuleFunc:
    def check(doc: dict[str, Any]) -> Iterator[Issue]:
        value = get(doc, path)
        if value is None:
            return
        if value < 0 or (value == 0 and not allow_zero):
            what = "0 or more" if allow_zero else "positive (sizes and counts start at 1)"
            yield error(path, f"must be {what}, got {describe(value)}")
        elif value > limit:
            yield error(path, f"{describe(value)} is too large; use at most {limit:,}")

    check.__name__ = check.__qualname__ = "size_" + path.replace(".", "_")
    check.__doc__ = f"{path} must be {'>= 0' if allow_zero else '> 0'} and <= {limit:,}."
    return check


# One rule per field, so a bad size does not hide the checks of the others.
SIZE_RULES: tuple[Rule, ...] = (
    *(rule(p)(_size_rule(p, limit, allow_zero=False)) for p, limit in SIZE_LIMITS.items()),
    *(rule(p)(_size_rule(p, limit, allow_zero=True)) for p, limit in COUNT_LIMITS.items()),
)


@rule("training.learning_rate", "training.weight_decay", "training.max_grad_norm")
def optimizer_values(doc: dict[str, Any]) -> Iterator[Issue]:
    """learning_rate and max_grad_norm must be positive; weight_decay must not be negative."""
    t = doc["training"]
    if t["learning_rate"] <= 0:
        yield error(
            "training.learning_rate",
            f"must be positive, got {t['learning_rate']}; the guide recommends 1e-5 to 5e-5",
        )
    if t["weight_decay"] < 0:
        yield error("training.weight_decay", f"must be 0 or more, got {t['weight_decay']}")
    if t["max_grad_norm"] <= 0:
        yield error(
            "training.max_grad_norm", f"must be positive, got {t['max_grad_norm']} (1.0 is usual)"
        )


@rule("generation.top_p")
def top_p_range(doc: dict[str, Any]) -> Iterator[Issue]:
    """top_p is a probability mass in (0, 1]."""
    top_p = doc["generation"]["top_p"]
    if not 0 < top_p <= 1:
        yield error(
            "generation.top_p",
            f"must be in (0, 1], got {top_p}; use 0.9 for "
            "question answering, 0.95 for open generation",
        )


@rule("generation.temperature")
def temperature_non_negative(doc: dict[str, Any]) -> Iterator[Issue]:
    """A negative temperature is meaningless."""
    temperature = doc["generation"]["temperature"]
    if temperature < 0:
        yield error(
            "generation.temperature",
            f"must be 0 or more, got {temperature}; use "
            "0.3-0.5 for structured output, 0.7-1.0 for creative writing",
        )


@rule("generation.repetition_penalty")
def repetition_penalty_positive(doc: dict[str, Any]) -> Iterator[Issue]:
    """The penalty divides logits, so it must be positive."""
    penalty = doc["generation"]["repetition_penalty"]
    if penalty <= 0:
        yield error(
            "generation.repetition_penalty",
            f"must be positive, got {penalty}; 1.0 means no penalty, the guide uses 1.0-1.2",
        )


@rule("multimodal.visual_encoder_weight", "multimodal.text_encoder_weight")
def encoder_weights_range(doc: dict[str, Any]) -> Iterator[Issue]:
    """Encoder weights are shares in [0, 1]."""
    for name in ("visual_encoder_weight", "text_encoder_weight"):
        value = doc["multimodal"][name]
        if not 0 <= value <= 1:
            yield error(f"multimodal.{name}", f"must be in [0, 1], got {value}")


@rule("training.warmup_ratio")
def warmup_ratio_range(doc: dict[str, Any]) -> Iterator[Issue]:
    """warmup_ratio is a fraction of the run in [0, 1)."""
    ratio = doc["training"]["warmup_ratio"]
    if ratio is not None and not 0 <= ratio < 1:
        yield error(
            "training.warmup_ratio",
            f"must be in [0, 1), got {ratio}; the guide "
            "warms up over the first 10% of the steps (0.1)",
        )


@rule("data.validation_fraction")
def validation_fraction_range(doc: dict[str, Any]) -> Iterator[Issue]:
    """Some data must be held out, and most must be left to train on."""
    fraction = doc["data"]["validation_fraction"]
    if not 0 < fraction < 1:
        yield error(
            "data.validation_fraction",
            f"must be in (0, 1), got {fraction}; 0.1 holds out a tenth of the corpus",
        )
    elif fraction > 0.5:
        yield warning(
            "data.validation_fraction",
            f"{fraction} holds out more data than is trained on; 0.05-0.2 is usual",
        )


def file_dataset_problem(path: str) -> str | None:
    """Why ``file:<path>`` cannot name a file inside the worker's data root, or None.

    The worker reads ``file:`` datasets only from REGISTRY_DATA_ROOT; a path that is absolute,
    starts with ``~``, climbs out with ``..`` or hides a NUL could name any file on the machine.
    """
    relative = "give a path relative to the worker's data root (REGISTRY_DATA_ROOT)"
    if "\x00" in path:
        return f"a file: path may not contain a NUL character; {relative}"
    if path.startswith("~"):
        return f"file:{path} starts with '~', which is not expanded; {relative}"
    if path.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", path):
        return f"file:{path} is an absolute path; {relative}"
    if ".." in re.split(r"[/\\]", path):
        return f"file:{path} has a '..' segment, which could leave the data root; {relative}"
    return None


@rule("data.dataset")
def dataset_source(doc: dict[str, Any]) -> Iterator[Issue]:
    """The corpus must be one the worker can load with no network, from inside its data root."""
    dataset = doc["data"]["dataset"]
    if dataset in datasets.NAMES:
        return
    if dataset.startswith("file:") and dataset[5:].strip():
        problem = file_dataset_problem(dataset[5:])
        if problem is not None:
            yield error("data.dataset", problem)
        return
    yield error(
        "data.dataset",
        f"unknown dataset {dataset!r}; use {', '.join(datasets.NAMES)} or "
        "file:<path relative to the worker's REGISTRY_DATA_ROOT> (GET /api/v1/datasets)",
    )


# -- cross-field checks -----------------------------------------------------------------------


@rule("model.model_dim", "model.num_attention_heads")
def heads_divide_model_dim(doc: dict[str, Any]) -> Iterator[Issue]:
    """Every head gets model_dim / heads dimensions, so heads must divide model_dim."""
    dim, heads = doc["model"]["model_dim"], doc["model"]["num_attention_heads"]
    if heads > 0 and dim % heads:
        fits = [h for h in range(8, 33) if dim % h == 0]
        hint = (
            f"head counts in the guide's 8-32 that divide it: {', '.join(map(str, fits))}"
            if fits
            else "no head count in 8-32 divides it; use a multiple of 64"
        )
        yield error(
            "model.num_attention_heads",
            f"model.model_dim ({dim}) is not divisible by num_attention_heads ({heads}); {hint}",
        )


@rule("training.warmup_ratio", "training.num_warmup_steps")
def warmup_not_both(doc: dict[str, Any]) -> Iterator[Issue]:
    """warmup_ratio and num_warmup_steps say the same thing; give one."""
    t = doc["training"]
    if t["warmup_ratio"] is not None and t["num_warmup_steps"] is not None:
        yield error(
            "training.num_warmup_steps",
            "give warmup_ratio or num_warmup_steps, not "
            "both; remove one (set warmup_ratio: null to count in steps)",
        )


@rule("training.warmup_ratio", "training.num_warmup_steps", "training.num_training_steps")
def warmup_shorter_than_training(doc: dict[str, Any]) -> Iterator[Issue]:
    """The warmup must end before the run does."""
    from registry.document.estimate import warmup_steps

    t = doc["training"]
    if t["warmup_ratio"] is not None and t["num_warmup_steps"] is not None:
        return
    steps, total = warmup_steps(doc), t["num_training_steps"]
    if steps >= total:
        path = (
            "training.num_warmup_steps"
            if t["num_warmup_steps"] is not None
            else "training.warmup_ratio"
        )
        yield error(
            path,
            f"the warmup ({steps} steps) must be shorter than "
            f"num_training_steps ({total}); the guide warms up over the first 10%",
        )


@rule("model.max_position_embeddings", "data.seq_len")
def seq_len_fits_positions(doc: dict[str, Any]) -> Iterator[Issue]:
    """Training sequences must fit the position encoding."""
    seq, positions = doc["data"]["seq_len"], doc["model"]["max_position_embeddings"]
    if seq > positions:
        yield error(
            "data.seq_len",
            f"{seq} is longer than model.max_position_embeddings "
            f"({positions}); shorten it or raise max_position_embeddings",
        )


@rule("model.max_position_embeddings", "generation.max_length")
def max_length_fits_positions(doc: dict[str, Any]) -> Iterator[Issue]:
    """Generation past the trained positions degrades."""
    length, positions = doc["generation"]["max_length"], doc["model"]["max_position_embeddings"]
    if length > positions:
        yield warning(
            "generation.max_length",
            f"{length} is longer than "
            f"model.max_position_embeddings ({positions}); text past that position "
            "is unreliable, lower max_length or raise max_position_embeddings",
        )


@rule("model.vocab_size", "data.tokenizer")
def vocab_covers_tokenizer(doc: dict[str, Any]) -> Iterator[Issue]:
    """The embedding must hold every id the tokenizer emits."""
    vocab, tokenizer = doc["model"]["vocab_size"], doc["data"]["tokenizer"]
    if vocab is None:
        return
    if vocab < arch.BYTE_VOCAB_SIZE:
        yield error(
            "model.vocab_size",
            f"{vocab} is too small for the {tokenizer} tokenizer, "
            f"which needs at least {arch.BYTE_VOCAB_SIZE} ids (256 bytes + pad, bos, "
            "eos); use null to take the tokenizer's size",
        )
    elif tokenizer == "byte" and vocab > arch.BYTE_VOCAB_SIZE:
        yield warning(
            "model.vocab_size",
            f"the byte tokenizer uses only "
            f"{arch.BYTE_VOCAB_SIZE} ids; the other {vocab - arch.BYTE_VOCAB_SIZE} "
            "embedding rows are never trained; use null",
        )


@rule("training.eval_every_steps", "training.num_training_steps")
def evaluation_happens(doc: dict[str, Any]) -> Iterator[Issue]:
    """An eval interval longer than the run evaluates only at the end."""
    every, total = doc["training"]["eval_every_steps"], doc["training"]["num_training_steps"]
    if every > total:
        yield warning(
            "training.eval_every_steps",
            f"{every} is more than num_training_steps "
            f"({total}), so the run is evaluated only at the end",
        )


# -- type errors, rewritten -------------------------------------------------------------------


def describe(value: Any) -> str:
    """A short rendering of a user's value and its kind, for messages."""
    kinds = {
        bool: "a boolean",
        str: "text",
        list: "a list",
        dict: "a mapping",
        type(None): "null",
        float: "a number with a fraction",
        int: "a whole number",
    }
    kind = kinds.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        return kind
    shown = json.dumps(value, default=str, ensure_ascii=False)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"{shown} ({kind})"


def type_error_message(
    err: Any, fields_of: Callable[[str], list[str] | None], top_level: list[str]
) -> str:
    """Pydantic's error as what is wrong and what to do; fields_of gives an object's fields."""
    kind, loc, got = err["type"], err["loc"], describe(err.get("input"))
    if kind == "extra_forbidden":
        return unknown_field_message(loc, fields_of, top_level)
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number (e.g. 16), got {got}"
    if kind in ("float_type", "float_parsing"):
        unquote = "; write it without quotes" if isinstance(err.get("input"), str) else ""
        return f"must be a number (e.g. 3.0e-5), got {got}{unquote}"
    if kind == "finite_number":
        return f"must be a finite number, got {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, got {got}"
    if kind == "invalid_key":
        return f"keys must be text, got {got}; write the field's name"
    if kind == "string_type":
        return f"must be text, got {got}"
    if kind == "literal_error":
        return f"must be one of {err.get('ctx', {}).get('expected', '')}; got {got}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        fields = fields_of(".".join(map(str, loc))) if loc else None
        listed = f" ({', '.join(fields)})" if fields else ""
        return f"must be a mapping of fields{listed}, got {got}"
    return f"{err['msg']} (got {got})"


def unknown_field_message(
    loc: tuple[Any, ...], fields_of: Callable[[str], list[str] | None], top_level: list[str]
) -> str:
    """Unknown key, with difflib's closest known name as a "did you mean"."""
    name = str(loc[-1])
    parent = ".".join(map(str, loc[:-1]))
    if len(loc) == 1:
        choices, where = top_level, "a top-level key"
    else:
        kind = f"section '{parent}'" if len(loc) == 2 else f"'{parent}'"
        choices, where = fields_of(parent) or [], f"a field of {kind}"
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if close:
        return f"unknown field: '{name}' is not {where}; did you mean '{close[0]}'?"
    return f"unknown field: '{name}' is not {where}; remove it (known: {', '.join(choices)})"


#: The checks, in the order they run: field checks first, then cross-field checks.
CHECKS: tuple[Rule, ...] = (
    *SIZE_RULES,
    optimizer_values,
    top_p_range,
    temperature_non_negative,
    repetition_penalty_positive,
    encoder_weights_range,
    warmup_ratio_range,
    validation_fraction_range,
    dataset_source,
    heads_divide_model_dim,
    warmup_not_both,
    warmup_shorter_than_training,
    seq_len_fits_positions,
    max_length_fits_positions,
    vocab_covers_tokenizer,
    evaluation_happens,
)
