"""Shared by the query benchmarks: a deterministic synthetic sweep, and loading it.

``make_dataset(n_runs)`` builds a few hundred config versions (40 configs x 8 versions varying
learning_rate, model_dim, heads, layers, batch, gradient_checkpointing, scheduler, precision,
temperature, top_p, ...) and ``n_runs`` runs of them, each with a unique seed, a finished
status and final metrics that depend plausibly on the config (train_loss, val_loss,
val_perplexity, val_accuracy, tokens_per_second, gen_distinct_2, gen_repetition_rate).
The same seed gives the same data, so the registry and the MLflow store hold the same runs.

``load_registry(url, data)`` writes it through the service functions only: create_config /
add_version (which index each version's params), workers.register_worker, queue.enqueue,
queue.claim and queue.complete (which index the run's final metrics), many runs per
transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Bump when the generator changes, so cached stores are rebuilt.
DATA_VERSION = 1
N_CONFIGS = 40
VERSIONS_PER_CONFIG = 8
WORKER = "bench-worker"
CODE_VERSIONS = [hashlib.sha1(f"commit{i}".encode()).hexdigest() for i in range(12)]
#: A stand-in content hash per dataset the generated versions name (see DATASETS below).
DATASET_SHA = {
    "builtin:pydoc": hashlib.sha256(b"pydoc").hexdigest(),
    "builtin:licenses": hashlib.sha256(b"licenses").hexdigest(),
    **{
        name: hashlib.sha256(name.encode()).hexdigest()
        for name in ("builtin:stdlib-docs", "file:labels.jsonl", "builtin:shapes", "file:pairs")
    },
}


@dataclass(frozen=True)
class VersionSpec:
    """One config version: its config name and raw document."""

    config: str
    doc: dict[str, Any]


@dataclass(frozen=True)
class RunSpec:
    """One run: the version it runs (index into Dataset.versions) and how it ended."""

    run_id: int  # the id it gets in a fresh database: runs are created in this order
    version: int
    seed: int
    status: str  # succeeded | failed | cancelled
    metrics: dict[str, float]
    code_version: str
    device: str
    start_ms: int
    end_ms: int


@dataclass
class Dataset:
    """The versions and runs of one benchmark size."""

    versions: list[VersionSpec]
    runs: list[RunSpec]
    normalized: list[dict[str, Any]] = field(default_factory=list)  # per version
    hashes: list[str] = field(default_factory=list)


#: Two datasets a task can name (one draw either way, so the random stream is as before).
DATASETS = {
    "causal_lm": ["builtin:pydoc", "builtin:licenses"],
    "classification": ["builtin:stdlib-docs", "file:labels.jsonl"],
    "multimodal_matching": ["builtin:shapes", "file:pairs"],
}


def _doc(rng: random.Random, family: str) -> dict[str, Any]:
    dim = rng.choice([128, 256, 512, 768, 1024])
    heads = rng.choice([h for h in (4, 8, 16) if dim % h == 0])
    task = {"cls": "classification", "mm": "multimodal_matching"}.get(family, "causal_lm")
    doc: dict[str, Any] = {
        "task": task,
        "model": {
            "architecture": rng.choice(["deepseek_v2", "llama"]),
            "model_dim": dim,
            "num_attention_heads": heads,
            "num_hidden_layers": rng.choice([2, 4, 6, 8, 12]),
        },
        "training": {
            "learning_rate": rng.choice([1e-5, 2e-5, 3e-5, 4e-5, 5e-5, 1e-4, 3e-4]),
            "scheduler": rng.choice(["linear", "cosine", "constant"]),
            "num_training_steps": rng.choice([300, 1000, 3000]),
            "per_device_train_batch_size": rng.choice([8, 16, 32]),
            "gradient_accumulation_steps": rng.choice([1, 1, 2, 4]),
            "gradient_checkpointing": rng.random() < 0.35,
            "weight_decay": rng.choice([0.0, 0.01, 0.1]),
            "precision": rng.choice(["fp32", "bf16", "fp16"]),
        },
        "generation": {
            "temperature": rng.choice([0.3, 0.5, 0.7, 1.0]),
            "top_p": rng.choice([0.9, 0.92, 0.95]),
            "repetition_penalty": rng.choice([1.0, 1.1, 1.2]),
        },
        "data": {
            "dataset": rng.choice(DATASETS[task]),
            "tokenizer": rng.choice(["byte", "bpe"]),
            "seq_len": rng.choice([128, 256]),
        },
    }
    if task == "multimodal_matching":
        w = rng.choice([0.6, 0.7, 0.8])
        doc["multimodal"] = {"visual_encoder_weight": w, "text_encoder_weight": round(1 - w, 2)}
    return doc


def _metrics(rng: random.Random, doc: dict[str, Any], status: str) -> dict[str, float]:
    m, t, g = doc["model"], doc["training"], doc["generation"]
    quality = 0.25 * math.log2(m["model_dim"] / 128) + 0.15 * math.log2(m["num_hidden_layers"] / 2)
    lr_penalty = 0.6 * abs(math.log10(t["learning_rate"]) - math.log10(5e-5))
    steps = 0.1 * math.log10(3000 / t["num_training_steps"])
    val_loss = max(1.2, 3.4 - quality + lr_penalty + steps + rng.gauss(0, 0.15))
    train_loss = max(1.0, val_loss - abs(rng.gauss(0.08, 0.05)))
    speed = 60000 * (128 / m["model_dim"]) * (2 / m["num_hidden_layers"]) ** 0.7
    speed *= (t["per_device_train_batch_size"] / 16) ** 0.3
    speed *= 0.72 if t["gradient_checkpointing"] else 1.0
    speed *= (1.6 if t["precision"] != "fp32" else 1.0) * math.exp(rng.gauss(0, 0.1))
    full = {
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val_perplexity": math.exp(val_loss),
        "val_accuracy": min(0.99, max(0.01, 0.75 - 0.18 * (val_loss - 1.5) + rng.gauss(0, 0.02))),
        "tokens_per_second": speed,
        "gen_distinct_2": min(
            1.0,
            max(
                0.0, 0.35 + 0.35 * g["temperature"] + 0.3 * (g["top_p"] - 0.9) + rng.gauss(0, 0.04)
            ),
        ),
        "gen_repetition_rate": min(
            1.0, max(0.0, 0.25 - 0.15 * g["temperature"] + rng.gauss(0, 0.03))
        ),
    }
    if status == "succeeded":
        return full
    # A failed or cancelled run reports what it had: the training loss, or nothing.
    return {"train_loss": full["train_loss"]} if rng.random() < 0.6 else {}


def make_dataset(n_runs: int, seed: int = 20261130) -> Dataset:
    """The deterministic sweep of ``n_runs`` runs over N_CONFIGS x VERSIONS_PER_CONFIG versions."""
    from registry.document import spec

    rng = random.Random(seed)
    families = ["tiny-lm", "chat-lm", "code-lm", "cls", "mm"]
    versions: list[VersionSpec] = []
    normalized: list[dict[str, Any]] = []
    hashes: list[str] = []
    for c in range(N_CONFIGS):
        family = families[c % len(families)]
        name = f"{family}-{c:02d}"
        seen: set[str] = set()
        while len(seen) < VERSIONS_PER_CONFIG:
            doc = _doc(rng, family)
            result = spec.validate(doc)
            if not result.valid or result.hash is None or result.normalized is None:
                continue
            if result.hash in seen:
                continue
            seen.add(result.hash)
            versions.append(VersionSpec(name, doc))
            normalized.append(result.normalized)
            hashes.append(result.hash)
    # Popular versions get many runs (a sweep's favourites), the tail a few.
    weights = [1.0 / (1 + (i * 7919) % len(versions)) ** 0.6 for i in range(len(versions))]
    start = int(dt.datetime(2026, 6, 1, tzinfo=dt.UTC).timestamp() * 1000)
    runs: list[RunSpec] = []
    chosen = rng.choices(range(len(versions)), weights=weights, k=n_runs)
    for i, v in enumerate(chosen):
        status = rng.choices(["succeeded", "failed", "cancelled"], [88, 9, 3])[0]
        begin = start + i * 60_000 + rng.randrange(60_000)
        runs.append(
            RunSpec(
                run_id=i + 1,
                version=v,
                seed=1000 + i,
                status=status,
                metrics=_metrics(rng, normalized[v], status),
                code_version=rng.choice(CODE_VERSIONS),
                device=rng.choice(["cpu", "cuda:0", "cuda:0", "cuda:1"]),
                start_ms=begin,
                end_ms=begin + rng.randrange(60_000, 3_600_000),
            )
        )
    return Dataset(versions, runs, normalized, hashes)


def provenance(data: Dataset, run: RunSpec) -> dict[str, Any]:
    """A complete provenance record (CONTRACT section 3), as a worker reports it."""
    doc = data.normalized[run.version]
    return {
        "seed": run.seed,
        "config_hash": data.hashes[run.version],
        "python": "3.12.3",
        "torch": "2.13.0",
        "transformers": "5.24.0",
        "mlflow": "3.17.2",
        "device": run.device,
        "dataset_sha256": DATASET_SHA[doc["data"]["dataset"]],
        "code_version": run.code_version,
    }


def error_of(run: RunSpec) -> dict[str, Any] | None:
    if run.status == "failed":
        return {"kind": "oom", "message": "CUDA out of memory (synthetic)"}
    return None


def flat_params(doc: dict[str, Any]) -> dict[str, str]:
    """The params a worker logs to MLflow: the flattened normalised config, as strings."""
    from registry.document.spec import flatten

    return {k: "null" if v is None else str(v)[:6000] for k, v in flatten(dict(doc)).items()}


# --- loading the registry through its services ----------------------------------------------


def load_registry(
    url: str,
    data: Dataset,
    mlflow_ids: dict[int, str] | None = None,
    batch: int = 1000,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Migrate ``url`` (a fresh database) and load ``data`` through the service functions.

    Per transaction, ``batch`` runs are enqueued, then claimed and completed one by one
    (``claim`` takes the oldest queued run: the ids come out in order). Returns notes on how
    metrics got indexed and how long it took.
    """
    from alembic import command

    from registry.db import make_engine, make_session_factory
    from registry.migrations import alembic_config

    t0 = time.perf_counter()
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(url)
    loader = _Loader(make_session_factory(engine), data, mlflow_ids or {}, progress)
    loader.versions()
    t_versions = time.perf_counter() - t0
    done = 0
    for lo in range(0, len(data.runs), batch):
        chunk = data.runs[lo : lo + batch]
        loader.runs(chunk)
        done += len(chunk)
        if done % (batch * 10) == 0 or done == len(data.runs):
            rate = done / (time.perf_counter() - t0 - t_versions)
            progress(f"  {done}/{len(data.runs)} runs ({rate:.0f} runs/s)")
    if engine.dialect.name == "postgresql":
        _vacuum_analyze(engine)
    engine.dispose()
    return {
        "seconds": round(time.perf_counter() - t0, 1),
        "versions_seconds": round(t_versions, 1),
        "metrics_indexed_by": "queue.complete"
        if loader.complete_indexes
        else "indexing.index_finished_run (called by the loader after queue.complete)",
        "runs_per_transaction": batch,
    }


