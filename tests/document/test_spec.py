"""The config document: parsing, typing, rules, normalisation, hash, diff, schema."""

from __future__ import annotations

import copy
import itertools
import json
import math
import time
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.document import fields, rules, rules_architecture, ruleset, spec
from registry.document.issues import Issue
from registry.errors import DocumentParseError, InvalidConfig
from tests.support.presetdata import hash_before_dataset

# -- parsing ----------------------------------------------------------------------------------


def test_parse_yaml_and_json_give_the_same_data() -> None:
    text_yaml = "training:\n  learning_rate: 3e-5\n  num_training_steps: 1e3\n"
    text_json = '{"training": {"learning_rate": 0.00003, "num_training_steps": 1000}}'
    assert spec.parse_document(text_yaml) == {
        "training": {"learning_rate": 3e-5, "num_training_steps": 1000.0}
    }
    assert spec.parse_document(text_json) == {
        "training": {"learning_rate": 3e-5, "num_training_steps": 1000}
    }
    assert spec.parse_document(text_json, "yaml") == spec.parse_document(text_json, "json")


@pytest.mark.parametrize(
    ("text", "fmt", "line", "column"),
    [
        ("model:\n  model_dim: [1, 2\n", "yaml", 3, 1),
        ("model:\n  model_dim: 1\n bad: 2\n", "yaml", 3, 2),
        ('{"model": {"model_dim": 1,}}', "json", 1, 27),
        ('{\n  "model": 1\n  "task": 2}', "json", 3, 3),
        ("model:\n  model_dim: 1\n  model_dim: 2\n", "yaml", 3, 3),
    ],
)
def test_parse_errors_carry_line_and_column(text: str, fmt: str, line: int, column: int) -> None:
    with pytest.raises(DocumentParseError) as info:
        spec.parse_document(text, fmt)
    assert info.value.extra == {"line": line, "column": column}
    assert f"line {line}" in info.value.message


def test_json_duplicate_keys_are_rejected() -> None:
    with pytest.raises(DocumentParseError, match="appears twice"):
        spec.parse_document('{"task": "causal_lm", "task": "classification"}')


def test_python_tags_are_rejected() -> None:
    with pytest.raises(DocumentParseError, match="python/object"):
        spec.parse_document("task: !!python/object/apply:os.system ['echo hi']\n")


def _billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghijklmnop"
    for prev, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_rejected_quickly() -> None:
    start = time.perf_counter()
    with pytest.raises(DocumentParseError, match="alias bomb") as info:
        spec.parse_document(_billion_laughs())
    assert time.perf_counter() - start < 1.0
    assert info.value.extra["line"] >= 1


def test_many_aliases_are_rejected() -> None:
    text = "a: &x 1\nb: [" + ", ".join(["*x"] * 150) + "]\n"
    with pytest.raises(DocumentParseError, match="aliases"):
        spec.parse_document(text)


def test_recursive_alias_is_rejected() -> None:
    with pytest.raises(DocumentParseError, match="recursive"):
        spec.parse_document("a: &a [*a]\n")


def test_a_few_aliases_and_merge_keys_still_work() -> None:
    text = "base: &b {temperature: 0.3}\ngeneration:\n  <<: *b\n  top_p: 0.9\n"
    assert spec.parse_document(text)["generation"] == {"temperature": 0.3, "top_p": 0.9}


def test_empty_yaml_is_none_and_invalid() -> None:
    assert spec.parse_document("") is None
    assert not spec.validate(None).valid


# -- typing and unknown fields -----------------------------------------------------------------


def _errors(raw: Any) -> dict[str, str]:
    return {i.field: i.message for i in spec.validate(raw).errors}


def _warnings(raw: Any) -> dict[str, str]:
    return {i.field: i.message for i in spec.validate(raw).warnings}


def test_empty_document_is_valid_and_fully_defaulted() -> None:
    result = spec.validate({})
    assert result.valid and not result.errors and not result.warnings
    assert result.normalized is not None
    assert list(result.normalized) == ["schema_version", "task", *spec.SECTIONS]
    assert result.normalized["model"]["model_dim"] == 256
    assert set(result.to_dict()) == {
        "valid",
        "errors",
        "warnings",
        "normalized",
        "hash",
        "estimate",
    }


