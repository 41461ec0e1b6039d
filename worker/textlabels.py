"""Labelled text for ``task: classification``: ``builtin:stdlib-docs`` or a JSONL file.

``builtin:stdlib-docs`` needs no network: the docstrings of the standard library's functions,
classes and methods in six areas (the label), read from the modules this Python imports.
Each area keeps its first 120 docstrings in the order of their sha256, so the set is fixed for
a given Python; the train/validation split is drawn by the seed, class by class.

``file:<path>`` under REGISTRY_DATA_ROOT is a JSONL file of ``{"text": str, "label": str |
int}`` objects, one a line; it is read through ``worker.data``'s confinement to the data root.
A file in another format fails with a :class:`DatasetError` whose message starts with
``data.dataset:`` and names the line.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import random
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from registry.settings import DEFAULT_DATA_ROOT
from worker.data import DatasetError, _read_inside

BUILTIN = "builtin:stdlib-docs"

#: The label of each docstring: the area of the standard library its module belongs to.
AREAS: dict[str, tuple[str, ...]] = {
    "asyncio": (
        "asyncio.base_events", "asyncio.events", "asyncio.futures", "asyncio.locks",
        "asyncio.queues", "asyncio.streams", "asyncio.tasks", "asyncio.subprocess",
        "asyncio.transports", "asyncio.protocols", "asyncio.selector_events",
    ),
    "email": (
        "email.message", "email.utils", "email.header", "email.parser", "email.generator",
        "email.policy", "email._header_value_parser", "email.headerregistry",
        "email.charset", "email.feedparser", "email._policybase", "email.contentmanager",
    ),
    "http": (
        "http.client", "http.server", "http.cookiejar", "http.cookies", "urllib.request",
        "urllib.parse", "urllib.response", "urllib.error",
    ),
    "logging": ("logging", "logging.handlers", "logging.config"),
    "unittest": (
        "unittest.case", "unittest.mock", "unittest.loader", "unittest.result",
        "unittest.runner", "unittest.suite", "unittest.main", "unittest.util",
    ),
    "xml": (
        "xml.dom.minidom", "xml.etree.ElementTree", "xml.sax.handler", "xml.sax.saxutils",
        "xml.dom.pulldom", "xml.sax.xmlreader", "xml.dom.expatbuilder",
        "xml.sax.expatreader", "xml.dom.xmlbuilder", "xml.etree.ElementPath",
    ),
}  # fmt: skip
PER_LABEL = 120
MIN_CHARS = 40
MAX_CHARS = 600


class Example(NamedTuple):
    """One labelled text; ``label`` indexes the sorted label names."""

    text: str
    label: int


def load_labelled_text(
    dataset: str,
    seed: int,
    validation_fraction: float = 0.2,
    data_root: str | Path = DEFAULT_DATA_ROOT,
) -> tuple[list[Example], list[Example], list[str]]:
    """(train, validation, label names) of ``dataset``, split by ``seed`` within each label."""
    rows, labels = _rows(dataset, data_root)
    return (*_split(rows, len(labels), seed, validation_fraction), labels)


def dataset_hash(dataset: str, data_root: str | Path = DEFAULT_DATA_ROOT) -> str:
    """sha256 of the dataset for provenance: a file's bytes, or the builtin as JSONL."""
    if dataset == BUILTIN:
        rows, labels = _builtin()
        lines = (json.dumps({"text": t, "label": labels[i]}) + "\n" for t, i in rows)
        return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()
    return hashlib.sha256(_file_bytes(dataset, data_root)).hexdigest()


def majority_baseline(train: list[Example], validation: list[Example]) -> float:
    """Accuracy on ``validation`` of always answering the most frequent label of ``train``."""
    majority = Counter(e.label for e in train).most_common(1)[0][0]
    return sum(e.label == majority for e in validation) / len(validation)


