"""The filter language's tokenizer and parser: operators, precedence, quoting, errors."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.errors import FilterParseError
from registry.query.parse import (
    MAX_DEPTH,
    MAX_LENGTH,
    And,
    Compare,
    In,
    Key,
    Not,
    Or,
    OrderBy,
    parse,
    parse_order_by,
)

LR = Key("param", "training.learning_rate")
LOSS = Key("metric", "val_loss")
STATUS = Key("column", "status")


def errors(text: str) -> FilterParseError:
    with pytest.raises(FilterParseError) as info:
        parse(text)
    return info.value


def test_contract_example() -> None:
    node = parse(
        "params.training.learning_rate < 4e-5 AND metrics.val_loss < 2.5 AND status = 'succeeded'"
    )
    assert node == And(
        (Compare(LR, "<", 4e-5), Compare(LOSS, "<", 2.5), Compare(STATUS, "=", "succeeded"))
    )


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
def test_comparison_operators(op: str) -> None:
    assert parse(f"metrics.val_loss {op} 2") == Compare(LOSS, op, 2)
    assert parse(f"metrics.val_loss{op}2") == Compare(LOSS, op, 2)


def test_not_equal_spelled_sql_style() -> None:
    assert parse("metrics.val_loss <> 2") == Compare(LOSS, "!=", 2)


def test_like_ilike_not_like() -> None:
    cfg = Key("column", "config")
    assert parse("config LIKE 'tiny%'") == Compare(cfg, "LIKE", "tiny%")
    assert parse("config ilike 'tiny%'") == Compare(cfg, "LIKE", "tiny%")
    assert parse("config NOT LIKE 'tiny%'") == Compare(cfg, "NOT LIKE", "tiny%")


def test_in_and_not_in() -> None:
    assert parse("status IN ('failed', 'cancelled')") == In(STATUS, ("failed", "cancelled"))
    assert parse("status not in ('failed')") == In(STATUS, ("failed",), negated=True)
    mixed = parse("params.data.dataset IN ('builtin:tiny', 3, true, null)")
    assert mixed == In(Key("param", "data.dataset"), ("builtin:tiny", 3, True, None))


def test_precedence_not_and_or() -> None:
    a, b, c = (f"metrics.m{i} = {i}" for i in range(3))
    m = [Compare(Key("metric", f"m{i}"), "=", i) for i in range(3)]
    assert parse(f"{a} OR {b} AND {c}") == Or((m[0], And((m[1], m[2]))))
    assert parse(f"{a} AND {b} OR {c}") == Or((And((m[0], m[1])), m[2]))
    assert parse(f"NOT {a} AND {b}") == And((Not(m[0]), m[1]))
    assert parse(f"NOT ({a} AND {b})") == Not(And((m[0], m[1])))
    assert parse(f"({a} OR {b}) AND {c}") == And((Or((m[0], m[1])), m[2]))
    assert parse(f"NOT NOT {a}") == Not(Not(m[0]))
    assert parse(f"((({a})))") == m[0]


def test_keywords_are_case_insensitive() -> None:
    node = parse("NOT status = 'a' and Status In ('b') oR status LiKe 'c' AND identical = TRUE")
    assert node == Or(
        (
            And((Not(Compare(STATUS, "=", "a")), In(STATUS, ("b",)))),
            And((Compare(STATUS, "LIKE", "c"), Compare(Key("column", "identical"), "=", True))),
        )
    )


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("1e-5", 1e-5),
        ("-3", -3),
        (".5", 0.5),
        ("+2.", 2.0),
        ("4E+2", 400.0),
        ("0", 0),
        ("12345678901234567890", 12345678901234567890),
        ("1" * 5000, float("1" * 5000)),
    ],
)
def test_numbers(literal: str, value: float) -> None:
    node = parse(f"metrics.x = {literal}")
    assert isinstance(node, Compare) and node.value == value
    assert type(node.value) is type(value)


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("'plain'", "plain"),
        ('"double"', "double"),
        (r"'it\'s'", "it's"),
        ("'it''s'", "it's"),
        ('"say ""hi"""', 'say "hi"'),
        (r'"back\\slash"', "back\\slash"),
        ("'with \"other\" quotes'", 'with "other" quotes'),
        ("''", ""),
        ("'AND OR NOT ( ) , = <'", "AND OR NOT ( ) , = <"),
        ("'ünïcödé ✓'", "ünïcödé ✓"),
    ],
)
def test_quoting_and_escapes(literal: str, value: str) -> None:
    assert parse(f"worker = {literal}") == Compare(Key("column", "worker"), "=", value)


def test_booleans_and_null() -> None:
    gc = Key("param", "training.gradient_checkpointing")
    assert parse("params.training.gradient_checkpointing = true") == Compare(gc, "=", True)
    assert parse("params.training.gradient_checkpointing != FALSE") == Compare(gc, "!=", False)
    vocab = Key("param", "model.vocab_size")
    assert parse("params.model.vocab_size = null") == Compare(vocab, "=", None)


def test_keys() -> None:
    for name in (
        "id",
        "status",
        "config",
        "version",
        "kind",
        "queue",
        "worker",
        "attempt",
        "reproduces",
        "config_hash",
        "reproduced",
        "identical",
        "seed",
        "provenance_complete",
    ):
        value = {"int": "1", "text": "'x'", "bool": "true"}.get(_kind(name), "'x'")
        node = parse(f"{name} = {value}")
        assert isinstance(node, Compare) and node.key == Key("column", name)
    assert parse("STATUS = 'x'") == Compare(STATUS, "=", "x")
    assert parse("task = 'x'".replace("task", "params.task")).key == Key("param", "task")
    assert parse("metrics.eval/loss-2 < 1").key == Key("metric", "eval/loss-2")


