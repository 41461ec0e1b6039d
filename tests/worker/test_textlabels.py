"""The labelled text of ``task: classification``: builtin:stdlib-docs and JSONL files."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from collections import Counter
from pathlib import Path

import pytest

from worker.data import DatasetError
from worker.textlabels import (
    BUILTIN,
    PER_LABEL,
    Example,
    dataset_hash,
    load_labelled_text,
    majority_baseline,
)


def test_builtin_is_deterministic_split_by_seed_and_disjoint() -> None:
    train, val, labels = load_labelled_text(BUILTIN, seed=42)
    again = load_labelled_text(BUILTIN, seed=42)
    assert (train, val, labels) == again
    other_train, other_val, _ = load_labelled_text(BUILTIN, seed=7)
    assert set(other_val) != set(val) and set(other_train) | set(other_val) == set(train) | set(val)
    assert not {e.text for e in train} & {e.text for e in val}
    assert labels == sorted(labels) and len(labels) == 6
    assert len(train) + len(val) == 6 * PER_LABEL > 100


def test_builtin_classes_are_balanced_and_not_told_apart_by_length() -> None:
    train, val, labels = load_labelled_text(BUILTIN, seed=0, validation_fraction=0.2)
    assert Counter(e.label for e in val) == {i: PER_LABEL // 5 for i in range(len(labels))}
    assert Counter(e.label for e in train) == {i: PER_LABEL * 4 // 5 for i in range(6)}
    assert majority_baseline(train, val) == pytest.approx(1 / 6)
    # the best a length-only rule does: each text to the label of the nearest median length
    median = {k: statistics.median(len(e.text) for e in train if e.label == k) for k in range(6)}
    guess = [min(median, key=lambda k: abs(median[k] - len(e.text))) for e in val]
    assert sum(g == e.label for g, e in zip(guess, val, strict=True)) / len(val) < 0.4


def test_builtin_hash_is_stable_and_is_the_sha256_of_its_jsonl() -> None:
    train, val, _ = load_labelled_text(BUILTIN, seed=1)
    assert dataset_hash(BUILTIN) == dataset_hash(BUILTIN)
    assert len(dataset_hash(BUILTIN)) == 64 and {e.label for e in train + val} == set(range(6))


def _write(root: Path, name: str, lines: list[str]) -> str:
    (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f"file:{name}"


def test_jsonl_file_under_the_data_root(tmp_path: Path) -> None:
    rows = [{"text": f"spam number {i}", "label": "spam"} for i in range(9)]
    rows += [{"text": f"ham {i} here", "label": "ham"} for i in range(3)]
    dataset = _write(tmp_path, "mail.jsonl", [json.dumps(r) for r in rows] + [""])
    train, val, labels = load_labelled_text(dataset, seed=3, data_root=tmp_path)
    assert labels == ["ham", "spam"]
    assert Counter(e.label for e in val) == {1: 2, 0: 1}
    assert sorted(train + val) == sorted(Example(r["text"], labels.index(r["label"])) for r in rows)
    assert majority_baseline(train, val) == pytest.approx(2 / 3)
    raw = (tmp_path / "mail.jsonl").read_bytes()
    assert dataset_hash(dataset, tmp_path) == hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        (['{"text": "a", "label": "x"}', "not json"], "line 2 is not JSON"),
        (['{"text": "a", "label": "x"}', '["a", "x"]'], 'exactly "text" and "label"'),
        (['{"text": "a", "label": "x", "extra": 1}'], 'exactly "text" and "label"'),
        (['{"text": "", "label": "x"}'], '"text" must be a non-empty string'),
        (['{"text": "a", "label": true}'], '"label" must be'),
        (['{"text": "a", "label": [1]}'], '"label" must be'),
        (['{"text": "a", "label": "x"}', '{"text": "b", "label": "x"}'], "1 distinct label"),
    ],
)
def test_a_wrong_format_names_data_dataset(tmp_path: Path, lines: list[str], says: str) -> None:
    dataset = _write(tmp_path, "bad.jsonl", lines)
    with pytest.raises(DatasetError, match=r"^data.dataset: ") as caught:
        load_labelled_text(dataset, seed=0, data_root=tmp_path)
    assert says in str(caught.value) and isinstance(caught.value, ValueError)


def test_not_utf8_too_few_rows_and_other_schemes(tmp_path: Path) -> None:
    (tmp_path / "latin.jsonl").write_bytes(b'{"text": "caf\xe9", "label": "x"}\n')
    with pytest.raises(DatasetError, match=r"^data.dataset: .* is not UTF-8"):
        load_labelled_text("file:latin.jsonl", seed=0, data_root=tmp_path)
    two = _write(tmp_path, "two.jsonl", ['{"text": "a", "label": 1}', '{"text": "b", "label": 2}'])
    with pytest.raises(DatasetError, match=r"^data.dataset: .*validation split empty"):
        load_labelled_text(two, seed=0, data_root=tmp_path)
    with pytest.raises(DatasetError, match=r"^data.dataset: 'builtin:pydoc' holds no labelled"):
        load_labelled_text("builtin:pydoc", seed=0, data_root=tmp_path)


def test_the_data_root_confines_the_file(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "secret.jsonl"
    root.mkdir()
    outside.write_text('{"text": "TOP-SECRET-CONTENT", "label": "x"}\n')
    os.symlink(outside, root / "link.jsonl")
    for name in ("link.jsonl", "../secret.jsonl", str(outside), "missing.jsonl"):
        with pytest.raises(DatasetError, match=r"^data.dataset: .*not a readable file") as caught:
            load_labelled_text(f"file:{name}", seed=0, data_root=root)
        assert "TOP-SECRET" not in str(caught.value)
