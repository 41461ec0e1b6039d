"""Issue 4's benchmark: our run search over HTTP vs MlflowClient.search_runs, same runs.

1. Data: ``benchmarks.common.make_dataset(N)``: 320 config versions (40 configs x 8) and N
   finished runs with unique seeds and final metrics (deterministic).
2. Ours: a fresh SQLite database (and, with --postgres, a fresh PostgreSQL database),
   migrated with alembic, loaded THROUGH THE SERVICES: create_config / add_version,
   queue.enqueue, queue.claim, queue.complete (+ indexing.index_finished_run when complete
   does not index yet), 1000 runs per transaction.
3. MLflow: a SQLite store created by MLflow itself, one experiment per config (as the worker
   does), each run with the worker's tags (registry.run_id, ...), the flattened config as
   params (as the worker logs them) and the final metrics. The first --client-runs runs go
   through MlflowClient (create_run, log_batch, set_terminated); the rest are written with
   executemany into MLflow's own tables (runs, tags, params, metrics, latest_metrics), each
   row shaped as the client wrote it for those first runs (checked: the same tables, columns
   and tag keys; a client run and a bulk run read back the same through get_run).
   Loading 100k runs through the client alone takes ~13-20 ms a run (half an hour here);
   --client-runs N does it anyway.
4. Stores are cached under var/bench/ (or $REGISTRY_BENCH_DIR) keyed by N (and the data and
   0003 migration versions); --reload rebuilds them.
5. Queries: ``registry serve`` on a free port against each database, a viewer token made with
   registry.auth.create_token, and ``GET /api/v1/runs?filter=&order_by=&limit=100`` over a
   keep-alive connection (timed to the decoded JSON), interleaved with
   ``MlflowClient.search_runs(all experiment ids, filter_string, order_by=[...],
   max_results=100)`` in this process. Every answer is checked against a pure-Python
   evaluation of the same query over the generated data: ours in order, MLflow's by its
   registry.run_id tags in order. MLflow cannot express OR, IN, NOT or a range on a param:
   those queries run on ours alone.

Run: ``python benchmarks/bench_query_mlflow.py [--runs 100000] [--postgres]``; writes
var/bench/query.json and prints the table.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import multiprocessing
import os
import random
import secrets
import signal
import sqlite3
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from benchmarks.common import (  # noqa: E402
    DATA_VERSION,
    Dataset,
    RunSpec,
    flat_params,
    load_registry,
    make_dataset,
)

#: Where the stores are cached; REGISTRY_BENCH_DIR moves it (the smoke tests use a tmp folder).
DEFAULT_VAR = ROOT / "var" / "bench"
VAR = Path(os.environ.get("REGISTRY_BENCH_DIR") or DEFAULT_VAR)
PG_STORE_PREFIX = "cr_bench_query_"
PG_ADMIN_URL = os.environ.get(
    "REGISTRY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MLFLOW_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}


# --- the queries -----------------------------------------------------------------------------

Pred = Callable[[RunSpec, dict[str, Any]], bool]


@dataclass(frozen=True)
class Query:
    """One query: ours, MLflow's equivalent (None: MLflow cannot say it), and the truth."""

    name: str
    filter: str | None
    order_by: str
    mlflow_filter: str | None
    mlflow_order: str | None
    pred: Pred
    sort: Callable[[RunSpec, dict[str, Any]], tuple[Any, ...]]


def by_metric(name: str, desc: bool = False) -> Callable[[RunSpec, dict[str, Any]], tuple]:
    """Our order: runs holding the metric first, by value, ties by id the same way."""

    def key(r: RunSpec, _doc: dict[str, Any]) -> tuple[Any, ...]:
        v = r.metrics.get(name)
        if v is None:
            return (1, 0, -r.run_id if desc else r.run_id)
        return (0, -v if desc else v, -r.run_id if desc else r.run_id)

    return key


def by_param(path: str, desc: bool = False) -> Callable[[RunSpec, dict[str, Any]], tuple]:
    def key(r: RunSpec, doc: dict[str, Any]) -> tuple[Any, ...]:
        v = float(doc[path])
        return (-v if desc else v, -r.run_id if desc else r.run_id)

    return key


def newest(r: RunSpec, _doc: dict[str, Any]) -> tuple[Any, ...]:
    return (-r.run_id,)  # created_at DESC: runs are created in id order


def m(r: RunSpec, name: str) -> float:
    """A metric for comparisons: a missing one compares false (nan)."""
    return r.metrics.get(name, math.nan)


