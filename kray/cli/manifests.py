"""Reading manifests for ``apply``/``create``/``delete -f``: files, directories, stdin.

Every document remembers where it came from (file, document number, first line) so an error
can say exactly which one is wrong. Loading is all-or-nothing: the caller gets every object
or a ``ManifestError`` before anything is sent to the server.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "<stdin>"  # how errors name ``-f -``

try:  # libyaml is several times faster on big manifests; fall back to pure Python.
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


class ManifestError(ValueError):
    """A manifest could not be read or is not a Kubernetes object."""


@dataclass
class Manifest:
    obj: dict[str, Any]
    source: str  # file path, or STDIN
    document: int  # 1-based position in the file
    line: int  # 1-based first line of the document

    @property
    def where(self) -> str:
        return f"{self.source} (document {self.document}, line {self.line})"

    @property
    def name(self) -> str:
        meta = self.obj.get("metadata") or {}
        return str(meta.get("name") or meta.get("generateName") or "")


def expand_paths(paths: list[str], recursive: bool = False) -> list[str]:
    """Files to read: a directory contributes its manifest files in name order."""
    out: list[str] = []
    for p in paths:
        if p == "-":
            out.append(p)
            continue
        path = Path(p)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(f for f in path.glob(pattern) if f.is_file() and f.suffix in MANIFEST_SUFFIXES)
            out.extend(str(f) for f in files)
        elif path.exists():
            out.append(p)
        else:
            raise ManifestError(f'the path "{p}" does not exist')
    return out


def _read(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text()
    except OSError as exc:
        raise ManifestError(f"{source}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{source}: not a text file") from None


def parse_documents(text: str, source: str) -> list[Manifest]:
    """Every object in a YAML stream (or JSON document); ``List`` kinds are flattened."""
    if source.endswith(".json"):
        return _parse_json(text, source)
    docs: list[Manifest] = []
    loader = _Loader(text)
    number = 0
    try:
        while loader.check_node():
            number += 1
            node = loader.get_node()
            if node is None:  # an empty document between two '---'
                continue
            line = node.start_mark.line + 1
            data = loader.construct_document(node)
            docs.extend(_objects(data, source, number, line))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark is not None and context_mark is not mark:
            # The problem is often found lines after its cause (an unclosed '['): name both.
            problem = f"{problem} ({context} at line {context_mark.line + 1})"
        raise ManifestError(f"{source} (document {number or 1}{where}): invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    return docs


def _parse_json(text: str, source: str) -> list[Manifest]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{source} (line {exc.lineno}): invalid JSON: {exc.msg}") from None
    return _objects(data, source, 1, 1)


def _objects(data: Any, source: str, number: int, line: int) -> list[Manifest]:
    if data is None:
        return []
    where = f"{source} (document {number}, line {line})"
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected a Kubernetes object (a mapping), got {type(data).__name__}")
    kind = data.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(data.get("items"), list):
        out = []
        for i, item in enumerate(data["items"]):
            out.extend(_objects(item, f"{source} items[{i}]", number, line))
        return out
    for key in ("apiVersion", "kind"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ManifestError(f"{where}: '{key}' is missing or not a string")
    meta = data.get("metadata")
    if not isinstance(meta, dict) or not (meta.get("name") or meta.get("generateName")):
        raise ManifestError(f"{where}: {data['kind']} has no metadata.name")
    return [Manifest(data, source, number, line)]


def load_manifests(paths: list[str], recursive: bool = False) -> list[Manifest]:
    """Every object from every path, or ManifestError naming the first bad file/document."""
    manifests: list[Manifest] = []
    for source in expand_paths(paths, recursive):
        text = _read(source)
        if source == "-" and text.lstrip().startswith(("{", "[")):
            manifests.extend(_parse_json(text, STDIN))
        else:
            manifests.extend(parse_documents(text, STDIN if source == "-" else source))
    if not manifests:
        raise ManifestError("no objects passed to apply" if paths else "must specify -f")
    return manifests
