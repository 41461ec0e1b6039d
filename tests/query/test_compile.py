"""The compiler on both databases: SQL results equal a pure-Python evaluation of the same AST."""

from __future__ import annotations

import operator
import random
import re
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.errors import BadRequest
from registry.models import Run, RunMetric, VersionParam
from registry.query.parse import And, Compare, In, Node, Not, Or, parse, parse_order_by
from registry.query.search import InvalidCursor, search_runs
from registry.services.indexing import (
    flatten,
    metric_value,
    param_num,
    param_text,
    reproduction_result,
)
from tests.support.querydata import BASE_DOC, METRICS, T0, full_provenance, make_runs


def run_dicts(session: Session) -> list[dict[str, Any]]:
    """Every run as the evaluator sees it, read back from the database."""
    out = []
    for run in session.scalars(select(Run).order_by(Run.id)):
        metrics = {k: metric_value(v) for k, v in flatten(run.metrics or {}).items()}
        out.append(
            {
                "id": run.id,
                "status": run.status,
                "config": run.version.config.name,
                "version": run.version.version,
                "config_hash": run.version.hash,
                "kind": run.kind,
                "queue": run.queue,
                "worker": run.worker_id,
                "attempt": run.attempt,
                "seed": run.seed,
                "created_at": run.created_at,
                "reproduces": run.reproduces,
                "reproduced": run.reproduced,
                "identical": run.identical,
                "provenance_complete": run.provenance_complete,
                "params": flatten(run.version.document),
                "metrics": {k: v for k, v in metrics.items() if v is not None},
            }
        )
    return out


# --- the reference evaluator -----------------------------------------------------------------

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_MISSING = object()


def like(text: str, pattern: str) -> bool:
    """LIKE, case-insensitive, with backslash escapes."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.fullmatch("".join(out), text, re.IGNORECASE | re.DOTALL) is not None


def evaluate(node: Node, run: dict[str, Any]) -> bool:
    """The filter's meaning, in plain Python: two-valued, lacking keys compare false."""
    if isinstance(node, And):
        return all(evaluate(n, run) for n in node.items)
    if isinstance(node, Or):
        return any(evaluate(n, run) for n in node.items)
    if isinstance(node, Not):
        return not evaluate(node.item, run)
    if isinstance(node, In):
        hit = any(evaluate(Compare(node.key, "=", v), run) for v in node.values)
        return hit != node.negated
    if node.op == "NOT LIKE":
        return not evaluate(Compare(node.key, "LIKE", node.value), run)
    if node.key.kind == "param":
        return _evaluate_param(node, run["params"].get(node.key.name, _MISSING))
    key, op, value = node.key, node.op, node.value
    have = run["metrics"].get(key.name) if key.kind == "metric" else run[key.name]
    if value is None:
        return (have is None) == (op == "=")
    if have is None:
        return False
    if op == "LIKE":
        return like(have, str(value))
    return _OPS[op](have, value)


def _evaluate_param(node: Compare, leaf: Any) -> bool:
    """A param clause on the config leaf ``leaf`` (_MISSING: the config lacks the path)."""
    op, value = node.op, node.value
    num = None if leaf is _MISSING else param_num(leaf)
    text = None if leaf is _MISSING else param_text(leaf)
    if value is None:
        return (num is None and text is None) == (op == "=")
    if op == "LIKE":
        return text is not None and like(text, str(value))
    if isinstance(value, bool):
        return text is not None and _OPS[op](text, "true" if value else "false")
    if isinstance(value, int | float):
        return num is not None and _OPS[op](num, float(value))
    return text is not None and _OPS[op](text, value)


# --- filters ---------------------------------------------------------------------------------

