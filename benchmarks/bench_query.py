"""Latency of registry.query.search_runs over N runs, on SQLite and (if reachable) PostgreSQL.

Ours only: rows are bulk-inserted with the indexing encoders (not through the services), and
there is no MLflow side yet; issue 4's full benchmark (HTTP API vs MlflowClient.search_runs,
same runs, median ratio) is still to be written. Run:
`python -m benchmarks.bench_query [--runs 100000] [--repeat 5]`.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from registry.db import make_session_factory
from registry.indexing import metric_rows, param_rows
from registry.models import Config, ConfigVersion, Run, RunMetric, VersionParam
from registry.query import search_runs
from registry.spec import normalize

QUERIES: list[tuple[str, str | None, str | None]] = [
    ("param =", "params.model.model_dim = 512", None),
    ("param < and metric <", "params.training.learning_rate < 4e-5 AND metrics.val_loss < 2.5",
     None),
    ("issue example, order", "params.training.learning_rate < 4e-5 AND "
     "params.training.gradient_checkpointing = true AND metrics.val_loss < 2.5 AND "
     "status = 'succeeded'", "metrics.val_loss"),
    ("order metric", None, "metrics.val_loss"),
    ("order metric desc", None, "metrics.val_accuracy DESC"),
    ("metric range, order", "metrics.val_loss < 1.6", "metrics.val_loss"),
    ("OR, NOT, order date", "(params.model.model_dim = 128 OR params.model.model_dim = 1024) "
     "AND NOT status = 'failed'", "created_at DESC"),
    ("status", "status = 'running'", None),
    ("order param", "status = 'succeeded'", "params.training.learning_rate DESC"),
    ("narrow", "metrics.val_loss < 1.51 AND params.training.per_device_train_batch_size = 32",
     "metrics.val_loss"),
]


def load(engine: Engine, n_runs: int, n_versions: int = 500, seed: int = 1) -> None:
    """n_versions varied config versions and n_runs runs with metrics, indexed."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    base = normalize({})
    with engine.begin() as conn:
        conn.execute(sa.insert(Config.__table__),
                     [{"id": i + 1, "name": f"cfg{i}", "created_at": now} for i in range(50)])
        versions, params = [], []
        for v in range(n_versions):
            doc = copy.deepcopy(base)
            doc["training"]["learning_rate"] = rng.choice([1e-5, 2e-5, 3e-5, 4e-5, 5e-5, 1e-4])
            doc["training"]["gradient_checkpointing"] = rng.random() < 0.3
            doc["training"]["per_device_train_batch_size"] = rng.choice([8, 16, 32])
            doc["model"]["model_dim"] = rng.choice([128, 256, 512, 1024])
            versions.append({"id": v + 1, "config_id": v % 50 + 1, "version": v // 50 + 1,
                             "hash": f"{v:064x}", "document": doc, "created_at": now})
            params += param_rows(v + 1, doc)
        conn.execute(sa.insert(ConfigVersion.__table__), versions)
        conn.execute(sa.insert(VersionParam.__table__), params)
        runs: list[dict[str, Any]] = []
        metrics: list[dict[str, Any]] = []
        for i in range(n_runs):
            status = rng.choice(["succeeded"] * 6 + ["failed", "queued", "running", "cancelled"])
            m = None
            if status in ("succeeded", "failed"):
                m = {"val_loss": rng.uniform(1.5, 4), "train_loss": rng.uniform(1, 4),
                     "val_accuracy": rng.random(), "tokens_per_second": rng.uniform(1e3, 2e4)}
            runs.append({"id": i + 1, "config_version_id": rng.randint(1, n_versions),
                         "kind": "train", "status": status, "queue": "default", "priority": 0,
                         "attempt": 1, "seed": 42, "cancel_requested": False, "metrics": m,
                         "created_at": now + dt.timedelta(seconds=i)})
            metrics += metric_rows(i + 1, m)
            if len(runs) == 5000 or i == n_runs - 1:
                conn.execute(sa.insert(Run.__table__), runs)
                conn.execute(sa.insert(RunMetric.__table__), metrics)
                runs, metrics = [], []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE" if engine.dialect.name == "postgresql"
                             else "ANALYZE"))


def bench(engine: Engine, repeat: int) -> dict[str, float]:
    """Median milliseconds per query, 100 rows a page."""
    factory = make_session_factory(engine)
    out = {}
    for name, expr, order in QUERIES:
        times = []
        with factory() as session:
            for _ in range(repeat):
                start = time.perf_counter()
                search_runs(session, expr, order, 100)
                times.append(time.perf_counter() - start)
                session.rollback()
        out[name] = statistics.median(times) * 1000
    return out


def main() -> None:
    from tests.dbs import migrated_engine, postgres_available, postgres_database

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        engine = migrated_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        load(engine, args.runs)
        results["sqlite"] = bench(engine, args.repeat)
        engine.dispose()
    if postgres_available() is None:
        with postgres_database() as url:
            engine = migrated_engine(url)
            load(engine, args.runs)
            results["postgres"] = bench(engine, args.repeat)
            engine.dispose()
    print(f"{'query':26s}" + "".join(f"{b:>12s}" for b in results))
    for name, _, _ in QUERIES:
        print(f"{name:26s}" + "".join(f"{results[b][name]:10.1f}ms" for b in results))


if __name__ == "__main__":
    main()
