"""The patch algorithms on plain documents (RFC 7386, RFC 6902, strategic merge)."""

from __future__ import annotations

import pytest

from kray.actors.apiserver.patch import PatchError, json_patch, merge_patch, strategic_merge_patch


def test_merge_patch_rfc7386_examples() -> None:
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": ["b"]}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


def test_merge_patch_does_not_modify_inputs() -> None:
    doc = {"a": {"b": 1}}
    merge_patch(doc, {"a": {"b": 2}})
    assert doc == {"a": {"b": 1}}


def test_json_patch_operations() -> None:
    doc = {"a": [1, 2], "b": {"c": 1}, "x~y": 0, "s/t": 1}
    out = json_patch(
        doc,
        [
            {"op": "add", "path": "/a/-", "value": 3},
            {"op": "add", "path": "/a/0", "value": 0},
            {"op": "remove", "path": "/b/c"},
            {"op": "replace", "path": "/x~0y", "value": 9},
            {"op": "copy", "from": "/a", "path": "/copy"},
            {"op": "move", "from": "/s~1t", "path": "/moved"},
            {"op": "test", "path": "/moved", "value": 1},
        ],
    )
    assert out == {"a": [0, 1, 2, 3], "b": {}, "x~y": 9, "copy": [0, 1, 2, 3], "moved": 1}
    assert doc["a"] == [1, 2]


@pytest.mark.parametrize(
    ("ops", "malformed"),
    [
        ({"op": "add"}, True),
        ([{"op": "frobnicate", "path": "/a"}], True),
        ([{"op": "remove", "path": "/missing"}], False),
        ([{"op": "replace", "path": "/a/9", "value": 1}], False),
        ([{"op": "test", "path": "/a/0", "value": 2}], False),
        ([{"op": "add", "path": "a"}], True),
    ],
)
def test_json_patch_errors(ops: object, malformed: bool) -> None:
    with pytest.raises(PatchError) as exc:
        json_patch({"a": [1]}, ops)
    assert exc.value.malformed is malformed


def test_strategic_merge_merges_named_lists() -> None:
    doc = {"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "E", "value": "1"}]}, {"name": "b"}]}}
    patch = {
        "spec": {
            "containers": [
                {"name": "a", "image": "y", "env": [{"name": "F", "value": "2"}]},
                {"name": "b", "$patch": "delete"},
                {"name": "c", "image": "z"},
            ]
        }
    }
    out = strategic_merge_patch(doc, patch)
    assert out["spec"]["containers"] == [
        {"name": "a", "image": "y", "env": [{"name": "E", "value": "1"}, {"name": "F", "value": "2"}]},
        {"name": "c", "image": "z"},
    ]


def test_strategic_merge_directives() -> None:
    doc = {"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1"}}, "spec": {"args": ["1", "2"]}}
    out = strategic_merge_patch(
        doc,
        {
            "metadata": {
                "finalizers": ["c"],
                "$deleteFromPrimitiveList/finalizers": ["a"],
                "labels": {"$patch": "replace", "y": "2"},
            },
            "spec": {"args": ["3"], "$setElementOrder/args": ["3"]},
        },
    )
    assert out == {"metadata": {"finalizers": ["b", "c"], "labels": {"y": "2"}}, "spec": {"args": ["3"]}}
    assert strategic_merge_patch({"a": {"b": 1}}, {"a": {"$patch": "delete"}}) == {}
