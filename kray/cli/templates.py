"""kubectl's ``-o jsonpath=TEMPLATE`` and ``-o custom-columns=SPEC`` output, over kray's JSONPath.

A template is literal text and ``{...}`` actions: ``{.spec.clusterIP}``, ``{.items[*].metadata.name}``,
``{"\\n"}`` (a quoted string, escapes as in Go), and ``{range EXPR}...{end}`` which repeats its
body for every value EXPR selects, with paths inside relative to that value (as in kubectl).
The paths are the subset ``kray.crds.jsonpath`` reads. Several values print space-separated,
maps and lists as JSON, as kubectl prints them. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from kray.crds.jsonpath import JsonPathError, evaluate

_ACTION = re.compile(r"\{((?:\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^{}])*)\}")


class TemplateError(ValueError):
    pass


@dataclass
class _Node:
    text: str | None = None  # literal text
    path: str | None = None  # a JSONPath to print
    range_path: str | None = None  # {range path}...{end}
    body: list[_Node] = field(default_factory=list)


def _literal(action: str) -> str | None:
    """The text of a quoted-string action (``{"\\n"}``, ``{'x'}``), else None."""
    if len(action) >= 2 and action[0] == action[-1] == '"':
        try:
            return str(json.loads(action))
        except json.JSONDecodeError as exc:
            raise TemplateError(f"bad string {action} in template: {exc.msg}") from None
    if len(action) >= 2 and action[0] == action[-1] == "'":
        return action[1:-1]
    return None


def parse(template: str) -> list[_Node]:
    """The template as a tree; the error names what could not be read."""
    root: list[_Node] = []
    stack: list[list[_Node]] = [root]
    pos = 0
    for match in _ACTION.finditer(template):
        if match.start() > pos:
            stack[-1].append(_Node(text=template[pos : match.start()]))
        pos = match.end()
        action = match.group(1).strip()
        literal = _literal(action)
        if literal is not None:
            stack[-1].append(_Node(text=literal))
        elif action == "end":
            if len(stack) == 1:
                raise TemplateError(f"{{end}} without {{range}} in template {template!r}")
            stack.pop()
        elif action.startswith("range "):
            node = _Node(range_path=_checked(action.removeprefix("range ").strip(), template))
            stack[-1].append(node)
            stack.append(node.body)
        else:
            stack[-1].append(_Node(path=_checked(action, template)))
    rest = template[pos:]
    if "{" in rest or "}" in rest:
        raise TemplateError(f"unclosed action in template {template!r} at {rest!r}")
    if rest:
        stack[-1].append(_Node(text=rest))
    if len(stack) > 1:
        raise TemplateError(f"{{range}} without {{end}} in template {template!r}")
    return root


def _checked(path: str, template: str) -> str:
    if path in ("", "@", "$"):
        return "$"
    try:
        evaluate(path, {})  # compiles it: a path kray cannot read fails here, before any output
    except JsonPathError as exc:
        raise TemplateError(f"{exc} in template {template!r}") from None
    return path


def _select(path: str, obj: Any) -> list[Any]:
    return [obj] if path == "$" else evaluate(path, obj)


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _render(nodes: list[_Node], obj: Any, out: list[str]) -> None:
    for node in nodes:
        if node.text is not None:
            out.append(node.text)
        elif node.path is not None:
            out.append(" ".join(_show(v) for v in _select(node.path, obj)))
        elif node.range_path is not None:
            for value in _select(node.range_path, obj):
                _render(node.body, value, out)


def render(template: str, obj: Any) -> str:
    out: list[str] = []
    _render(parse(template), obj, out)
    return "".join(out)


def parse_columns(spec: str) -> list[tuple[str, str]]:
    """``NAME:.metadata.name,IP:.spec.clusterIP`` as (header, path) pairs."""
    columns: list[tuple[str, str]] = []
    for part in spec.split(","):
        header, sep, path = part.partition(":")
        if not sep or not header.strip() or not path.strip():
            raise TemplateError(f"custom-columns: expected HEADER:JSONPATH, got {part!r}")
        columns.append((header.strip(), _checked(path.strip(), spec)))
    return columns


def column_cells(columns: list[tuple[str, str]], obj: Any) -> list[str]:
    """One row: each column's values comma-joined, ``<none>`` where nothing matches (kubectl's)."""
    cells = []
    for _, path in columns:
        values = _select(path, obj)
        cells.append(",".join(_show(v) for v in values) if values else "<none>")
    return cells
