"""Server time of each web page with 10,000 runs in the database (goal: under 200 ms).

Builds a migrated SQLite database in a temporary folder (or uses --database-url), fills it
with configs, versions and runs (a mix of statuses, finished runs with metrics, indexed for
the filter language), signs in through the login form, and times each page through the
Flask test client: no network, so the figure is what the server spends.
Run: `python benchmarks/bench_pages.py [--runs 10000] [--repeat 15]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from registry.db import make_engine, make_session_factory, transaction, utcnow
from registry.document import presets
from registry.http.app import create_app
from registry.models import Run
from registry.services import configs, indexing, workers
from registry.services.auth import create_token
from registry.settings import Settings

GOAL_MS = 200.0
STATUSES = ("succeeded", "succeeded", "succeeded", "failed", "cancelled", "queued", "running")


def _migrate(url: str) -> None:
    from alembic import command

    from registry.migrations import alembic_config

    command.upgrade(alembic_config(url), "head")


def fill(url: str, n_runs: int, n_configs: int = 50, seed: int = 0) -> dict[str, Any]:
    """Configs with 3 versions each and ``n_runs`` runs spread over them; returns some ids."""
    rng = random.Random(seed)
    base = presets.get_preset("tiny-cpu").document
    factory = make_session_factory(make_engine(url))
    with transaction(factory) as s:
        token = create_token(s, "bench", "admin")
        versions = []
        for c in range(n_configs):
            for v in range(3):
                doc = {
                    **base,
                    "training": {**base["training"], "learning_rate": 1e-4 * (v + 1), "seed": c},
                }
                if v == 0:
                    added = configs.create_config(s, f"config-{c:03d}", doc, message="v1")
                else:
                    added = configs.add_version(s, f"config-{c:03d}", doc, message=f"v{v + 1}")
                versions.append(added.version.id)
        workers.register_worker(s, "bench-w", utcnow(), host="h", queues=["default"])
    now = utcnow()
    rows = []
    for i in range(n_runs):
        status = rng.choice(STATUSES)
        done = status in ("succeeded", "failed")
        loss = rng.uniform(1.5, 4.0)
        rows.append(
            {
                "config_version_id": rng.choice(versions),
                "kind": "train",
                "status": status,
                "queue": rng.choice(("default", "default", "big")),
                "priority": 0,
                "attempt": 1,
                "seed": 42,
                "cancel_requested": False,
                "created_at": now - dt.timedelta(seconds=n_runs - i),
                "metrics": {"val_loss": loss, "train_loss": loss * 0.9} if done else None,
                "progress": (
                    {"phase": "train", "step": 10, "total": 30} if status == "running" else None
                ),
                "started_at": now - dt.timedelta(seconds=60) if status != "queued" else None,
                "worker_id": "bench-w" if status == "running" else None,
            }
        )
    with transaction(factory) as s:
        s.execute(insert(Run), rows)
        indexing.backfill(s)
    return {"token": token}


def sign_in(client: Any, token: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf
    answer = client.post("/login", data={"token": token, "csrf_token": csrf.group(1)})
    assert answer.status_code == 303, answer.status_code


#: The pages timed; ``{middle}`` is a run id in the middle of the filled runs.
PAGES = [
    "/configs",
    "/configs?q=config-04",
    "/configs/config-007",
    "/configs/config-007?from=1&to=3&all=1",
    "/configs/-/new",
    "/configs/config-007/new",
    "/runs",
    "/runs?order=metrics.val_loss+ASC",
    "/runs?filter=metrics.val_loss+%3C+2.5+AND+status+%3D+%27succeeded%27",
    "/runs?filter=params.training.learning_rate+%3E+1.5e-4&order=created_at+DESC",
    "/runs?filter=config+%3D+%27config-001%27",
    "/runs?filter=status+%3D%3D+1",
    "/runs/{middle}",
    "/compare?run=100&run=200&run=300",
    "/workers",
]


#: What each page must answer (a page not named here: 200); anything else fails the run.
EXPECTED_STATUS = {"/runs?filter=status+%3D%3D+1": 400}


def time_pages(client: Any, repeat: int, n_runs: int) -> list[tuple[str, float, float, int]]:
    """(page, median ms, max ms, status) for each page, after one warm-up request."""
    out = []
    for page in PAGES:
        url = page.format(middle=max(1, n_runs // 2))
        status = client.get(url).status_code
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            client.get(url)
            times.append((time.perf_counter() - start) * 1000)
        out.append((url, statistics.median(times), max(times), status))
    return out


def main() -> int:
    """Fill, time and print; non-zero when a page answered other than it should."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--database-url", help="an empty database (default: a temporary SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        _migrate(url)
        started = time.perf_counter()
        ids = fill(url, args.runs)
        print(f"filled {args.runs} runs in {time.perf_counter() - started:.1f}s")
        settings = Settings(
            database_url=url,
            secret_key=secrets.token_urlsafe(48),
            secure_cookies=False,
            mlflow_tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}",
        )
        client = create_app(settings).test_client()
        sign_in(client, ids["token"])
        results = time_pages(client, args.repeat, args.runs)
    width = max(len(u) for u, *_ in results)
    print(f"{'page':<{width}}  status  median ms  max ms")
    for url, median, worst, status in results:
        flag = "" if median < GOAL_MS else "  <-- over the goal"
        print(f"{url:<{width}}  {status:>6}  {median:>9.1f}  {worst:>6.1f}{flag}")
    wrong = [(u, st) for u, _, _, st in results if st != EXPECTED_STATUS.get(u, 200)]
    for u, st in wrong:
        print(f"{u} answered {st}, expected {EXPECTED_STATUS.get(u, 200)}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