FILTERS = [
    "params.training.learning_rate < 4e-5 AND metrics.val_loss < 2.5 AND status = 'succeeded'",
    "params.training.learning_rate <= 4e-5 and params.training.gradient_checkpointing = true",
    "params.training.gradient_checkpointing = false OR metrics.val_accuracy >= 2",
    "NOT params.training.gradient_checkpointing = true",
    "params.training.gradient_checkpointing != true",
    "params.training.gradient_checkpointing = 1",
    "params.training.gradient_checkpointing = 'true'",
    "params.model.model_dim IN (128, 512)",
    "params.model.model_dim NOT IN (128, 512)",
    "params.model.vocab_size = null",
    "params.model.vocab_size != null",
    "params.model.vocab_size IN (512, null)",
    "params.model.vocab_size > 100",
    "NOT params.model.vocab_size > 100",
    "params.multimodal.text_encoder_weight = 1",
    "NOT params.multimodal.text_encoder_weight = 1",
    "params.multimodal.visual_encoder_weight = null",
    "params.data.dataset LIKE 'builtin:%'",
    "params.data.dataset LIKE 'BUILTIN:%'",
    "params.data.dataset NOT LIKE 'builtin:%'",
    "params.data.dataset LIKE '%\\\\%%'",
    "params.data.dataset LIKE 'builtin:_ydoc'",
    "params.data.dataset > 'builtin:q'",
    "params.data.dataset IN ('builtin:pydoc', 'file:/d/x%.txt', 3, true)",
    "params.training.scheduler != 'linear'",
    "params.model.model_dim = 'x'",
    "params.data.dataset = 3",
    "metrics.val_loss < 2 OR metrics.train_loss > 2.5",
    "metrics.val_loss = 2.0",
    "metrics.val_loss != 2.0",
    "NOT metrics.val_loss < 2",
    "metrics.val_loss = null",
    "metrics.val_loss != null AND metrics.tokens_per_second IN (1.5, 2.5, 9)",
    "metrics.nonexistent > -1e999",
    "NOT metrics.nonexistent > 0",
    "status IN ('succeeded', 'failed') AND NOT (kind = 'train' OR queue = 'gpu')",
    "status NOT IN ('queued', 'running')",
    "config = 'tiny'",
    "config LIKE 'tiny_%'",
    "config LIKE 'tiny\\\\_%'",
    "config IN ('base', 'wide-1') AND version >= 2",
    "config_hash = '" + f"{5:064x}" + "'",
    "version = 2.5 OR version < 1.5",
    "worker = 'w1'",
    "worker != 'w1'",
    "NOT worker = 'w1'",
    "worker = null",
    "worker LIKE 'W%'",
    "worker IN ('w2', null)",
    "attempt > 1 AND seed = 42",
    "attempt IN (1, 3.0)",
    "id >= 10 AND id < 20.5",
    "id = 1e999",
    "attempt < 99999999999999999999999",
    "created_at >= '2026-11-05' AND created_at < '2026-11-10T12:00:00'",
    "created_at = '2026-11-02T01:00:00+01:00'",
    "reproduces = null",
    "reproduces != null AND identical = true",
    "identical = false",
    "NOT identical = true",
    "identical = null",
    "reproduced = true",
    "reproduced = false AND status = 'succeeded'",
    "provenance_complete = true",
    "(status = 'succeeded' OR status = 'failed') AND (metrics.val_loss < 2 OR NOT worker = 'w2')",
    "NOT (NOT (metrics.train_loss >= 1.5 AND params.model.model_dim > 200))",
]


