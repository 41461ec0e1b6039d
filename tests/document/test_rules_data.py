"""``dataset_serves_task``: a built-in dataset must serve the document's task (CONTRACT 5.4)."""

from __future__ import annotations

import re

import pytest

from registry.document import datasets, fields, spec


@pytest.mark.parametrize("task", datasets.TASKS)
def test_a_file_dataset_is_judged_by_the_worker_not_here(task: str) -> None:
    result = spec.validate({"task": task, "data": {"dataset": "file:mine/set.jsonl"}})
    assert not [e for e in result.errors if e.field == "data.dataset"]


def test_the_error_names_the_builtins_and_the_file_format_of_the_task() -> None:
    result = spec.validate({"task": "multimodal_matching", "data": {"dataset": "builtin:pydoc"}})
    (issue,) = [e for e in result.errors if e.field == "data.dataset"]
    assert "builtin:pydoc serves causal_lm, not task multimodal_matching" in issue.message
    assert "use builtin:shapes or file:<path> (a folder holding captions.jsonl" in issue.message


def test_every_task_has_a_builtin_and_a_file_format() -> None:
    for task in datasets.TASKS:
        assert datasets.serving(task) and task in datasets.FILE_FORMATS
    assert all(set(d.tasks) <= set(datasets.TASKS) for d in datasets.BUILTINS)
    assert datasets.builtin("builtin:nope") is None
    unknown = spec.validate({"data": {"dataset": "builtin:nope"}}).errors
    assert [e.field for e in unknown] == ["data.dataset"]
    assert all(name in unknown[0].message for name in datasets.NAMES)


def test_the_json_schema_pattern_admits_every_builtin_and_no_other() -> None:
    prop = fields.json_schema()["$defs"]["DataSection"]["properties"]["dataset"]
    assert all(re.fullmatch(prop["pattern"], name) for name in datasets.NAMES)
    assert not re.fullmatch(prop["pattern"], "builtin:nope")
