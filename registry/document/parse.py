"""Config document and request body text to data: YAML (safe, YAML 1.2 floats) or JSON.

Both give JSON's types and nothing else (objects with string keys, arrays, strings, finite
numbers, true/false, null), nested at most :data:`MAX_DEPTH` deep. Rejects duplicate keys,
alias ("billion laughs") bombs, recursive documents and YAML's other types (``!!binary``,
``!!set``, ``!!timestamp``, ``!!omap``, ``!!pairs``, any local tag) with a
:class:`~registry.errors.DocumentParseError` that names the line and column where it can.
An unquoted date such as ``2024-01-01`` is text, as in YAML 1.2.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import yaml

from registry.errors import BadRequest, DocumentParseError

__all__ = ["MAX_ALIASES", "MAX_DEPTH", "MAX_NODES", "parse_document", "parse_json"]

#: A config document is a few dozen nodes; these bounds stop alias ("billion laughs") bombs
#: before anything is constructed.
MAX_ALIASES = 100
MAX_NODES = 100_000
#: Deeper than any real document or worker report; Python code that walks the data
#: recursively (json.dumps, pydantic, the database drivers) meets its limit near 1,000.
MAX_DEPTH = 64

_YamlBase: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_YamlBase):  # type: ignore[misc,valid-type]
    """safe_load's loader, plus YAML 1.2 floats: ``3e-5`` is a number, not the text "3e-5"."""


# A private copy: add_implicit_resolver would otherwise append to SafeLoader's shared lists.
# YAML 1.1's implicit timestamps are left out: an unquoted date is a string, as in YAML 1.2.
_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in value if tag != "tag:yaml.org,2002:timestamp"]
    for key, value in _YamlBase.yaml_implicit_resolvers.items()
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
        return parse_json(text)
    if fmt == "yaml":
        return _parse_yaml(text)
    raise ValueError(f"unknown format {fmt!r}; use 'yaml' or 'json'")


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; PostgreSQL's JSONB would refuse them later anyway.
    raise ValueError(f"{name} is not allowed in JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"the number {literal[:40]} is too large")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice")
        out[key] = value
    return out


def parse_json(text: str) -> Any:
    """Strict JSON: no NaN/Infinity, no overflowing numbers, no duplicate keys; errors carry
    the line and column when the parser knows them."""
    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        raise DocumentParseError(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            line=exc.lineno,
            column=exc.colno,
        ) from None
    except RecursionError:
        raise DocumentParseError("malformed JSON: nested too deeply") from None
    except ValueError as exc:  # NaN/Infinity, huge integers, duplicate keys
        raise DocumentParseError(f"malformed JSON: {exc}") from None
    _check_depth(value)
    return value


def _check_depth(value: Any) -> None:
    """DocumentParseError when arrays and objects nest over MAX_DEPTH levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise DocumentParseError(f"malformed JSON: nested over {MAX_DEPTH} levels deep")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


#: NUL and lone surrogates: valid in JSON escapes, refused by PostgreSQL and UTF-8.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check_text(obj: Any) -> None:
    """BadRequest if any key or string in ``obj`` holds a character no database can store."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and _UNSTORABLE.search(item):
            raise BadRequest("strings may not contain NUL (\\u0000) or lone surrogates")


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
        raise DocumentParseError(
            f"malformed YAML: {what}{where}", line=line, column=column
        ) from None
    except yaml.YAMLError as exc:
        raise DocumentParseError(f"malformed YAML: {exc}") from None
    except RecursionError:
        raise DocumentParseError("malformed YAML: nested too deeply") from None
    finally:
        loader.dispose()


def _yaml_error(message: str, node: yaml.Node) -> DocumentParseError:
    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    return DocumentParseError(f"{message} (line {line} column {column})", line=line, column=column)


_TAG = "tag:yaml.org,2002:"
#: The YAML tags whose values JSON can hold; ``<<`` (merge) keys are spelled in YAML only.
_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null"))
_NODE_TAGS = {
    yaml.ScalarNode: _SCALAR_TAGS,
    yaml.SequenceNode: frozenset({_TAG + "seq"}),
    yaml.MappingNode: frozenset({_TAG + "map"}),
}
_JSON_TYPES = "strings, numbers, true/false, null, lists and mappings"


def _check_tag(node: yaml.Node) -> None:
    if node.tag not in _NODE_TAGS[type(node)]:
        tag = node.tag.replace(_TAG, "!!")
        raise _yaml_error(f"{tag} is not a JSON type; use {_JSON_TYPES}", node)


def _check_key(key_node: yaml.Node) -> None:
    if isinstance(key_node, yaml.ScalarNode) and key_node.tag in (_TAG + "str", _TAG + "merge"):
        return
    if not isinstance(key_node, yaml.ScalarNode):
        kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
        raise _yaml_error(f"a mapping key must be a string, not a {kind}", key_node)
    raise _yaml_error(f"a mapping key must be a string; quote {key_node.value!r}", key_node)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, _ in node.value:
            _check_key(key_node)
            if key_node.value != "<<":
                if key_node.value in seen:
                    raise _yaml_error(f"the key {key_node.value!r} appears twice", key_node)
                seen.add(key_node.value)
        return [n for pair in node.value for n in pair]
    return []


def _check_graph(root: yaml.Node) -> None:
    """Check tags, keys, aliases, the expanded size and depth, without expanding anything."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded values, container levels)
    ancestors: set[int] = set()
    aliases = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            ancestors.discard(key)
            sizes[key] = _measure(node, [sizes[id(c)] for c in _children(node)])
            continue
        if key in ancestors:
            raise _yaml_error("an alias refers to its own ancestor (a recursive document)", node)
        if key in sizes:
            aliases += 1
            if aliases > MAX_ALIASES:
                raise _yaml_error(f"the document uses over {MAX_ALIASES} aliases", node)
            continue
        if node.tag != _TAG + "merge":  # a merge key's node is checked as its mapping's key
            _check_tag(node)
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = (1, 0)
            continue
        ancestors.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))


def _measure(node: yaml.Node, children: list[tuple[int, int]]) -> tuple[int, int]:
    size = 1 + sum(s for s, _ in children)
    depth = 1 + max((d for _, d in children), default=0)
    if size > MAX_NODES:
        raise _yaml_error(f"the document expands to over {MAX_NODES} values (an alias bomb?)", node)
    if depth > MAX_DEPTH:
        raise _yaml_error(f"the document is nested over {MAX_DEPTH} levels deep", node)
    return size, depth


def _construct_int(loader: Any, node: yaml.ScalarNode) -> int:
    try:
        return int(loader.construct_yaml_int(node))
    except ValueError:  # over Python's 4,300-digit limit for reading an int
        raise yaml.constructor.ConstructorError(
            None, None, f"the number {node.value[:40]}... is too long", node.start_mark
        ) from None


def _construct_float(loader: Any, node: yaml.ScalarNode) -> float:
    value = float(loader.construct_yaml_float(node))
    if not math.isfinite(value):
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value[:40]} is not a finite number (JSON has none)", node.start_mark
        )
    return value


_Loader.add_constructor(_TAG + "int", _construct_int)
_Loader.add_constructor(_TAG + "float", _construct_float)
