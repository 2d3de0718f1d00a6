"""Quantities: exact parsing, canonical form, arithmetic, pydantic integration."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import BaseModel

from kray.crds.quantity import (
    Quantity,
    QuantityField,
    ResourceList,
    add_resources,
    fits,
    parse_quantity,
    resource_list,
    subtract_resources,
)


@pytest.mark.parametrize(
    ("text", "value", "canonical"),
    [
        ("500m", Decimal("0.5"), "500m"),
        ("2Gi", Decimal(2 * 1024**3), "2Gi"),
        ("1.5", Decimal("1.5"), "1500m"),
        ("1e3", Decimal(1000), "1e3"),
        ("1E3", Decimal(1000), "1e3"),
        ("1E-3", Decimal("0.001"), "1e-3"),
        ("100Ki", Decimal(102400), "100Ki"),
        ("1536Mi", Decimal(1536 * 1024**2), "1536Mi"),
        ("1024Mi", Decimal(1024**3), "1Gi"),
        ("0.5Gi", Decimal(512 * 1024**2), "512Mi"),
        ("1000", Decimal(1000), "1k"),
        ("0", Decimal(0), "0"),
        ("-1.5", Decimal("-1.5"), "-1500m"),
        ("+3k", Decimal(3000), "3k"),
        (".5", Decimal("0.5"), "500m"),
        ("1E", Decimal(10) ** 18, "1E"),
        ("5n", Decimal("5e-9"), "5n"),
        ("10u", Decimal("1e-5"), "10u"),
        ("2M", Decimal(2_000_000), "2M"),
        ("3T", Decimal(3 * 10**12), "3T"),
        ("1Ei", Decimal(2**60), "1Ei"),
        ("512", Decimal(512), "512"),
    ],
)
def test_parse_and_canonical(text: str, value: Decimal, canonical: str) -> None:
    assert parse_quantity(text) == value
    q = Quantity(text)
    assert q.amount == value
    assert str(q) == canonical
    assert q.original == text
    assert Quantity(str(q)) == q  # the canonical form parses back to the same value


@pytest.mark.parametrize("bad", ["2Gx", "", "1.2.3", "K", "1e", "abc", "1 Gi", "1KI", "Gi", "--1", "1k1"])
def test_bad_quantities(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid quantity"):
        parse_quantity(bad)


def test_numbers_and_rejections() -> None:
    assert parse_quantity(2) == 2
    assert parse_quantity(0.1) == Decimal("0.1")  # via repr: no binary float error
    assert str(Quantity(0.25)) == "250m"
    with pytest.raises(ValueError):
        parse_quantity(True)
    with pytest.raises(ValueError):
        parse_quantity([1])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "milli", "value"),
    [
        ("500m", 500, 1),
        ("1.5", 1500, 2),
        ("0.1", 100, 1),
        ("1n", 1, 1),
        ("2Gi", 2 * 1024**3 * 1000, 2 * 1024**3),
    ],
)
def test_milli_and_value_round_up(text: str, milli: int, value: int) -> None:
    assert Quantity(text).milli() == milli
    assert Quantity(text).value() == value


def test_comparison_and_arithmetic() -> None:
    assert Quantity("1") == Quantity("1000m")
    assert Quantity("1") == "1000m"
    assert Quantity("1") == 1
    assert Quantity("500m") < Quantity("1")
    assert Quantity("1Gi") > "1G"
    assert Quantity("0.1") + Quantity("0.2") == Quantity("300m")
    assert str(Quantity("1Gi") + Quantity("1Gi")) == "2Gi"
    assert str(Quantity("2") - "500m") == "1500m"
    assert sum([Quantity("100m"), Quantity("200m")]) == Quantity("300m")
    assert Quantity("2") * 3 == 6
    assert -Quantity("1") == -1
    assert hash(Quantity("1")) == hash(Quantity("1000m"))
    assert Quantity("1") != "garbage"
    with pytest.raises(TypeError):
        _ = Quantity("1") < object()


class _Res(BaseModel):
    requests: ResourceList
    one: QuantityField | None = None


def test_pydantic_field_accepts_str_int_float_and_serializes_to_string() -> None:
    m = _Res.model_validate({"requests": {"cpu": "500m", "memory": 1024, "nvidia.com/gpu": 1, "x": 0.5}, "one": "1Ki"})
    assert m.requests["cpu"] == Decimal("0.5")
    dumped = m.model_dump(mode="json")
    assert dumped == {
        "requests": {"cpu": "500m", "memory": "1024", "nvidia.com/gpu": "1", "x": "500m"},
        "one": "1Ki",
    }
    assert _Res.model_validate(dumped) == m
    assert _Res.model_validate_json(m.model_dump_json()) == m
    with pytest.raises(ValueError, match="invalid quantity"):
        _Res.model_validate({"requests": {"cpu": "2Gx"}})


def test_resource_list_helpers() -> None:
    a = resource_list({"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": 2})
    b = resource_list({"cpu": "250m", "nvidia.com/gpu": 1})
    assert add_resources(a, b, None) == {
        "cpu": Quantity("1250m"),
        "memory": Quantity("1Gi"),
        "nvidia.com/gpu": 3,
    }
    assert subtract_resources(a, b)["cpu"] == Quantity("750m")
    assert subtract_resources(b, a)["memory"] == -Quantity("1Gi")
    assert fits(b, a) == []
    assert fits(a, b) == ["cpu", "memory", "nvidia.com/gpu"]
    assert fits(resource_list({"nvidia.com/gpu": 0}), {}) == []
