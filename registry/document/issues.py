"""What a rule yields and how rules are declared: Issue, Rule, ``@rule(paths...)``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass
class Issue:
    """One error or warning about one field."""

    field: str
    message: str
    severity: Severity = "error"

    def to_dict(self) -> dict[str, str]:
        """``{"field", "message"}``, plus ``"severity"`` for warnings."""
        out = {"field": self.field, "message": self.message}
        if self.severity == "warning":
            out["severity"] = "warning"
        return out


RuleFunc = Callable[[dict[str, Any]], Iterable[Issue]]


@dataclass(frozen=True)
class Rule:
    """A rule and the dotted paths it reads (``*``: runs only on an otherwise valid document)."""

    func: RuleFunc
    reads: tuple[str, ...]

    @property
    def name(self) -> str:
        """The rule's function name (how tests and logs refer to it)."""
        return self.func.__name__

    def __call__(self, doc: dict[str, Any]) -> Iterable[Issue]:
        return self.func(doc)


def rule(*reads: str) -> Callable[[RuleFunc], Rule]:
    """Declare a rule that reads ``reads``; the lists in rules.py and advice.py say the order."""

    def declare(func: RuleFunc) -> Rule:
        return Rule(func, reads)

    return declare


def get(doc: dict[str, Any], path: str) -> Any:
    """The value at a dotted path."""
    section, _, name = path.partition(".")
    return doc[section][name] if name else doc[section]


def error(path: str, message: str) -> Issue:
    """An error about ``path``."""
    return Issue(path, message, "error")


def warning(path: str, message: str) -> Issue:
    """A warning about ``path``."""
    return Issue(path, message, "warning")