def _random_filter(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth < 3 and roll < 0.3:
        joiner = rng.choice([" AND ", " OR ", " and ", " or "])
        return "(" + joiner.join(_random_filter(rng, depth + 1) for _ in range(2)) + ")"
    if depth < 3 and roll < 0.4:
        return "NOT " + _random_filter(rng, depth + 1)
    return rng.choice(_CLAUSES)(rng)


def _num(rng: random.Random) -> str:
    return rng.choice(
        [
            "1",
            "1.5",
            "2",
            "2.0",
            "2.5",
            "3",
            "-1",
            "0",
            "128",
            "256",
            "3e-5",
            "4e-5",
            "1e-5",
            "5e-05",
        ]
    )


def _op(rng: random.Random) -> str:
    return rng.choice(["=", "!=", "<", "<=", ">", ">="])


PARAM_KEYS = [
    "training.learning_rate",
    "model.model_dim",
    "model.vocab_size",
    "multimodal.text_encoder_weight",
]


_CLAUSES: list[Callable[[random.Random], str]] = [
    lambda r: f"metrics.{r.choice([*METRICS, 'nope'])} {_op(r)} {_num(r)}",
    lambda r: f"metrics.{r.choice(METRICS)} {r.choice(['=', '!='])} null",
    lambda r: f"metrics.{r.choice(METRICS)} IN ({_num(r)}, {_num(r)})",
    lambda r: f"params.{r.choice(PARAM_KEYS)} {_op(r)} {_num(r)}",
    lambda r: (
        f"params.training.gradient_checkpointing {r.choice(['=', '!='])} "
        f"{r.choice(['true', 'false', 'null', '1', '0'])}"
    ),
    lambda r: (
        f"params.data.dataset {r.choice(['LIKE', 'NOT LIKE', '=', '<'])} "
        f"'{r.choice(['builtin:%', '%x%', 'builtin:pydoc', 'file%'])}'"
    ),
    lambda r: f"params.model.vocab_size {r.choice(['=', '!='])} null",
    lambda r: f"status {r.choice(['=', '!='])} '{r.choice(['succeeded', 'failed', 'queued'])}'",
    lambda r: f"worker {r.choice(['=', '!='])} {r.choice(['null', repr('w1'), repr('w2')])}",
    lambda r: f"attempt {_op(r)} {r.choice(['1', '2', '2.5'])}",
    lambda r: f"identical {r.choice(['=', '!='])} {r.choice(['true', 'false', 'null'])}",
    lambda r: f"reproduced = {r.choice(['true', 'false'])}",
    lambda r: f"config {r.choice(['=', 'LIKE'])} '{r.choice(['tiny', 'tiny%', 'base'])}'",
    lambda r: f"created_at {_op(r)} '2026-11-{r.randint(1, 25):02d}'",
]


@pytest.fixture
def runs(session: Session) -> list[dict[str, Any]]:
    make_runs(session)
    return run_dicts(session)


def _ids(session: Session, expr: str | None, order_by: str | None = None) -> list[int]:
    found, cursor = search_runs(session, expr, order_by, limit=1000)
    assert cursor is None
    return [r.id for r in found]


def test_filters_match_the_python_evaluation(session: Session, runs: list[dict[str, Any]]) -> None:
    assert len(runs) == 48
    for expr in FILTERS:
        want = [r["id"] for r in runs if evaluate(parse(expr), r)]
        assert _ids(session, expr) == want, expr


def test_random_filters_match_the_python_evaluation(
    session: Session, runs: list[dict[str, Any]]
) -> None:
    rng = random.Random(20261130)
    nonempty = 0
    for _ in range(250):
        expr = _random_filter(rng)
        want = [r["id"] for r in runs if evaluate(parse(expr), r)]
        assert _ids(session, expr) == want, expr
        nonempty += bool(want)
    assert nonempty > 100


def test_no_filter_returns_every_run(session: Session, runs: list[dict[str, Any]]) -> None:
    assert _ids(session, None) == [r["id"] for r in runs]
    assert _ids(session, "   ") == [r["id"] for r in runs]


def test_the_index_holds_what_was_stored(session: Session, runs: list[dict[str, Any]]) -> None:
    assert session.scalar(select(func.count()).select_from(VersionParam)) == 12 * 34 - 2
    stored = session.scalar(select(func.count()).select_from(RunMetric))
    assert stored == sum(len(r["metrics"]) for r in runs)
    assert any(r["reproduced"] for r in runs) and any(r["identical"] for r in runs)
    assert any(r["identical"] is False for r in runs)


ORDERS = [
    "metrics.val_loss",
    "metrics.val_loss DESC",
    "metrics.nope",
    "params.training.learning_rate",
    "params.data.dataset desc",
    "params.model.vocab_size",
    "worker",
    "worker desc",
    "created_at DESC",
    "created_at",
    "identical",
    "config",
    "version desc",
    "id DESC",
    "attempt",
    "reproduces",
    "params.training.gradient_checkpointing DESC",
]


@pytest.mark.parametrize(
    "expr",
    [
        None,
        "status != 'queued'",
        "metrics.train_loss > 1.5",
        "metrics.val_loss >= 1.5 AND metrics.val_loss < 2.5 AND status = 'succeeded'",
        "metrics.val_loss > 2 OR metrics.val_loss = null",
    ],
)
def test_order_by_and_cursor_pages(
    session: Session, runs: list[dict[str, Any]], expr: str | None
) -> None:
    matching = {r["id"] for r in runs if expr is None or evaluate(parse(expr), r)}
    for order in ORDERS:
        full = _ids(session, expr, order)
        assert sorted(full) == sorted(matching), order
        for size in (1, 5, 7):
            paged, cursor, pages = [], None, 0
            while True:
                page, cursor = search_runs(session, expr, order, limit=size, cursor=cursor)
                paged += [r.id for r in page]
                pages += 1
                assert len(page) == size or cursor is None
                if cursor is None:
                    break
            assert paged == full, (order, size)
            assert pages == max(1, -(-len(full) // size))


@pytest.mark.parametrize(
    "order",
    [
        "metrics.val_loss",
        "metrics.val_loss desc",
        "params.training.learning_rate desc",
        "worker",
        "created_at",
    ],
)
def test_order_is_by_value_then_id_lacking_last(
    session: Session, runs: list[dict[str, Any]], order: str
) -> None:
    parsed = parse_order_by(order)
    name, desc = parsed.key.name, parsed.descending

    def value(r: dict[str, Any]) -> Any:
        if parsed.key.kind == "metric":
            return r["metrics"].get(name)
        return r["params"].get(name) if parsed.key.kind == "param" else r[name]

    have = sorted(
        (r for r in runs if value(r) is not None), key=lambda r: (value(r), r["id"]), reverse=desc
    )
    lacking = sorted((r for r in runs if value(r) is None), key=lambda r: r["id"], reverse=desc)
    assert _ids(session, None, order) == [r["id"] for r in have + lacking]


def test_bad_cursor_and_limit(session: Session, runs: list[dict[str, Any]]) -> None:
    page, cursor = search_runs(session, None, "metrics.val_loss", limit=3)
    assert cursor is not None and len(page) == 3
    for bad in ("nonsense", "e30=", cursor[:-2], cursor + "x"):
        with pytest.raises(BadRequest):
            search_runs(session, None, "metrics.val_loss", limit=3, cursor=bad)
    with pytest.raises(InvalidCursor):  # a cursor from another ordering
        search_runs(session, None, "metrics.val_loss desc", limit=3, cursor=cursor)
    for limit in (0, -1, 1001):
        with pytest.raises(BadRequest):
            search_runs(session, None, limit=limit)


def test_reproduction_result() -> None:
    same = reproduction_result(
        {"val_loss": 2.0, "tokens_per_second": 10.0, "peak_memory_mb": 300.0},
        {"val_loss": 2.0, "tokens_per_second": 12.5, "peak_memory_mb": 310.0},
    )
    assert {k: same[k] for k in ("deltas", "identical")} == {
        "deltas": {"peak_memory_mb": 10.0, "tokens_per_second": 2.5, "val_loss": 0.0},
        "identical": True,
    }
    differs = reproduction_result({"val_loss": 2.0}, {"val_loss": 2.25, "extra": 1})
    assert {k: differs[k] for k in ("deltas", "identical")} == {
        "deltas": {"extra": None, "val_loss": 0.25},
        "identical": False,
    }
    assert reproduction_result({}, {})["identical"] is False


def _index_snapshot(session: Session) -> tuple[list[Any], list[Any], list[Any]]:
    params = session.execute(
        select(
            VersionParam.version_id, VersionParam.key, VersionParam.num, VersionParam.text
        ).order_by("version_id", "key")
    ).all()
    metrics = session.execute(
        select(RunMetric.run_id, RunMetric.key, RunMetric.value).order_by("run_id", "key")
    ).all()
    flags = session.execute(
        select(
            Run.id, Run.provenance_complete, Run.reproduction, Run.identical, Run.reproduced
        ).order_by(Run.id)
    ).all()
    return params, metrics, flags


def test_backfill_rebuilds_the_same_index(session: Session, runs: list[dict[str, Any]]) -> None:
    from sqlalchemy import delete, update

    from registry.services.indexing import backfill

    before = _index_snapshot(session)
    session.execute(delete(VersionParam))
    session.execute(delete(RunMetric))
    session.execute(
        update(Run).values(
            provenance_complete=False, reproduction=None, identical=None, reproduced=False
        )
    )
    assert backfill(session, batch=5) == {
        "versions": 12,
        "runs": len([r for r in runs if r["status"] in ("succeeded", "failed", "cancelled")]),
    }
    session.expire_all()
    assert _index_snapshot(session) == before
    backfill(session)  # idempotent
    assert _index_snapshot(session) == before


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migration_0003_backfills_and_round_trips(kind: str, tmp_path: Any) -> None:
    import sqlalchemy as sa
    from alembic import command

    from registry.db import make_engine
    from tests.support.dbs import alembic_config, database

    with database(kind, tmp_path) as url:
        cfg = alembic_config(url)
        command.upgrade(cfg, "0002")
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO configs (id, name, created_at) VALUES (1, 'c', CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(
                sa.table(
                    "config_versions",
                    sa.column("id"),
                    sa.column("config_id"),
                    sa.column("version"),
                    sa.column("hash"),
                    sa.column("document", sa.JSON),
                    sa.column("created_at"),
                ).insert(),
                [
                    {
                        "id": 1,
                        "config_id": 1,
                        "version": 1,
                        "hash": "h",
                        "document": BASE_DOC,
                        "created_at": T0,
                    }
                ],
            )
            runs = sa.table(
                "runs",
                *(
                    sa.column(c)
                    for c in (
                        "id",
                        "config_version_id",
                        "kind",
                        "status",
                        "queue",
                        "priority",
                        "attempt",
                        "seed",
                        "cancel_requested",
                        "reproduces",
                        "created_at",
                    )
                ),
                sa.column("metrics", sa.JSON),
                sa.column("provenance", sa.JSON),
            )
            common = {
                "config_version_id": 1,
                "kind": "train",
                "queue": "default",
                "priority": 0,
                "attempt": 1,
                "seed": 1,
                "cancel_requested": False,
                "created_at": T0,
                "provenance": full_provenance(),
            }
            conn.execute(
                runs.insert(),
                [
                    {
                        **common,
                        "id": 1,
                        "status": "succeeded",
                        "reproduces": None,
                        "metrics": {"val_loss": 2.0, "tokens_per_second": 5.0},
                    },
                    {
                        **common,
                        "id": 2,
                        "status": "succeeded",
                        "reproduces": 1,
                        "metrics": {"val_loss": 2.0, "tokens_per_second": 6.0},
                    },
                    {**common, "id": 3, "status": "queued", "reproduces": None, "metrics": None},
                ],
            )
        command.upgrade(cfg, "head")
        with make_session_factory_for(engine)() as session:
            assert session.scalar(select(func.count()).select_from(VersionParam)) == 34
            assert _ids(session, "params.training.learning_rate = 3e-5") == [1, 2, 3]
            assert _ids(session, "metrics.val_loss = 2") == [1, 2]
            assert _ids(session, "reproduced = true") == [1]
            assert _ids(session, "identical = true AND reproduces = 1") == [2]
            assert _ids(session, "provenance_complete = true") == [1, 2]
            run = session.get(Run, 2)
            assert run is not None and run.reproduction is not None
            assert {k: run.reproduction[k] for k in ("deltas", "identical")} == {
                "deltas": {"tokens_per_second": 1.0, "val_loss": 0.0},
                "identical": True,
            }
            assert run.reproduction["same_environment"] is True  # the same provenance
        command.downgrade(cfg, "0002")
        with engine.connect() as conn:
            assert "version_params" not in sa.inspect(conn).get_table_names()
            assert "identical" not in {c["name"] for c in sa.inspect(conn).get_columns("runs")}
        command.upgrade(cfg, "head")
        engine.dispose()


def make_session_factory_for(engine: Any) -> Any:
    from registry.db import make_session_factory

    return make_session_factory(engine)
