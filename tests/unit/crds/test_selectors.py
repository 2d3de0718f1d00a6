"""Label selectors (model and kubectl syntax) and field selectors."""

from __future__ import annotations

import pytest

from kray.crds import (
    LabelSelector,
    Pod,
    ValidationFailed,
    parse_field_selector,
    parse_label_selector,
    selector_from_set,
    validate_object,
)

LABELS = {"a": "b", "c": "x", "e": "y", "g": "1", "version": "3"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("a=b", True),
        ("a==b", True),
        ("a=c", False),
        ("a!=c", True),
        ("a!=b", False),
        ("missing!=b", True),  # != matches objects without the label
        ("e in (x,y)", True),
        ("e in (x, z)", False),
        ("e notin (x,z)", True),
        ("missing notin (z)", True),
        ("g", True),
        ("missing", False),
        ("!missing", True),
        ("!g", False),
        ("a=b,c!=d,e in (x,y),f notin (z),g,!h", True),
        ("a=b,c=d", False),
        ("  a = b ,  g  ", True),
        ("version>2", True),
        ("version<3", False),
        ("a=", False),
        ("app.kubernetes.io/name in (web)", False),
    ],
)
def test_label_selector_syntax(text: str, matches: bool) -> None:
    sel = parse_label_selector(text)
    assert sel.matches(LABELS) is matches
    assert parse_label_selector(str(sel)) == sel  # the printed form parses back


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("a=b=c", "a=b=c"),
        ("a in x", "a in x"),
        ("a in ()", "a in ()"),
        ("a,,b", "empty requirement"),
        ("Bad Key=x", "Bad Key=x"),
        ("a=b c", "a=b c"),
        ("a=bad value!", "bad value!"),
        ("!a=b", "!a=b"),
        ("a>x", "a>x"),
        ("a foo (b)", "unknown operator"),
    ],
)
def test_bad_label_selectors_name_the_term(text: str, names: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_label_selector(text)
    assert names in str(exc.value)


def test_label_selector_model() -> None:
    sel = LabelSelector.model_validate(
        {
            "matchLabels": {"a": "b"},
            "matchExpressions": [
                {"key": "e", "operator": "In", "values": ["x", "y"]},
                {"key": "h", "operator": "DoesNotExist"},
                {"key": "c", "operator": "NotIn", "values": ["d"]},
                {"key": "g", "operator": "Exists"},
            ],
        }
    )
    assert sel.matches(LABELS)
    assert not sel.matches({"a": "b"})
    assert LabelSelector().matches({}) and LabelSelector().matches(None)
    assert str(LabelSelector(match_labels={"app": "web"})) == "app=web"
    assert selector_from_set({"a": "b"}).matches(LABELS) and selector_from_set(None).empty()
    assert LabelSelector.model_validate(sel.to_dict()) == sel


def test_label_selector_model_validation() -> None:
    data = {
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "c", "image": "i"}],
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "zone",
                    "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {
                        "matchExpressions": [
                            {"key": "a", "operator": "In"},
                            {"key": "b", "operator": "Maybe"},
                        ]
                    },
                }
            ],
        },
    }
    with pytest.raises(ValidationFailed) as exc:
        validate_object(Pod, data)
    msgs = [str(e) for e in exc.value.errors]
    base = "spec.topologySpreadConstraints[0].labelSelector.matchExpressions"
    assert msgs == [
        f"{base}[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
        f'{base}[1].operator: Unsupported value: "Maybe": supported values: "In", "NotIn", "Exists", "DoesNotExist"',
    ]


POD_WIRE = {
    "metadata": {"name": "web-0", "namespace": "prod"},
    "spec": {"nodeName": "n1", "hostNetwork": True},
    "status": {"phase": "Running"},
}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("metadata.name=web-0", True),
        ("metadata.name==web-0", True),
        ("metadata.name!=web-0", False),
        ("metadata.namespace=prod,status.phase=Running", True),
        ("spec.nodeName=n2", False),
        ("spec.nodeName=", False),
        ("spec.schedulerName=", True),  # missing fields read as ""
        ("spec.hostNetwork=true", True),
        ("status.phase!=Pending", True),
        ("metadata.labels.app=", True),
    ],
)
def test_field_selectors(text: str, matches: bool) -> None:
    assert parse_field_selector(text).matches(POD_WIRE) is matches


def test_field_selector_escapes_and_errors() -> None:
    sel = parse_field_selector(r"metadata.name=a\,b\=c")
    assert sel.matches({"metadata": {"name": "a,b=c"}})
    assert str(sel) == r"metadata.name=a\,b\=c"
    assert sel.paths() == ["metadata.name"]
    for bad in ["metadata.name", "=x", "a=b=c", "a=b,", "a=b\\"]:
        with pytest.raises(ValueError):
            parse_field_selector(bad)
