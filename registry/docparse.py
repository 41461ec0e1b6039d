"""Config document text to data: YAML (safe, YAML 1.2 floats) or JSON, with guards.

Rejects duplicate keys, alias ("billion laughs") bombs and recursive documents with a
:class:`~registry.errors.DocumentParseError` that names the line and column where it can.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from registry.errors import DocumentParseError

__all__ = ["MAX_ALIASES", "MAX_NODES", "parse_document"]

#: A config document is a few dozen nodes; these bounds stop alias ("billion laughs") bombs
#: before anything is constructed.
MAX_ALIASES = 100
MAX_NODES = 100_000

_YamlBase: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_YamlBase):  # type: ignore[misc,valid-type]
    """safe_load's loader, plus YAML 1.2 floats: ``3e-5`` is a number, not the text "3e-5"."""


# A private copy: add_implicit_resolver would otherwise append to SafeLoader's shared lists.
_Loader.yaml_implicit_resolvers = {
    key: list(value) for key, value in _YamlBase.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_document(text: str, fmt: str | None = None) -> Any:
    """YAML or JSON text to data (fmt None: JSON if it starts with ``{``); DocumentParseError."""
    if fmt is None:
        fmt = "json" if text.lstrip().startswith("{") else "yaml"
    if fmt == "json":
        return _parse_json(text)
    if fmt == "yaml":
        return _parse_yaml(text)
    raise ValueError(f"unknown format {fmt!r}; use 'yaml' or 'json'")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DocumentParseError(f"malformed JSON: the key {key!r} appears twice")
        out[key] = value
    return out


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise DocumentParseError(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            line=exc.lineno, column=exc.colno,
        ) from None
    except RecursionError:
        raise DocumentParseError("malformed JSON: nested too deeply") from None


def _parse_yaml(text: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        where = f" at line {line} column {column}" if mark else ""
        raise DocumentParseError(f"malformed YAML: {what}{where}", line=line,
                                 column=column) from None
    except yaml.YAMLError as exc:
        raise DocumentParseError(f"malformed YAML: {exc}") from None
    except RecursionError:
        raise DocumentParseError("malformed YAML: nested too deeply") from None
    finally:
        loader.dispose()


def _yaml_error(message: str, node: yaml.Node) -> DocumentParseError:
    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    return DocumentParseError(f"{message} (line {line} column {column})", line=line,
                              column=column)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                if key_node.value in seen:
                    raise _yaml_error(f"the key {key_node.value!r} appears twice", key_node)
                seen.add(key_node.value)
        return [n for pair in node.value for n in pair]
    return []


def _check_graph(root: yaml.Node) -> None:
    """Count aliases and the expanded size of the composed graph, without expanding it."""
    sizes: dict[int, int] = {}
    ancestors: set[int] = set()
    aliases = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            ancestors.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > MAX_NODES:
                raise _yaml_error(f"the document expands to over {MAX_NODES} values "
                                  "(an alias bomb?)", node)
            continue
        if key in ancestors:
            raise _yaml_error("an alias refers to its own ancestor (a recursive document)", node)
        if key in sizes:
            aliases += 1
            if aliases > MAX_ALIASES:
                raise _yaml_error(f"the document uses over {MAX_ALIASES} aliases", node)
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = 1
            continue
        ancestors.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))