def test_did_you_mean_for_fields_and_sections() -> None:
    errors = _errors({"training": {"learnin_rate": 3e-5}, "modle": {}})
    assert "did you mean 'learning_rate'?" in errors["training.learnin_rate"]
    assert "did you mean 'model'?" in errors["modle"]
    far = _errors({"training": {"zzz": 1}})["training.zzz"]
    assert "did you mean" not in far and "learning_rate" in far


@pytest.mark.parametrize(
    ("raw", "path", "words"),
    [
        ({"model": {"model_dim": "12"}}, "model.model_dim", "whole number"),
        ({"model": {"model_dim": 12.5}}, "model.model_dim", "whole number"),
        ({"model": {"model_dim": True}}, "model.model_dim", "whole number"),
        ({"training": {"learning_rate": "3e-5"}}, "training.learning_rate", "without quotes"),
        ({"training": {"learning_rate": False}}, "training.learning_rate", "a number"),
        ({"training": {"learning_rate": math.nan}}, "training.learning_rate", "finite"),
        (
            {"training": {"gradient_checkpointing": 1}},
            "training.gradient_checkpointing",
            "true or false",
        ),
        ({"training": {"scheduler": "step"}}, "training.scheduler", "'linear'"),
        ({"training": {"precision": "int8"}}, "training.precision", "'bf16'"),
        ({"task": "translation"}, "task", "'causal_lm'"),
        ({"model": {"architecture": "gpt2"}}, "model.architecture", "'deepseek_v2'"),
        ({"data": {"tokenizer": "sentencepiece"}}, "data.tokenizer", "'bpe'"),
        ({"data": {"dataset": 5}}, "data.dataset", "text"),
        ({"schema_version": 2}, "schema_version", "1"),
        ({"model": [1]}, "model", "mapping of fields (architecture"),
    ],
)
def test_wrong_types_are_errors_naming_the_field(raw: Any, path: str, words: str) -> None:
    errors = _errors(raw)
    assert path in errors, errors
    assert words in errors[path]
    assert "Input should" not in errors[path]  # pydantic's wording is rewritten


def test_integral_floats_count_as_ints_and_ints_as_floats() -> None:
    doc = spec.normalize({"model": {"model_dim": 128.0}, "training": {"learning_rate": 1}})
    assert doc["model"]["model_dim"] == 128 and type(doc["model"]["model_dim"]) is int
    assert type(doc["training"]["learning_rate"]) is float


def test_null_section_is_an_empty_section() -> None:
    assert spec.normalize({"model": None}) == spec.normalize({})


def test_non_mapping_document_is_one_error() -> None:
    for raw in ([1, 2], "text", 3, None):
        result = spec.validate(raw)
        assert not result.valid and [i.field for i in result.errors] == ["document"]


def test_type_errors_do_not_hide_other_errors() -> None:
    errors = _errors(
        {"model": {"model_dim": "x", "num_hidden_layers": 0}, "generation": {"top_p": 2.0}}
    )
    assert {"model.model_dim", "model.num_hidden_layers", "generation.top_p"} <= set(errors)


def test_normalize_raises_invalid_config_with_field_errors() -> None:
    with pytest.raises(InvalidConfig) as info:
        spec.normalize({"generation": {"top_p": 0}})
    assert info.value.extra["errors"][0]["field"] == "generation.top_p"
    assert set(info.value.extra["errors"][0]) == {"field", "message"}


# -- rules: each case must disappear when its rule is removed ---------------------------------

BIG = {
    "model": {"model_dim": 4096, "num_attention_heads": 32, "num_hidden_layers": 32},
    "resources": {"gpu_memory_gb": 16.0},
}