QUERIES: list[Query] = [
    Query(
        "param =",
        "params.model.model_dim = 512",
        "metrics.val_loss",
        "params.`model.model_dim` = '512'",
        "metrics.val_loss ASC",
        lambda r, d: d["model.model_dim"] == 512,
        by_metric("val_loss"),
    ),
    Query(
        "metric <",
        "metrics.val_loss < 2.5",
        "metrics.val_loss",
        "metrics.val_loss < 2.5",
        "metrics.val_loss ASC",
        lambda r, d: m(r, "val_loss") < 2.5,
        by_metric("val_loss"),
    ),
    Query(
        "order by metric only",
        None,
        "metrics.val_accuracy DESC",
        None,
        "metrics.val_accuracy DESC",
        lambda r, d: True,
        by_metric("val_accuracy", True),
    ),
    Query(
        "metric range",
        "metrics.tokens_per_second >= 20000 AND metrics.tokens_per_second < 40000",
        "metrics.tokens_per_second DESC",
        "metrics.tokens_per_second >= 20000 AND metrics.tokens_per_second < 40000",
        "metrics.tokens_per_second DESC",
        lambda r, d: 20000 <= m(r, "tokens_per_second") < 40000,
        by_metric("tokens_per_second", True),
    ),
    Query(
        "bool param + metric",
        "params.training.gradient_checkpointing = true AND metrics.val_loss < 2.8",
        "metrics.val_loss",
        "params.`training.gradient_checkpointing` = 'True' AND metrics.val_loss < 2.8",
        "metrics.val_loss ASC",
        lambda r, d: d["training.gradient_checkpointing"] is True and m(r, "val_loss") < 2.8,
        by_metric("val_loss"),
    ),
    Query(
        "2 params + status",
        "params.training.scheduler = 'cosine' AND "
        "params.training.precision = 'bf16' AND status = 'succeeded'",
        "metrics.val_perplexity",
        "params.`training.scheduler` = 'cosine' AND params.`training.precision` = 'bf16' "
        "AND attributes.status = 'FINISHED'",
        "metrics.val_perplexity ASC",
        lambda r, d: (
            d["training.scheduler"] == "cosine"
            and d["training.precision"] == "bf16"
            and r.status == "succeeded"
        ),
        by_metric("val_perplexity"),
    ),
    Query(
        "issue example, lr =",
        "params.training.learning_rate = 3e-5 AND "
        "params.training.gradient_checkpointing = true AND metrics.val_loss < 3.0 AND "
        "status = 'succeeded'",
        "metrics.val_loss",
        "params.`training.learning_rate` = '3e-05' AND "
        "params.`training.gradient_checkpointing` = 'True' AND metrics.val_loss < 3.0 AND "
        "attributes.status = 'FINISHED'",
        "metrics.val_loss ASC",
        lambda r, d: (
            d["training.learning_rate"] == 3e-5
            and d["training.gradient_checkpointing"] is True
            and m(r, "val_loss") < 3.0
            and r.status == "succeeded"
        ),
        by_metric("val_loss"),
    ),
    Query(
        "narrow param + metric",
        "metrics.val_loss < 2.4 AND params.training.per_device_train_batch_size = 32",
        "metrics.val_loss",
        "metrics.val_loss < 2.4 AND params.`training.per_device_train_batch_size` = '32'",
        "metrics.val_loss ASC",
        lambda r, d: m(r, "val_loss") < 2.4 and d["training.per_device_train_batch_size"] == 32,
        by_metric("val_loss"),
    ),
    Query(
        "3 params + 2 metrics",
        "params.model.num_hidden_layers = 12 AND "
        "params.generation.temperature = 0.7 AND params.data.tokenizer = 'bpe' AND "
        "metrics.gen_distinct_2 > 0.5 AND metrics.val_accuracy > 0.5",
        "metrics.gen_distinct_2 DESC",
        "params.`model.num_hidden_layers` = '12' AND params.`generation.temperature` = '0.7' "
        "AND params.`data.tokenizer` = 'bpe' AND metrics.gen_distinct_2 > 0.5 AND "
        "metrics.val_accuracy > 0.5",
        "metrics.gen_distinct_2 DESC",
        lambda r, d: (
            d["model.num_hidden_layers"] == 12
            and d["generation.temperature"] == 0.7
            and d["data.tokenizer"] == "bpe"
            and m(r, "gen_distinct_2") > 0.5
            and m(r, "val_accuracy") > 0.5
        ),
        by_metric("gen_distinct_2", True),
    ),
    Query(
        "status = failed",
        "status = 'failed'",
        "metrics.train_loss DESC",
        "attributes.status = 'FAILED'",
        "metrics.train_loss DESC",
        lambda r, d: r.status == "failed",
        by_metric("train_loss", True),
    ),
    # Beyond MLflow: OR, IN, NOT, ranges on params, order by a param or the date.
    Query(
        "issue example (lr <)",
        "params.training.learning_rate < 4e-5 AND "
        "params.training.gradient_checkpointing = true AND metrics.val_loss < 2.5 AND "
        "status = 'succeeded'",
        "metrics.val_loss",
        None,
        None,
        lambda r, d: (
            d["training.learning_rate"] < 4e-5
            and d["training.gradient_checkpointing"] is True
            and m(r, "val_loss") < 2.5
            and r.status == "succeeded"
        ),
        by_metric("val_loss"),
    ),
    Query(
        "IN + NOT, order date",
        "params.model.model_dim IN (128, 1024) AND NOT status = 'failed'",
        "created_at DESC",
        None,
        None,
        lambda r, d: d["model.model_dim"] in (128, 1024) and r.status != "failed",
        newest,
    ),
    Query(
        "OR + metric",
        "(params.training.scheduler = 'cosine' OR "
        "params.training.precision = 'bf16') AND metrics.val_loss < 2.6",
        "metrics.val_loss",
        None,
        None,
        lambda r, d: (
            (d["training.scheduler"] == "cosine" or d["training.precision"] == "bf16")
            and m(r, "val_loss") < 2.6
        ),
        by_metric("val_loss"),
    ),
    Query(
        "order by param",
        "status = 'succeeded'",
        "params.training.learning_rate DESC",
        None,
        None,
        lambda r, d: r.status == "succeeded",
        by_param("training.learning_rate", True),
    ),
    Query(
        "param range + NOT",
        "params.training.learning_rate >= 1e-4 AND NOT params.model.architecture = 'llama'",
        "metrics.val_accuracy DESC",
        None,
        None,
        lambda r, d: d["training.learning_rate"] >= 1e-4 and d["model.architecture"] != "llama",
        by_metric("val_accuracy", True),
    ),
]


