"""`-o jsonpath=` templates and `-o custom-columns=`, as kubectl renders them."""

from __future__ import annotations

from typing import Any

import pytest

from kray.cli import templates

POD_LIST: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "List",
    "items": [
        {
            "metadata": {"name": "a", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1"},
            "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
        },
        {"metadata": {"name": "b"}, "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}},
    ],
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{.items[*].metadata.name}", "a b"),
        ("{.items[0].status.podIP}", "10.0.0.1"),
        ('{range .items[*]}{.metadata.name}{"\\t"}{.spec.nodeName}{"\\n"}{end}', "a\tn1\nb\t\n"),
        ("names: {.items[*].metadata.name}!", "names: a b!"),
        ('{.items[?(@.metadata.name=="a")].metadata.labels}', '{"app":"web"}'),
        ('{range .items[*]}[{.status.conditions[?(@.type=="Ready")].status}]{end}', "[True][False]"),
        ("{.kind}", "List"),
        ("{.items[5].metadata.name}", ""),
        ("{range .items[*]}{range .status.conditions[*]}{.type}={.status};{end}{end}", "Ready=True;Ready=False;"),
    ],
)
def test_jsonpath_templates(template: str, expected: str) -> None:
    assert templates.render(template, POD_LIST) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{range .items[*]}{.metadata.name}", "{range} without {end}"),
        ("{.metadata.name}{end}", "{end} without {range}"),
        ("{.metadata..name}", "unsupported jsonPath"),
        ("{.metadata.name", "unclosed action"),
        ('{"\\q"}', "bad string"),
    ],
)
def test_bad_templates_name_the_problem(template: str, message: str) -> None:
    with pytest.raises(templates.TemplateError, match=message.replace("{", r"\{").replace("}", r"\}")):
        templates.parse(template)


def test_custom_columns() -> None:
    columns = templates.parse_columns("NAME:.metadata.name,IP:.status.podIP,READY:.status.conditions[*].status")
    assert [h for h, _ in columns] == ["NAME", "IP", "READY"]
    rows = [templates.column_cells(columns, pod) for pod in POD_LIST["items"]]
    assert rows == [["a", "10.0.0.1", "True"], ["b", "<none>", "False"]]
    with pytest.raises(templates.TemplateError, match="expected HEADER:JSONPATH"):
        templates.parse_columns("NAME")