def _rows(dataset: str, data_root: str | Path) -> tuple[list[Example], list[str]]:
    if dataset == BUILTIN:
        return _builtin()
    return parse_jsonl(_file_bytes(dataset, data_root), dataset)


def _file_bytes(dataset: str, data_root: str | Path) -> bytes:
    scheme, _, name = dataset.partition(":")
    if scheme != "file" or not name.strip():
        raise DatasetError(
            f"data.dataset: {dataset!r} holds no labelled text; use {BUILTIN} or "
            'file:<a JSONL file of {"text", "label"} under REGISTRY_DATA_ROOT>'
        )
    return _read_inside(Path(data_root), name)


@cache
def _builtin() -> tuple[list[Example], list[str]]:
    labels = sorted(AREAS)
    seen: set[str] = set()
    rows: list[Example] = []
    for index, area in enumerate(labels):
        texts = [t for m in AREAS[area] for t in _docstrings(m) if t not in seen]
        texts = sorted(dict.fromkeys(texts), key=lambda t: hashlib.sha256(t.encode()).digest())
        seen.update(texts)
        rows += [Example(t, index) for t in texts[:PER_LABEL]]
    return rows, labels


def _docstrings(module_name: str) -> list[str]:
    """The cleaned docstrings of a module and of what it defines: classes, methods, functions."""
    module = importlib.import_module(module_name)
    found: list[Any] = [module.__doc__]
    for _, obj in sorted(vars(module).items()):
        if getattr(obj, "__module__", None) != module_name:
            continue
        if inspect.isclass(obj):
            found.append(obj.__doc__)
            found += [f.__doc__ for _, f in sorted(vars(obj).items()) if inspect.isfunction(f)]
        elif inspect.isfunction(obj):
            found.append(obj.__doc__)
    texts = (inspect.cleandoc(d)[:MAX_CHARS] for d in found if isinstance(d, str))
    return [t for t in texts if len(t) >= MIN_CHARS]


def parse_jsonl(raw: bytes, dataset: str) -> tuple[list[Example], list[str]]:
    """The examples and sorted label names of a JSONL file of ``{"text", "label"}`` objects."""
    where = f"data.dataset: {dataset}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{where} is not UTF-8 (byte {exc.start})") from None
    read = [_pair(line, f"{where} line {n}") for n, line in enumerate(text.splitlines(), 1)]
    pairs = [p for p in read if p is not None]
    names = sorted({label for _, label in pairs})
    if len(names) < 2:
        raise DatasetError(f"{where} has {len(names)} distinct label(s); a classifier needs 2+")
    index = {name: i for i, name in enumerate(names)}
    return [Example(t, index[label]) for t, label in pairs], names


def _pair(line: str, where: str) -> tuple[str, str] | None:
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where} is not JSON ({exc.msg}); expected one object a line") from None
    if not isinstance(row, dict) or set(row) - {"text", "label"}:
        raise DatasetError(f'{where}: expected an object with exactly "text" and "label"')
    text, label = row.get("text"), row.get("label")
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(f'{where}: "text" must be a non-empty string')
    if isinstance(label, bool) or not isinstance(label, str | int) or label == "":
        raise DatasetError(f'{where}: "label" must be a non-empty string or an integer')
    return text, str(label)


def _split(
    rows: list[Example], n_labels: int, seed: int, fraction: float
) -> tuple[list[Example], list[Example]]:
    """Within each label, a seeded shuffle; its first ``fraction`` goes to validation."""
    rng = random.Random(seed)
    train: list[Example] = []
    validation: list[Example] = []
    for label in range(n_labels):
        group = [r for r in rows if r.label == label]
        rng.shuffle(group)
        cut = min(max(round(len(group) * fraction), 1 if fraction > 0 else 0), len(group) - 1)
        validation += group[:cut]
        train += group[cut:]
    if not validation:
        raise DatasetError(
            f"data.dataset: {len(rows)} examples leave the validation split empty at "
            f"data.validation_fraction {fraction}; add examples or raise the fraction"
        )
    return train, validation