def _kind(name: str) -> str:
    from registry.query.parse import COLUMN_KEYS

    return COLUMN_KEYS[name][0]


def test_created_at_takes_iso_dates() -> None:
    node = parse("created_at >= '2026-11-30'")
    assert node == Compare(
        Key("column", "created_at"), ">=", dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    )
    node = parse("created_at < '2026-11-30T12:00:00+02:00'")
    assert isinstance(node, Compare) and node.value == dt.datetime(2026, 11, 30, 10, tzinfo=dt.UTC)


def test_order_by() -> None:
    assert parse_order_by("metrics.val_loss") == OrderBy(LOSS)
    assert parse_order_by("metrics.val_loss DESC") == OrderBy(LOSS, descending=True)
    assert parse_order_by("created_at asc") == OrderBy(Key("column", "created_at"))
    assert parse_order_by("params.training.learning_rate desc").key == LR


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("", 0, "a filter expression"),
        ("status", 6, "an operator"),
        ("status =", 8, "a value"),
        ("status = 'a' AND", 16, "a key"),
        ("status = 'a' status = 'b'", 13, "AND, OR or the end"),
        ("(status = 'a'", 13, "')'"),
        ("status = 'a')", 12, "AND, OR or the end"),
        ("status IN 'a'", 10, "'('"),
        ("status IN ('a' 'b')", 15, "',' or ')'"),
        ("status IN ()", 11, "a value"),
        ("status = 'open", 9, "a closing '"),
        ('status = "open', 9, 'a closing "'),
        ("status = 'a' # x", 13, "a key, value, operator"),
        ("status ~ 'a'", 7, "a key, value, operator"),
        ("params.training.learnin_rate < 1", 0, "params.<config path>"),
        ("params.model < 1", 0, "params.<config path>"),
        ("metrics. < 1", 0, "metrics.<name>"),
        ("statos = 'a'", 0, "a key"),
        ("AND = 1", 0, "a key"),
        ("= 1", 0, "a key"),
        ("status = 3", 9, "a quoted string"),
        ("attempt = 'two'", 10, "a number"),
        ("metrics.loss = 'low'", 15, "a number"),
        ("metrics.loss LIKE 'a%'", 18, "a quoted pattern"),
        ("identical = 1", 12, "true, false or null"),
        ("status < null", 9, "a number or string"),
        ("params.training.gradient_checkpointing > true", 41, "a number or string"),
        ("created_at > 'yesterday'", 13, "an ISO 8601 date"),
        ("created_at > 5", 13, "an ISO 8601 date"),
        ("status NOT = 'a'", 11, "IN or LIKE after NOT"),
        ("config LIKE 'a\\\\'", 12, "a pattern"),
        ("worker = 'a\x00b'", 11, "printable text"),
        ("NOT", 3, "a key"),
    ],
)
def test_errors_have_position_and_expected(text: str, position: int, expected: str) -> None:
    err = errors(text)
    assert err.extra["position"] == position, err.message
    assert err.extra["expected"].startswith(expected), err.extra["expected"]
    assert err.status == 400
    body = err.to_dict()
    assert set(body) == {"error", "code", "position", "expected"}
    assert body["code"] == "filter_error"
    assert f"position {position}" in body["error"]


def test_did_you_mean() -> None:
    assert (
        "did you mean params.training.learning_rate?"
        in errors("params.training.learnin_rate < 1").message
    )
    assert "did you mean status?" in errors("statos = 'a'").message


def test_limits() -> None:
    deep = "(" * (MAX_DEPTH + 1) + "status = 'a'" + ")" * (MAX_DEPTH + 1)
    assert "nested too deeply" in errors(deep).message
    assert "nested too deeply" in errors("NOT " * 2000 + "status = 'a'").message
    assert parse("(" * (MAX_DEPTH - 1) + "status = 'a'" + ")" * (MAX_DEPTH - 1))
    long = " OR ".join(["status = 'a'"] * (MAX_LENGTH // 16 + 1))
    assert "too long" in errors(long).message


def test_order_by_errors() -> None:
    with pytest.raises(FilterParseError) as info:
        parse_order_by("metrics.val_loss sideways")
    assert info.value.extra["position"] == 17
    with pytest.raises(FilterParseError):
        parse_order_by("")
    with pytest.raises(FilterParseError):
        parse_order_by("nope DESC")


def test_custom_param_paths() -> None:
    assert parse("params.model.n_experts = 4", param_paths={"model.n_experts"})
    with pytest.raises(FilterParseError):
        parse("params.model.n_experts = 4", param_paths={"model.model_dim"})


VOCAB = [
    "params.training.learning_rate",
    "metrics.val_loss",
    "status",
    "created_at",
    "identical",
    "AND",
    "or",
    "NOT",
    "IN",
    "like",
    "true",
    "null",
    "(",
    ")",
    ",",
    "=",
    "!=",
    "<",
    ">=",
    "<>",
    "'a'",
    '"b"',
    "'",
    '"',
    "\\",
    "1e-5",
    "-3",
    ".5",
    "1e999",
    "'2026-01-01'",
    " ",
    "%",
    "_",
    "params.",
    "metrics.",
    "ASC",
    "DESC",
]


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80))
def test_random_text_raises_only_the_parse_error(text: str) -> None:
    try:
        parse(text)
    except FilterParseError as err:
        assert 0 <= err.extra["position"] <= len(text)
        assert err.extra["expected"]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(VOCAB), max_size=25).map(" ".join))
def test_token_soup_raises_only_the_parse_error(text: str) -> None:
    for attempt in (parse, parse_order_by):
        try:
            attempt(text)
        except FilterParseError as err:
            assert 0 <= err.extra["position"] <= len(text)
