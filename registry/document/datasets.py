"""The built-in datasets: what each is, and which tasks it serves (CONTRACT 5.4).

Pure data: the worker loads them (``worker/data.py`` for the text corpora,
``worker/textlabels.py`` for the labelled text, ``worker/imagecaptions.py`` for the
image-caption pairs); the service lists them (``GET /api/v1/datasets``, the config form's
picker) and checks that a document's ``data.dataset`` serves its ``task``.
"""

from __future__ import annotations

from dataclasses import dataclass

TASKS = ("causal_lm", "classification", "multimodal_matching")


@dataclass(frozen=True)
class Dataset:
    """One built-in dataset: ``builtin:<name>``, the tasks it serves and what it holds."""

    name: str
    tasks: tuple[str, ...]
    description: str
    #: Label count of a classification set (the estimate sizes the score head with it).
    labels: int | None = None

    def to_dict(self) -> dict[str, object]:
        """``{"name", "tasks", "description"}`` as ``GET /datasets`` answers it."""
        return {"name": self.name, "tasks": list(self.tasks), "description": self.description}


BUILTINS: tuple[Dataset, ...] = (
    Dataset(
        "builtin:pydoc",
        ("causal_lm",),
        "CPython's pydoc_data.topics (the help() texts of the language reference), about "
        "1 MB of English prose and code; ships with every Python.",
    ),
    Dataset(
        "builtin:licenses",
        ("causal_lm",),
        "The license texts in /usr/share/common-licenses (Debian and Ubuntu machines only).",
    ),
    Dataset(
        "builtin:stdlib-docs",
        ("classification",),
        "Docstrings of the Python standard library's functions, classes and methods, each "
        "labelled by the area it comes from (asyncio, email, http, logging, unittest, xml); "
        "about 120 per label, split by training.seed.",
        labels=6,
    ),
    Dataset(
        "builtin:shapes",
        ("multimodal_matching",),
        "Images the worker renders itself: a circle, square or triangle in red, green or "
        "blue, small or big, in one of four corners, on a noisy background, 5 of each of the "
        "72 kinds (360 pairs); the caption names colour, size, shape and corner.",
    ),
)

#: What a ``file:<path>`` dataset must hold, by task (docs/config-document.md).
FILE_FORMATS = {
    "causal_lm": "a UTF-8 text file",
    "classification": 'a JSONL file, one {"text": ..., "label": ...} object a line',
    "multimodal_matching": (
        'a folder holding captions.jsonl, one {"image": <path in the folder>, '
        '"caption": ...} object a line; images as 8-bit PNG, binary PPM (P6) or .npy'
    ),
}

NAMES = tuple(d.name for d in BUILTINS)


def builtin(name: str) -> Dataset | None:
    """The built-in dataset called ``name`` (``builtin:...``), or None."""
    return next((d for d in BUILTINS if d.name == name), None)


def serving(task: str) -> tuple[Dataset, ...]:
    """The built-in datasets that serve ``task``."""
    return tuple(d for d in BUILTINS if task in d.tasks)