@dataclass
class _Loader:
    """Writes a Dataset through the services; learns on the first run with metrics whether
    ``queue.complete`` indexes them (else it calls ``indexing.index_finished_run`` itself)."""

    factory: Any
    data: Dataset
    mlflow_ids: dict[int, str]
    progress: Callable[[str], None]
    version_ids: list[int] = field(default_factory=list)
    complete_indexes: bool | None = None

    def versions(self) -> None:
        """The bench worker, then every config and version, in one transaction."""
        from registry.db import transaction, utcnow
        from registry.services import configs, workers

        with transaction(self.factory) as s:
            workers.register_worker(s, WORKER, utcnow(), host="bench", queues=["default"])
            created: set[str] = set()
            for spec_ in self.data.versions:
                if spec_.config in created:
                    added = configs.add_version(s, spec_.config, spec_.doc, created_by="bench")
                else:
                    added = configs.create_config(s, spec_.config, spec_.doc, created_by="bench")
                    created.add(spec_.config)
                assert added.created, f"duplicate version in {spec_.config}"
                self.version_ids.append(added.version.id)

    def runs(self, chunk: list[RunSpec]) -> None:
        """Enqueue ``chunk``, then claim and complete each run, in one transaction."""
        import sqlalchemy as sa

        from registry.db import transaction
        from registry.models import ConfigVersion
        from registry.services import queue

        ids = {self.version_ids[r.version] for r in chunk}
        with transaction(self.factory) as s:
            stmt = sa.select(ConfigVersion).where(ConfigVersion.id.in_(ids))
            versions = {v.id: v for v in s.scalars(stmt)}
            for r in chunk:
                version = versions[self.version_ids[r.version]]
                run = queue.enqueue(s, version, "train", seed=r.seed, created_by="bench")
                if run.id != r.run_id:
                    raise RuntimeError(f"expected run id {r.run_id}, got {run.id}: not fresh?")
            for r in chunk:
                self._finish(s, r)
            s.expunge_all()

    def _finish(self, s: Any, r: RunSpec) -> None:
        """Claim the next run (it must be ``r``) and complete it as ``r`` ended."""
        from registry.db import utcnow
        from registry.services import queue
        from registry.services.indexing import index_finished_run

        now = utcnow()
        claimed = queue.claim(s, WORKER, ["default"], now, 86400)
        if claimed is None or claimed.run.id != r.run_id:
            raise RuntimeError(f"claimed {claimed and claimed.run.id}, expected {r.run_id}")
        run = queue.complete(
            s,
            claimed.run.id,
            claimed.lease,
            r.status,
            r.metrics,
            self.mlflow_ids.get(r.run_id),
            provenance(self.data, r),
            error_of(r),
            now,
        )
        if self.complete_indexes is None and r.metrics:
            self.complete_indexes = _has_metric_rows(s, run.id)
            if not self.complete_indexes:
                self.progress(
                    "queue.complete does not index metrics yet: calling "
                    "indexing.index_finished_run after it"
                )
        if self.complete_indexes is False:
            index_finished_run(s, run)


def _has_metric_rows(s: Any, run_id: int) -> bool:
    import sqlalchemy as sa

    from registry.models import RunMetric

    count = sa.select(sa.func.count()).select_from(RunMetric).where(RunMetric.run_id == run_id)
    return bool(s.scalar(count))


def _vacuum_analyze(engine: Any) -> None:
    """What autovacuum does soon anyway; now, so the figures do not depend on its timing.

    SQLite gets no ANALYZE: a deployed database has none (nor has MLflow's store).
    """
    import sqlalchemy as sa

    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