RULE_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    *[
        (f"size_{p.replace('.', '_')}", {p.split(".")[0]: {p.split(".")[1]: 0}}, p, "error")
        for p in rules.SIZE_LIMITS
    ],
    ("size_model_model_dim", {"model": {"model_dim": 10**9}}, "model.model_dim", "error"),
    ("size_training_seed", {"training": {"seed": -1}}, "training.seed", "error"),
    (
        "size_training_checkpoint_every_steps",
        {"training": {"checkpoint_every_steps": -5}},
        "training.checkpoint_every_steps",
        "error",
    ),
    (
        "size_training_num_warmup_steps",
        {"training": {"num_warmup_steps": -1}},
        "training.num_warmup_steps",
        "error",
    ),
    ("optimizer_values", {"training": {"learning_rate": 0.0}}, "training.learning_rate", "error"),
    ("optimizer_values", {"training": {"weight_decay": -0.1}}, "training.weight_decay", "error"),
    ("optimizer_values", {"training": {"max_grad_norm": 0}}, "training.max_grad_norm", "error"),
    ("top_p_range", {"generation": {"top_p": 0}}, "generation.top_p", "error"),
    ("top_p_range", {"generation": {"top_p": 1.01}}, "generation.top_p", "error"),
    (
        "temperature_non_negative",
        {"generation": {"temperature": -0.1}},
        "generation.temperature",
        "error",
    ),
    (
        "repetition_penalty_positive",
        {"generation": {"repetition_penalty": 0}},
        "generation.repetition_penalty",
        "error",
    ),
    (
        "encoder_weights_range",
        {"multimodal": {"visual_encoder_weight": 1.5}},
        "multimodal.visual_encoder_weight",
        "error",
    ),
    (
        "encoder_weights_range",
        {"multimodal": {"text_encoder_weight": -0.1}},
        "multimodal.text_encoder_weight",
        "error",
    ),
    ("warmup_ratio_range", {"training": {"warmup_ratio": 1.0}}, "training.warmup_ratio", "error"),
    ("warmup_ratio_range", {"training": {"warmup_ratio": -0.1}}, "training.warmup_ratio", "error"),
    (
        "validation_fraction_range",
        {"data": {"validation_fraction": 1.0}},
        "data.validation_fraction",
        "error",
    ),
    (
        "validation_fraction_range",
        {"data": {"validation_fraction": 0.6}},
        "data.validation_fraction",
        "warning",
    ),
    ("dataset_source", {"data": {"dataset": "hf:wikitext"}}, "data.dataset", "error"),
    ("dataset_source", {"data": {"dataset": "file:"}}, "data.dataset", "error"),
    (
        "heads_divide_model_dim",
        {"model": {"model_dim": 100, "num_attention_heads": 12}},
        "model.num_attention_heads",
        "error",
    ),
    (
        "warmup_not_both",
        {"training": {"warmup_ratio": 0.1, "num_warmup_steps": 10}},
        "training.num_warmup_steps",
        "error",
    ),
    (
        "warmup_shorter_than_training",
        {"training": {"num_warmup_steps": 1000}},
        "training.num_warmup_steps",
        "error",
    ),
    (
        "warmup_shorter_than_training",
        {"training": {"warmup_ratio": 0.95, "num_training_steps": 10}},
        "training.warmup_ratio",
        "error",
    ),
    ("seq_len_fits_positions", {"data": {"seq_len": 1024}}, "data.seq_len", "error"),
    (
        "max_length_fits_positions",
        {"generation": {"max_length": 1024}},
        "generation.max_length",
        "warning",
    ),
    ("vocab_covers_tokenizer", {"model": {"vocab_size": 258}}, "model.vocab_size", "error"),
    ("vocab_covers_tokenizer", {"model": {"vocab_size": 300}}, "model.vocab_size", "warning"),
    (
        "evaluation_happens",
        {"training": {"eval_every_steps": 2000}},
        "training.eval_every_steps",
        "warning",
    ),
    (
        "heads_recommended",
        {"model": {"num_attention_heads": 4}},
        "model.num_attention_heads",
        "warning",
    ),
    (
        "heads_recommended",
        {"model": {"num_attention_heads": 64}},
        "model.num_attention_heads",
        "warning",
    ),
    (
        "learning_rate_recommended",
        {"training": {"learning_rate": 1e-4}},
        "training.learning_rate",
        "warning",
    ),
    (
        "learning_rate_recommended",
        {"training": {"learning_rate": 1e-6}},
        "training.learning_rate",
        "warning",
    ),
    (
        "temperature_coherence",
        {"generation": {"temperature": 1.5}},
        "generation.temperature",
        "warning",
    ),
    (
        "temperature_coherence",
        {"generation": {"temperature": 0}},
        "generation.temperature",
        "warning",
    ),
    (
        "repetition_penalty_recommended",
        {"generation": {"repetition_penalty": 0.9}},
        "generation.repetition_penalty",
        "warning",
    ),
    (
        "repetition_penalty_recommended",
        {"generation": {"repetition_penalty": 1.6}},
        "generation.repetition_penalty",
        "warning",
    ),
    (
        "encoder_weights_sum",
        {
            "task": "multimodal_matching",
            "multimodal": {"visual_encoder_weight": 0.7, "text_encoder_weight": 0.7},
        },
        "multimodal.text_encoder_weight",
        "warning",
    ),
    (
        "visual_weight_for_task",
        {"multimodal": {"visual_encoder_weight": 0.5, "text_encoder_weight": 0.5}},
        "multimodal.visual_encoder_weight",
        "warning",
    ),
    (
        "visual_weight_for_task",
        {
            "task": "multimodal_matching",
            "multimodal": {"visual_encoder_weight": 0.3, "text_encoder_weight": 0.7},
        },
        "multimodal.visual_encoder_weight",
        "warning",
    ),
    ("fp16_overflow", {"training": {"precision": "fp16"}}, "training.precision", "warning"),
    ("fp32_on_gpu", BIG, "training.precision", "warning"),
    ("memory_fits", BIG, "resources.gpu_memory_gb", "warning"),
    (
        "visual_encoder_shape",
        {
            "task": "multimodal_matching",
            "multimodal": {
                "visual_encoder_weight": 0.7,
                "text_encoder_weight": 0.3,
                "patch_size": 5,
            },
            "data": {"dataset": "builtin:shapes"},
        },
        "multimodal.patch_size",
        "error",
    ),
    (
        "visual_fields_unused",
        {"multimodal": {"image_size": 64}},
        "multimodal.image_size",
        "warning",
    ),
    (
        "matching_at_chance",
        {
            "task": "multimodal_matching",
            "multimodal": {"visual_encoder_weight": 0.7, "text_encoder_weight": 0.0},
            "data": {"dataset": "builtin:shapes"},
        },
        "multimodal.text_encoder_weight",
        "warning",
    ),
    (
        "dataset_serves_task",
        {"task": "classification", "data": {"dataset": "builtin:pydoc"}},
        "data.dataset",
        "error",
    ),
]


