"""The JSONPath subset Kubernetes uses for a CRD's ``additionalPrinterColumns``.

``.a.b``, ``[N]``, ``[*]`` and ``[?(@.x.y=="v")]`` (and ``!=``), optionally wrapped in ``{}``
and led by ``$``: enough for ``.status.conditions[?(@.type=="Ready")].status``. Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any


class JsonPathError(ValueError):
    pass


# One step of a printer column's path: .field, [N], [*] or [?(@.a.b=="value")].
_STEP = re.compile(
    r"""
    \.(?P<field>[A-Za-z0-9_\-/]+)                 # .field
    | \[(?P<index>-?\d+|\*)\]                     # [N] or [*]
    | \[\?\(@(?P<fpath>(?:\.[A-Za-z0-9_\-]+)+)     # [?(@.a.b
      \s*(?P<op>==|!=)\s*                          #   == or !=
      (?P<quote>["'])(?P<value>.*?)(?P=quote)\)\]   #   "value")]
    """,
    re.VERBOSE,
)


def compile_path(path: str) -> list[re.Match[str]]:
    """Parse a printer column's jsonPath; the error names what could not be read."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    text = text.removeprefix("$")
    steps, pos = [], 0
    while pos < len(text):
        match = _STEP.match(text, pos)
        if match is None:
            raise JsonPathError(f"unsupported jsonPath {path!r} at {text[pos:]!r}")
        steps.append(match)
        pos = match.end()
    return steps


def _walk(value: Any, dotted: str) -> Any:
    for part in dotted.strip(".").split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def evaluate(path: str, obj: Any) -> list[Any]:
    """Every value ``path`` selects in ``obj`` (an empty list when nothing matches)."""
    current = [obj]
    for step in compile_path(path):
        nxt: list[Any] = []
        for value in current:
            if step["field"] is not None:
                if isinstance(value, dict) and step["field"] in value:
                    nxt.append(value[step["field"]])
            elif step["index"] is not None:
                if isinstance(value, list):
                    if step["index"] == "*":
                        nxt.extend(value)
                    elif -len(value) <= int(step["index"]) < len(value):
                        nxt.append(value[int(step["index"])])
            else:
                if isinstance(value, list):
                    want, negate = step["value"], step["op"] == "!="
                    nxt.extend(v for v in value if (str(_walk(v, step["fpath"])) == want) != negate)
        current = nxt
    return [v for v in current if v is not None]
