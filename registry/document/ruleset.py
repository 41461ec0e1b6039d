"""Every rule, in order (the checks, then the guide's advice), and the loop that runs them."""

from __future__ import annotations

from typing import Any

from registry.document import advice, rules, rules_architecture, rules_data, rules_visual
from registry.document.issues import Issue, Rule

#: The explicit list of rules: nothing registers itself by being imported.
RULES: tuple[Rule, ...] = (
    *rules.CHECKS,
    *rules_architecture.CHECKS,
    *rules_data.CHECKS,
    *rules_visual.CHECKS,
    *advice.ADVICE,
    *rules_architecture.ADVICE,
)


def run_rules(doc: dict[str, Any], bad: set[str]) -> tuple[list[Issue], list[Issue]]:
    """(errors, warnings) of every applicable rule; ``bad`` holds paths already in error.

    A rule runs only when none of the fields it reads is already in error; a rule that reads
    ``*`` runs only on an otherwise valid document.
    """
    bad = set(bad)
    errors: list[Issue] = []
    warnings: list[Issue] = []
    for r in RULES:
        if "*" in r.reads and (bad or errors):
            continue
        if any(_covers(b, path) for b in bad for path in r.reads):
            continue
        for issue in r(doc):
            (errors if issue.severity == "error" else warnings).append(issue)
            if issue.severity == "error":
                bad.add(issue.field)
    return errors, warnings


def _covers(bad: str, path: str) -> bool:
    return bad in ("document", path) or path.startswith(bad + ".")