def _issue(raw: dict[str, Any], path: str, severity: str) -> Issue | None:
    result = spec.validate(raw)
    found = result.errors if severity == "error" else result.warnings
    return next((i for i in found if i.field == path), None)


@pytest.mark.parametrize(
    ("name", "raw", "path", "severity"),
    RULE_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(RULE_CASES)],
)
def test_rule_fires_and_only_because_of_its_rule(
    name: str, raw: dict[str, Any], path: str, severity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    issue = _issue(raw, path, severity)
    assert issue is not None, spec.validate(raw).to_dict()
    assert path in issue.message or len(issue.message) > 20  # says what and what to do
    monkeypatch.setattr(ruleset, "RULES", [r for r in ruleset.RULES if r.name != name])
    try:
        after = _issue(raw, path, severity)
    except ArithmeticError:  # without its guard a zero size reaches the estimate
        after = None
    assert after is None or after.message != issue.message  # another rule may back it up


def test_every_rule_has_a_case() -> None:
    # the architecture rules have theirs in test_rules_architecture.py
    architecture = {r.name for r in (*rules_architecture.CHECKS, *rules_architecture.ADVICE)}
    assert {r.name for r in ruleset.RULES} - architecture == {c[0] for c in RULE_CASES}


def test_head_divisibility_suggests_divisors() -> None:
    message = _errors({"model": {"model_dim": 96, "num_attention_heads": 10}})
    assert "8, 12, 16, 24, 32" in message["model.num_attention_heads"]


def test_memory_warning_says_by_how_much_and_the_remedies() -> None:
    message = _warnings(BIG)["resources.gpu_memory_gb"]
    assert "exceeds gpu_memory_gb (16) by" in message
    assert "gradient_checkpointing: true" in message
    assert "gradient_accumulation_steps" in message and "768" in message


def test_warmup_steps_alone_replace_the_ratio() -> None:
    doc = spec.normalize({"training": {"num_warmup_steps": 50}})
    assert doc["training"]["warmup_ratio"] is None
    assert doc["training"]["num_warmup_steps"] == 50
    assert spec.normalize(doc) == doc
    explicit_null = {"training": {"warmup_ratio": None, "num_warmup_steps": 50}}
    assert spec.config_hash(spec.normalize(explicit_null)) == spec.config_hash(doc)


def test_no_warmup_at_all_normalises_to_ratio_zero() -> None:
    doc = spec.normalize({"training": {"warmup_ratio": None}})
    assert doc["training"]["warmup_ratio"] == 0.0


def test_fractional_memory_is_fine_and_zero_is_not() -> None:
    assert spec.validate({"resources": {"gpu_memory_gb": 0.5}}).valid
    message = _errors({"resources": {"gpu_memory_gb": -1.5}})["resources.gpu_memory_gb"]
    assert "must be positive" in message and "-1.5" in message


def test_non_text_keys_are_errors() -> None:
    assert "keys must be text" in _errors({"model": {1: 2}})["model.1"]


def test_rules_do_not_run_on_fields_with_type_errors() -> None:
    errors = _errors({"model": {"num_attention_heads": "8"}})
    assert list(errors) == ["model.num_attention_heads"]


# -- hash, normalisation ----------------------------------------------------------------------


def test_hash_ignores_key_order_formatting_and_defaults() -> None:
    a = spec.parse_document("training:\n  learning_rate: 3e-5\n  seed: 42\nmodel: {}\n")
    b = spec.parse_document('{"training": {"seed": 42, "learning_rate": 0.00003}}')
    c = spec.parse_document("training: {learning_rate: 3.0e-5}\n")
    d = spec.parse_document(spec.dump(spec.normalize({}), "yaml"))
    e = spec.parse_document(spec.dump(spec.normalize({}), "json"))
    hashes = {spec.config_hash(spec.normalize(x)) for x in (a, b, c, d, e, {})}
    assert len(hashes) == 1
    assert spec.validate({}).hash == hashes.pop()


def test_hash_changes_with_a_value_and_int_for_float_is_the_same() -> None:
    base = spec.config_hash(spec.normalize({}))
    assert spec.config_hash(spec.normalize({"training": {"seed": 43}})) != base
    one = spec.normalize({"training": {"learning_rate": 1}})
    assert spec.canonical_json(one) == spec.canonical_json(
        spec.normalize({"training": {"learning_rate": 1.0}})
    )
    assert '"learning_rate":1.0' in spec.canonical_json(one)


def test_canonical_json_shape() -> None:
    assert spec.canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


def test_normalize_is_idempotent() -> None:
    doc = spec.normalize({"model": {"architecture": "llama"}, "generation": {"top_p": 0.9}})
    assert spec.normalize(copy.deepcopy(doc)) == doc


# -- flatten, diff, dump, schema, help --------------------------------------------------------


def test_flatten_and_diff() -> None:
    a = spec.normalize({})
    b = spec.normalize({"training": {"learning_rate": 5e-5}, "model": {"vocab_size": 512}})
    assert spec.flatten(a)["training.learning_rate"] == 3e-5
    assert spec.diff(a, b) == [
        {"field": "model.vocab_size", "from": None, "to": 512},
        {"field": "training.learning_rate", "from": 3e-5, "to": 5e-5},
    ]
    assert spec.diff(a, a) == []
    assert len(spec.diff(a, a, all_fields=True)) == len(spec.flatten(a))


def test_dump_round_trips_and_keeps_section_order() -> None:
    doc = spec.normalize({"training": {"learning_rate": 3e-5}})
    text = spec.dump(doc, "yaml")
    assert text.index("model:") < text.index("training:") < text.index("resources:")
    assert spec.parse_document(text) == doc
    assert json.loads(spec.dump(doc, "json")) == doc


def test_json_schema_shape() -> None:
    schema = fields.json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert list(schema["properties"]) == ["schema_version", "task", *spec.SECTIONS]
    training = schema["$defs"]["TrainingSection"]
    assert training["additionalProperties"] is False
    lr = training["properties"]["learning_rate"]
    assert lr["type"] == "number" and lr["description"] and lr["x-recommended"]
    assert training["properties"]["scheduler"]["enum"] == ["linear", "cosine", "constant"]
    json.dumps(schema)  # serialisable
    for name, section in schema["$defs"].items():
        for field, prop in section["properties"].items():
            assert prop.get("description"), f"{name}.{field}"


def test_field_help_covers_every_field() -> None:
    help_ = fields.field_help()
    assert set(help_) == set(spec.flatten(spec.normalize({}))) | set(spec.LATER_FIELDS)
    assert help_["generation.temperature"]["recommended"].startswith("0.3-0.5")


# -- validate never raises --------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from([0, -1, 1, 8, 64, 3e-5, 0.5, 1.0, "byte", "llama", "fp16"]),
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
_names = [name for name in fields.field_help()]


@st.composite
def _near_documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for path in draw(st.lists(st.sampled_from(_names), max_size=8)):
        *parents, leaf = path.split(".")
        node = doc
        for parent in parents:  # model.moe.n_group lands inside {"model": {"moe": {...}}}
            node = node.setdefault(parent, {}) if isinstance(node.get(parent, {}), dict) else {}
        node[leaf] = draw(_scalars)
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_json, _near_documents()))
def test_validate_never_raises(raw: Any) -> None:
    result = spec.validate(raw)
    assert result.valid == (not result.errors)
    json.dumps(result.to_dict(), allow_nan=False)
    if result.valid:
        assert result.hash == spec.config_hash(result.normalized or {})
        assert result.estimate and result.estimate["parameters"] > 0


