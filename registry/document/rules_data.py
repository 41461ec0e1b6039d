"""Rules about ``data.dataset`` against the task (CONTRACT 5.4): a built-in serves given tasks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from registry.document import datasets
from registry.document.issues import Issue, Rule, error, rule


@rule("task", "data.dataset")
def dataset_serves_task(doc: dict[str, Any]) -> Iterator[Issue]:
    """A built-in dataset must serve the document's task; a ``file:`` one is judged on load."""
    task, name = doc["task"], doc["data"]["dataset"]
    found = datasets.builtin(name)
    if found is None or task in found.tasks:
        return
    others = " or ".join(d.name for d in datasets.serving(task))
    yield error(
        "data.dataset",
        f"{name} serves {', '.join(found.tasks)}, not task {task}; use {others} or "
        f"file:<path> ({datasets.FILE_FORMATS[task]}, under the worker's REGISTRY_DATA_ROOT)",
    )


CHECKS: tuple[Rule, ...] = (dataset_serves_task,)
