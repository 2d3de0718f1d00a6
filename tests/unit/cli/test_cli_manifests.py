"""Manifest loading: multi-document YAML, List kinds, JSON, directories, and error locations."""

from __future__ import annotations

from pathlib import Path

import pytest

from kray.cli.manifests import ManifestError, load_manifests, parse_documents

POD = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers: [{{name: c, image: busybox}}]\n"


def test_multi_document_yaml_with_empty_documents_and_lines() -> None:
    text = POD.format(name="a") + "---\n---\n" + POD.format(name="b")
    docs = parse_documents(text, "x.yaml")
    assert [d.name for d in docs] == ["a", "b"]
    assert (docs[0].document, docs[0].line) == (1, 1)
    assert docs[1].line == 9 and docs[1].where == "x.yaml (document 3, line 9)"


def test_list_kind_is_flattened() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: a}}\n"
    assert [d.name for d in parse_documents(text, "l.yaml")] == ["a"]


def test_yaml_error_names_document_and_line() -> None:
    text = POD.format(name="a") + "---\napiVersion: v1\nkind: Pod\nmetadata:\n  labels: [x\n"
    with pytest.raises(ManifestError) as err:
        parse_documents(text, "bad.yaml")
    assert str(err.value).startswith("bad.yaml (document 2, line 12): invalid YAML")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "expected a Kubernetes object"),
        ("kind: Pod\nmetadata: {name: a}\n", "'apiVersion' is missing"),
        ("apiVersion: v1\nkind: Pod\n", "Pod has no metadata.name"),
    ],
)
def test_not_an_object(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_documents(text, "f.yaml")


def test_json_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "1.yaml").write_text(POD.format(name="a"))
    (tmp_path / "2.json").write_text('{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b"}}')
    (tmp_path / "notes.txt").write_text("ignored")
    assert [m.name for m in load_manifests([str(tmp_path)])] == ["a", "b"]
    (tmp_path / "3.json").write_text('{"apiVersion": "v1",\n "kind": }')
    with pytest.raises(ManifestError, match=r"3.json \(line 2\): invalid JSON"):
        load_manifests([str(tmp_path)])
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifests([str(tmp_path / "missing.yaml")])