def test_yaml_loader_does_not_change_pyyaml_globally() -> None:
    assert yaml.safe_load("x: 3e-5") == {"x": "3e-5"}


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', '{"a": 1e999}', '{"a":1,"a":2}'])
def test_json_documents_are_parsed_strictly(text: str) -> None:
    """A config given as JSON text obeys the same strict JSON as request bodies."""
    with pytest.raises(DocumentParseError, match="malformed JSON"):
        spec.parse_document(text, "json")


#: Hashes recorded before training.checkpoint_every_steps existed (CONTRACT 5.4).
HASHES_BEFORE_CHECKPOINT_FIELD = {
    "": "4a172f1b5071f2bc1ee84c63c35d3d5f234c7215f7b125f558c7b7b3542c3e12",
    "tiny-cpu": "3435a9370b0eebb4d9f52f3f9e4d360a01996d630021131fd4eadddc1764daa7",
    "lightweight-classification": (
        "bc0e37078b025347a2a2240f63fad45b957311110f2bf98a70f5a64a6f27f249"
    ),
    "complex-multimodal": "a7f7d7706aa7f9b77f6700e130a54a3b1395d674c34c6121e77c6c7b6a419e5b",
    "structured-output": "c78b741d8e1c961afff4425e778b975937aa51cf86646555a020ab59bca08de3",
    "creative-writing": "732a3899560e660b396b90134bca7d9f4a36f7928f7ca4cbccb3808607c36978",
    "deterministic-qa": "a3aa648c3c3d08164d0b20fa9002f49e4b393ac236dbc06b8af4ceb24ee79c17",
    "open-generation": "36279dad7543ba1a815cd41458353ce4898d697d3be4a5a23f05bf6cc42ccbd0",
    "image-text-matching": "395e5d7209d3982548d17997aefadbd93ba1e1e025b1f1f12a9184900bc08c13",
    "efficient-inference": "f2254444a6698b54adcc930a9bf9c1ab7603c76c1883f92d0c9c47ce2ebefbf2",
    "high-quality-generation": "e5ba29cb39633fbe4aacd554f8cd6bac931e06092fca4d2eef29fdf1160a75bb",
}