def expected(
    data: Dataset, flat: list[dict[str, Any]], q: Query, limit: int
) -> tuple[list[int], int]:
    """The first ``limit`` run ids of ``q`` by the pure-Python evaluation, and the match count."""
    hits = [r for r in data.runs if q.pred(r, flat[r.version])]
    hits.sort(key=lambda r: q.sort(r, flat[r.version]))
    return [r.run_id for r in hits[:limit]], len(hits)


# --- the MLflow store ------------------------------------------------------------------------


def _quiet_mlflow() -> None:
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")


def _mlflow_tags(data: Dataset, r: RunSpec) -> dict[str, str]:
    v = data.versions[r.version]
    number = sum(1 for x in data.versions[: r.version + 1] if x.config == v.config)
    return {
        "registry.config": v.config,
        "registry.version": str(number),
        "registry.config_hash": data.hashes[r.version],
        "registry.run_id": str(r.run_id),
        "registry.attempt": "1",
        "registry.kind": "train",
    }


def _run_name(data: Dataset, r: RunSpec, tags: dict[str, str]) -> str:
    return f"{tags['registry.config']}-v{tags['registry.version']}-run{r.run_id}"


def load_mlflow(path: Path, data: Dataset, client_runs: int, log: Callable[[str], None]) -> dict:
    """Create the MLflow store at ``path`` and log every run of ``data`` (see the docstring)."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    _quiet_mlflow()
    t0 = time.perf_counter()
    uri = f"sqlite:///{path}"
    client = MlflowClient(uri)
    art = (path.parent / "mlartifacts").resolve().as_uri()
    exp_ids: dict[str, str] = {}
    for v in data.versions:
        if v.config not in exp_ids:
            location = f"{art}/{v.config}"
            exp_ids[v.config] = client.create_experiment(v.config, artifact_location=location)
    flat = [flat_params(doc) for doc in data.normalized]
    client_runs = min(client_runs, len(data.runs))
    steps = [int(doc["training"]["num_training_steps"]) for doc in data.normalized]
    for r in data.runs[:client_runs]:
        tags = _mlflow_tags(data, r)
        run = client.create_run(
            exp_ids[tags["registry.config"]],
            start_time=r.start_ms,
            tags=tags,
            run_name=_run_name(data, r, tags),
        )
        params = [Param(k, v) for k, v in sorted(flat[r.version].items())]
        metrics = [Metric(k, v, r.end_ms, steps[r.version]) for k, v in r.metrics.items()]
        for i in range(0, max(len(params), 1), 100):
            client.log_batch(
                run.info.run_id, params=params[i : i + 100], metrics=metrics if i == 0 else []
            )
        client.set_terminated(run.info.run_id, MLFLOW_STATUS[r.status], end_time=r.end_ms)
    t_client = time.perf_counter() - t0
    log(
        f"  mlflow: {client_runs} runs through MlflowClient in {t_client:.0f}s "
        f"({t_client / max(client_runs, 1) * 1000:.1f} ms a run)"
    )
    bulk = len(data.runs) - client_runs
    if bulk:
        _bulk_mlflow(path, data, client_runs, exp_ids, flat, steps, art)
    seconds = time.perf_counter() - t0
    log(f"  mlflow: {bulk} runs by executemany; {seconds:.0f}s in all")
    _check_mlflow_shapes(client, data, client_runs)
    return {
        "seconds": round(seconds, 1),
        "client_runs": client_runs,
        "client_ms_per_run": round(t_client / max(client_runs, 1) * 1000, 1),
        "bulk_runs": bulk,
        "experiments": len(exp_ids),
    }


def _bulk_mlflow(
    path: Path,
    data: Dataset,
    client_runs: int,
    exp_ids: dict[str, str],
    flat: list[dict[str, str]],
    steps: list[int],
    art: str,
) -> None:
    """executemany into MLflow's tables, each row shaped like the client's rows of run 1."""
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    template_id = db.execute(
        "SELECT run_uuid FROM tags WHERE key = 'registry.run_id' AND value = '1'"
    ).fetchone()[0]
    tables = _run_tables(db)
    touched = {
        t
        for t, col in tables.items()
        if db.execute(f"SELECT 1 FROM {t} WHERE {col} = ?", (template_id,)).fetchone()
    }
    expected_tables = {"runs", "tags", "params", "metrics", "latest_metrics"}
    if touched != expected_tables:
        raise RuntimeError(
            f"MLflow wrote a run into {sorted(touched)}; the bulk loader knows "
            f"{sorted(expected_tables)}"
        )
    run_row = dict(db.execute("SELECT * FROM runs WHERE run_uuid = ?", (template_id,)).fetchone())
    first = _mlflow_tags(data, data.runs[0])["registry.config"]
    if run_row["artifact_uri"] != f"{art}/{first}/{template_id}/artifacts":
        raise RuntimeError(f"unexpected artifact_uri {run_row['artifact_uri']}")
    auto_tags = {
        row["key"]: row["value"]
        for row in db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (template_id,))
        if not row["key"].startswith("registry.")
    }
    if set(auto_tags) != {"mlflow.runName"}:
        raise RuntimeError(f"unexpected automatic tags {sorted(auto_tags)}")
    rng = random.Random(len(data.runs))
    cols = list(run_row)
    ins_run = f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    runs: list[list[Any]] = []
    tags: list[tuple[str, str, str]] = []
    params: list[tuple[str, str, str]] = []
    metrics: list[tuple[str, float, int, str, int]] = []
    latest: list[tuple[str, float, int, int, str]] = []

    def flush() -> None:
        db.executemany(ins_run, runs)
        db.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", tags)
        db.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)", params)
        db.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
            "VALUES (?, ?, ?, ?, ?, 0)",
            metrics,
        )
        db.executemany(
            "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, "
            "run_uuid) VALUES (?, ?, ?, ?, 0, ?)",
            latest,
        )
        db.commit()
        for rows in (runs, tags, params, metrics, latest):
            rows.clear()

    for r in data.runs[client_runs:]:
        rid = uuid.UUID(int=rng.getrandbits(128), version=4).hex
        t = _mlflow_tags(data, r)
        name = _run_name(data, r, t)
        row = dict(run_row)
        row.update(
            run_uuid=rid,
            name=name,
            status=MLFLOW_STATUS[r.status],
            start_time=r.start_ms,
            end_time=r.end_ms,
            experiment_id=int(exp_ids[t["registry.config"]]),
            artifact_uri=f"{art}/{t['registry.config']}/{rid}/artifacts",
        )
        runs.append([row[c] for c in cols])
        tags += [(k, v, rid) for k, v in {**t, "mlflow.runName": name}.items()]
        params += [(k, v, rid) for k, v in flat[r.version].items()]
        s = steps[r.version]
        metrics += [(k, v, r.end_ms, rid, s) for k, v in r.metrics.items()]
        latest += [(k, v, r.end_ms, s, rid) for k, v in r.metrics.items()]
        if len(runs) >= 5000:
            flush()
    flush()
    db.close()


def _run_tables(db: sqlite3.Connection) -> dict[str, str]:
    out = {}
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        cols = [row[1] for row in db.execute(f"PRAGMA table_info({name})")]
        for col in ("run_uuid", "run_id"):
            if col in cols:
                out[name] = col
                break
    return out


def _check_mlflow_shapes(client: Any, data: Dataset, client_runs: int) -> None:
    """A run the client logged and one written in bulk read back alike through get_run."""
    if client_runs == 0 or client_runs >= len(data.runs):
        return
    a = _find_mlflow_run(client, 1)
    b = _find_mlflow_run(client, len(data.runs))
    for run, spec in ((a, data.runs[0]), (b, data.runs[-1])):
        assert run.info.status == MLFLOW_STATUS[spec.status], run.info
        assert run.data.metrics == spec.metrics, (run.data.metrics, spec.metrics)
        assert run.data.params == flat_params(data.normalized[spec.version])
        assert run.info.start_time == spec.start_ms and run.info.end_time == spec.end_ms
    assert set(a.data.tags) == set(b.data.tags), (a.data.tags, b.data.tags)
    assert a.info.lifecycle_stage == b.info.lifecycle_stage == "active"
    assert a.info.artifact_uri.rsplit("/", 3)[0] == b.info.artifact_uri.rsplit("/", 3)[0]


def _find_mlflow_run(client: Any, run_id: int) -> Any:
    exps = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(exps, f"tags.`registry.run_id` = '{run_id}'", max_results=2)
    assert len(found) == 1, (run_id, found)
    return found[0]


def mlflow_ids(path: Path) -> dict[int, str]:
    """Our run id -> MLflow run id, by the registry.run_id tag."""
    db = sqlite3.connect(path)
    rows = db.execute("SELECT value, run_uuid FROM tags WHERE key = 'registry.run_id'").fetchall()
    db.close()
    return {int(v): rid for v, rid in rows}


# --- caches ----------------------------------------------------------------------------------


def schema_key() -> str:
    """Changes when migration 0003 (the query index) changes: cached databases are rebuilt."""
    migration = resources.files("registry.migrations") / "versions" / "0003_query_index.py"
    return hashlib.sha256(migration.read_bytes()).hexdigest()[:8]


def ensure_mlflow(
    n: int, data: Dataset, args: argparse.Namespace, log: Callable
) -> tuple[Path, dict]:
    folder = VAR / f"mlflow-{n}-d{DATA_VERSION}-c{args.client_runs}"
    path, done = folder / "mlflow.db", folder / "loaded.json"
    if done.exists() and path.exists() and not args.reload:
        return path, json.loads(done.read_text()) | {"cached": True}
    _remove_folder(folder)
    folder.mkdir(parents=True)
    log(f"loading {n} runs into the MLflow store {path}")
    notes = load_mlflow(path, data, args.client_runs, log)
    done.write_text(json.dumps(notes))
    return path, notes


def ensure_sqlite(
    n: int, data: Dataset, ids: dict[int, str], args: argparse.Namespace, log: Callable
) -> tuple[str, dict]:
    folder = VAR / f"registry-{n}-d{DATA_VERSION}-s{schema_key()}"
    path, done = folder / "registry.db", folder / "loaded.json"
    url = f"sqlite:///{path}"
    if done.exists() and path.exists() and not args.reload:
        _upgrade(url)
        return url, json.loads(done.read_text()) | {"cached": True}
    _remove_folder(folder)
    folder.mkdir(parents=True)
    log(f"loading {n} runs into {url} through the services")
    notes = load_registry(url, data, ids, batch=args.batch, progress=log)
    done.write_text(json.dumps(notes))
    return url, notes


def _folder_key(folder: Path) -> str:
    """'' for the checkout's var/bench, else a key of ``folder``: stores cached in different
    folders (a test's, another checkout's) never share, nor drop, one PostgreSQL database."""
    if folder.resolve() == DEFAULT_VAR.resolve():
        return ""
    return "_" + hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]


def postgres_store(n: int, folder: Path) -> str:
    """The name of the PostgreSQL database that holds the ``n``-run store cached in ``folder``."""
    return f"{PG_STORE_PREFIX}{n}_d{DATA_VERSION}_s{schema_key()}{_folder_key(folder)}"


def drop_postgres_stores(folder: Path) -> list[str]:
    """Drop every PostgreSQL store cached for ``folder`` (never those of var/bench); their names."""
    from sqlalchemy import create_engine, text

    key = _folder_key(folder)
    if not key:
        return []
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            names = [
                name
                for (name,) in conn.execute(text("SELECT datname FROM pg_database"))
                if name.startswith(PG_STORE_PREFIX) and name.endswith(key)
            ]
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
    return names


def ensure_postgres(
    n: int, data: Dataset, ids: dict[int, str], args: argparse.Namespace, log: Callable
) -> tuple[str, dict]:
    from sqlalchemy import create_engine, text

    name = postgres_store(n, VAR)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    done = VAR / f"{name}.json"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar()
            if exists and done.exists() and not args.reload:
                _upgrade(url)
                return url, json.loads(done.read_text()) | {"cached": True}
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    log(f"loading {n} runs into PostgreSQL database {name} through the services")
    notes = load_registry(url, data, ids, batch=args.batch, progress=log)
    VAR.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(notes))
    return url, notes


def _upgrade(url: str) -> None:
    from alembic import command

    from registry.migrations import alembic_config

    command.upgrade(alembic_config(url), "head")


def _remove_folder(folder: Path) -> None:
    if folder.exists():
        for p in sorted(folder.rglob("*"), reverse=True):
            p.unlink() if p.is_file() or p.is_symlink() else p.rmdir()
        folder.rmdir()


# --- the server ------------------------------------------------------------------------------


class Server:
    """``registry serve`` on a free port against ``url``, with a viewer token."""

    def __init__(self, url: str, log_path: Path) -> None:
        from registry.cli.devstack import BIN, free_port, spawn, wait_healthy
        from registry.db import make_engine, make_session_factory, transaction
        from registry.services.auth import create_token

        engine = make_engine(url)
        with transaction(make_session_factory(engine)) as s:
            self.token = create_token(s, "bench-query", "viewer")
        engine.dispose()
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = {
            "DATABASE_URL": url,
            "REGISTRY_LEASE_SECONDS": "86400",
            "REGISTRY_SECRET_KEY": secrets.token_urlsafe(48),
        }
        args = [
            str(BIN / "registry"),
            "serve",
            "--port",
            str(port),
            "--workers",
            "1",
            "--threads",
            "2",
        ]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.child = spawn("registry serve", args, env, log_path)
        wait_healthy(self.child, f"{self.base}/api/v1/health", 60)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def search(self, q: Query, limit: int) -> list[int]:
        params: dict[str, Any] = {"order_by": q.order_by, "limit": limit}
        if q.filter:
            params["filter"] = q.filter
        answer = self.http.get(f"{self.base}/api/v1/runs", params=params, timeout=120)
        if answer.status_code != 200:
            raise RuntimeError(f"{q.name}: HTTP {answer.status_code}: {answer.text[:500]}")
        return [r["id"] for r in answer.json()["runs"]]

    def check_filter_api(self) -> None:
        """The list endpoint must take the filter language (not only status/config equality)."""
        answer = self.http.get(
            f"{self.base}/api/v1/runs",
            timeout=60,
            params={
                "filter": "metrics.val_loss < 0 OR params.model.model_dim IN (1, 2)",
                "order_by": "metrics.val_loss",
                "limit": "1",
            },
        )
        if answer.status_code != 200:
            raise SystemExit(
                "GET /api/v1/runs does not take the filter language yet "
                f"(HTTP {answer.status_code}: {answer.text[:300]})"
            )

    def stop(self) -> None:
        self.http.close()
        self.child.stop()


# --- MLflow's side --------------------------------------------------------------------------


class MlflowSearcher:
    """``MlflowClient.search_runs`` in a child process (one client, kept warm), so that a call
    can be given up after ``timeout`` seconds. The child times the call itself."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        self._start()

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_mlflow_child, args=(str(self.path), child), daemon=True)
        self.proc.start()
        child.close()
        self.experiments = self.conn.recv()

    def search(self, q: Query, limit: int) -> tuple[float | None, list[int] | None]:
        """(milliseconds, our run ids in MLflow's order), or (None, None) on timeout."""
        self.conn.send((q.mlflow_filter or "", q.mlflow_order, limit))
        if not self.conn.poll(self.timeout):
            self.proc.kill()
            self.proc.join()
            self._start()
            return None, None
        ms, ids = self.conn.recv()
        return ms, ids

    def close(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def _mlflow_child(path: str, conn: Any) -> None:
    from mlflow.tracking import MlflowClient

    _quiet_mlflow()
    client = MlflowClient(f"sqlite:///{path}")
    exp_ids = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    conn.send(len(exp_ids))
    while (msg := conn.recv()) is not None:
        filter_string, order, limit = msg
        t = time.perf_counter()
        found = client.search_runs(exp_ids, filter_string, order_by=[order], max_results=limit)
        ms = (time.perf_counter() - t) * 1000
        conn.send((ms, [int(r.data.tags["registry.run_id"]) for r in found]))


# --- timing ----------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1000, out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build (or reuse) the stores, time every query on each side; the result as JSON."""
    log = print
    t0 = time.perf_counter()
    data = make_dataset(args.runs)
    from registry.document.spec import flatten

    flat = [flatten(doc) for doc in data.normalized]
    ml_path, ml_notes = ensure_mlflow(args.runs, data, args, log)
    ids = mlflow_ids(ml_path)
    sqlite_url, sqlite_notes = ensure_sqlite(args.runs, data, ids, args, log)
    pg_url, pg_notes = (None, None)
    if args.postgres:
        pg_url, pg_notes = ensure_postgres(args.runs, data, ids, args, log)
    log(f"stores ready in {time.perf_counter() - t0:.0f}s")

    servers: dict[str, Server] = {}
    mlflow = None
    try:
        servers["sqlite"] = Server(sqlite_url, VAR / "serve-sqlite.log")
        if pg_url:
            servers["postgres"] = Server(pg_url, VAR / "serve-postgres.log")
        if not args.no_mlflow:
            mlflow = MlflowSearcher(ml_path, args.mlflow_timeout)
        rows = time_queries(servers, mlflow, args, data, flat)
    finally:
        for server in servers.values():
            server.stop()
        if mlflow is not None:
            mlflow.close()
    return {
        "summary": summarise(rows, args, postgres=pg_url is not None),
        "queries": rows,
        "loading": {"mlflow": ml_notes, "sqlite": sqlite_notes, "postgres": pg_notes},
        "method": method(args),
        "seconds": round(time.perf_counter() - t0, 1),
    }


Call = Callable[[], tuple[float | None, list[int] | None]]


def time_queries(
    servers: dict[str, Server],
    mlflow: MlflowSearcher | None,
    args: argparse.Namespace,
    data: Dataset,
    flat: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """One row per query: its matches, each side's first and median times, the ratio."""
    for server in servers.values():
        server.check_filter_api()
    print(
        f"{'query':24s}{'matches':>8s}{'sqlite ms':>10s}"
        + (f"{'pg ms':>10s}" if "postgres" in servers else "")
        + f"{'mlflow ms':>10s}{'ratio':>10s}"
    )
    rows = []
    for q in QUERIES:
        want, matches = expected(data, flat, q, args.limit)
        row: dict[str, Any] = {
            "query": q.name,
            "filter": q.filter,
            "order_by": q.order_by,
            "mlflow_filter": q.mlflow_filter,
            "mlflow_order_by": q.mlflow_order,
            "matches": matches,
        }
        calls = {name: _ours(s, q, args.limit) for name, s in servers.items()}
        if q.mlflow_order is not None and mlflow is not None:
            calls["mlflow"] = functools.partial(mlflow.search, q, args.limit)
        _first_calls(row, calls, want, args)
        _repeat_calls(row, calls, args)
        rows.append(row)
        _print_row(row, servers)
    return rows


def _ours(server: Server, q: Query, limit: int) -> Call:
    """One timed search of ``server``: (milliseconds, run ids)."""
    return lambda: timed(lambda: server.search(q, limit))


def _first_calls(
    row: dict[str, Any], calls: dict[str, Call], want: list[int], args: argparse.Namespace
) -> None:
    """The warm-up call of each side, which is also the correctness check."""
    for name, call in calls.items():
        ms, got = call()
        if ms is None:
            row[f"{name}_timed_out_s"] = args.mlflow_timeout
            print(f"  {row['query']} / {name}: no answer within {args.mlflow_timeout:.0f}s")
            continue
        row[f"{name}_first_ms"] = round(ms, 2)
        row[f"{name}_same"] = got == want
        if got != want:
            print(
                f"  MISMATCH {row['query']} / {name}: got {(got or [])[:8]}... "
                f"want {want[:8]}... (sets equal: {set(got or []) == set(want)})"
            )


def _repeat_calls(row: dict[str, Any], calls: dict[str, Call], args: argparse.Namespace) -> None:
    """The timed calls, interleaved so that drift hits every side alike; medians and ratio."""
    times: dict[str, list[float]] = {k: [] for k in calls}
    slow = row.get("mlflow_first_ms", 0) > args.slow_ms
    if slow:  # minutes a call: the first call is the one sample (a warm-up is noise here)
        times["mlflow"].append(row["mlflow_first_ms"])
    skip_mlflow = slow or "mlflow_timed_out_s" in row
    for i in range(args.repeat):
        for name, call in calls.items():
            if name == "mlflow" and (skip_mlflow or i >= args.mlflow_repeat):
                continue
            ms, _ = call()
            if ms is not None:
                times[name].append(ms)
    for name, ts in times.items():
        if ts:
            row[f"{name}_ms"] = round(statistics.median(ts), 2)
            row[f"{name}_reps"] = len(ts)
    if "mlflow_ms" in row:
        row["ratio"] = round(row["mlflow_ms"] / row["sqlite_ms"], 1)
    elif "mlflow_timed_out_s" in row:  # a lower bound
        row["ratio_at_least"] = round(args.mlflow_timeout * 1000 / row["sqlite_ms"], 1)


def summarise(rows: list[dict[str, Any]], args: argparse.Namespace, postgres: bool) -> dict:
    """The headline figures and whether the goals were met."""
    compared = [r for r in rows if "ratio" in r or "ratio_at_least" in r]
    ratios: list[float] = [r["ratio"] if "ratio" in r else r["ratio_at_least"] for r in compared]
    summary: dict[str, Any] = {
        "runs": args.runs,
        "limit": args.limit,
        "ours_sqlite_median_ms": round(statistics.median(r["sqlite_ms"] for r in rows), 2),
        "ours_sqlite_median_ms_compared": round(
            statistics.median(r["sqlite_ms"] for r in compared), 2
        )
        if compared
        else None,
        "median_ratio": round(statistics.median(ratios), 1) if ratios else None,
        "min_ratio": min(ratios) if ratios else None,
        "ratios_that_are_lower_bounds": sum("ratio_at_least" in r for r in compared),
        "all_same": all(v for r in rows for k, v in r.items() if k.endswith("_same")),
    }
    if postgres:
        summary["ours_postgres_median_ms"] = round(
            statistics.median(r["postgres_ms"] for r in rows), 2
        )
    summary["goal_20x_every_query"] = bool(compared) and summary["min_ratio"] >= 20
    summary["goal_under_50ms_median"] = summary["ours_sqlite_median_ms"] < 50
    return summary


def method(args: argparse.Namespace) -> dict[str, Any]:
    """How each side was timed, for the JSON."""
    return {
        "ours": "GET /api/v1/runs over HTTP (keep-alive) against `registry serve --workers 1 "
        "--threads 2`, timed to the decoded JSON",
        "mlflow": "MlflowClient(sqlite).search_runs(all experiment ids, filter_string, "
        "order_by=[...], max_results=limit), timed in a child process that holds "
        "one warm client; a call over mlflow_timeout_s is abandoned (the child is "
        "killed) and its ratio reported as a lower bound",
        "mlflow_timeout_s": args.mlflow_timeout,
        "repeat": args.repeat,
        "mlflow_repeat": args.mlflow_repeat,
        "mlflow_slow_ms": args.slow_ms,
        "median_of": "timed repetitions after one warm-up call (which also checks results); "
        "an MLflow query whose first call took over mlflow_slow_ms is not "
        "repeated: that call is its one sample (mlflow_reps = 1)",
    }


def _print_row(row: dict[str, Any], servers: dict[str, Any]) -> None:
    def cell(key: str) -> str:
        return f"{row[key]:10.1f}" if key in row else f"{'-':>10s}"

    same = "ok" if all(v for k, v in row.items() if k.endswith("_same")) else "DIFF"
    pg = cell("postgres_ms") if "postgres" in servers else ""
    if "ratio" in row:
        ratio = f"{row['ratio']:.0f}x"
    elif "ratio_at_least" in row:
        ratio = f">{row['ratio_at_least']:.0f}x"
    else:
        ratio = "ours only"
    mlflow = cell("mlflow_ms")
    if "mlflow_timed_out_s" in row:
        mlflow = f"{'>' + format(row['mlflow_timed_out_s'] * 1000, '.0f'):>10s}"
    ratio = f"{ratio:>10s}"
    print(
        f"{row['query']:24s}{row['matches']:8d}{cell('sqlite_ms')}{pg}{mlflow}{ratio}  {same}",
        flush=True,
    )


def _stop_on_sigterm(_signum: int, _frame: Any) -> None:
    raise SystemExit("terminated")  # so the servers and the MLflow child are stopped


def main() -> int:
    """Load, time, write the JSON; non-zero when one of our answers was wrong."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--postgres", action="store_true", help="also ours on PostgreSQL")
    parser.add_argument("--repeat", type=int, default=7, help="timed repetitions of ours")
    parser.add_argument("--mlflow-repeat", type=int, default=3)
    parser.add_argument(
        "--slow-ms",
        type=float,
        default=10000,
        help="an MLflow query slower than this is not repeated: its first call is its one sample",
    )
    parser.add_argument(
        "--mlflow-timeout",
        type=float,
        default=300,
        help="seconds an MLflow call may take; slower ones count as this long "
        "(the ratio is then a lower bound)",
    )
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument(
        "--client-runs",
        type=int,
        default=2000,
        help="runs logged through MlflowClient; the rest by executemany",
    )
    parser.add_argument("--batch", type=int, default=1000, help="runs per transaction")
    parser.add_argument("--reload", action="store_true", help="rebuild the cached stores")
    parser.add_argument("--no-mlflow", action="store_true", help="time ours only")
    parser.add_argument("--out", type=Path, default=VAR / "query.json")
    args = parser.parse_args()
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))
    print(f"wrote {args.out}")
    wrong = [
        f"{row['query']} ({key.removesuffix('_same')})"
        for row in result["queries"]
        for key in ("sqlite_same", "postgres_same")
        if row.get(key) is False
    ]
    if wrong:
        print(f"wrong answers from ours: {', '.join(wrong)}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