def test_checkpoint_every_steps_keeps_old_hashes_and_is_kept_when_set() -> None:
    from registry.document.presets import list_presets

    hashes = {"": spec.config_hash(spec.normalize({}))}
    # issue 12 moved the GPU presets to bf16: their hash then is the one with fp32 put back
    changed = {"lightweight-classification", "efficient-inference"}
    for p in list_presets():
        doc = p.document
        if p.name in changed:
            doc = {**doc, "training": {**doc["training"], "precision": "fp32"}}
        hashes[p.name] = hash_before_dataset(p.name, doc)
    assert {k: hashes[k] for k in HASHES_BEFORE_CHECKPOINT_FIELD} == HASHES_BEFORE_CHECKPOINT_FIELD
    base = spec.normalize({})
    assert "checkpoint_every_steps" not in base["training"]
    explicit_null = spec.normalize({"training": {"checkpoint_every_steps": None}})
    assert explicit_null == base and spec.normalize(base) == base
    set_ = spec.normalize({"training": {"checkpoint_every_steps": 50}})
    assert set_["training"]["checkpoint_every_steps"] == 50 and spec.normalize(set_) == set_
    assert spec.config_hash(set_) != spec.config_hash(base)
    schema = spec.Document.model_json_schema()["$defs"]["TrainingSection"]["properties"]
    assert "December 2026" in schema["checkpoint_every_steps"]["x-added"]
