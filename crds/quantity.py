"""Kubernetes resource quantities (``500m``, ``2Gi``, ``1e3``), parsed exactly with Decimal.

Floats are never used for the value: the scheduler adds and compares requests against
allocatable, and binary floats would make ``0.1 + 0.2`` CPUs not fit in ``300m``.
The canonical string form follows Kubernetes (``1.5`` -> ``1500m``, ``1024Mi`` -> ``1Gi``), so
objects read back from the store look like what ``kubectl get -o yaml`` shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from enum import Enum
from typing import Annotated, Any, Union

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema


class QuantityFormat(str, Enum):
    DECIMAL_SI = "DecimalSI"
    BINARY_SI = "BinarySI"
    DECIMAL_EXPONENT = "DecimalExponent"


_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
# Suffixes indexed by power of ten, for printing the canonical form.
_DECIMAL_BY_EXP = {exp: suffix for suffix, exp in _DECIMAL.items()}
_BINARY_BY_EXP = {exp: suffix for suffix, exp in _BINARY.items()}

# Number, then either a binary/decimal suffix or an exponent (e/E followed by a signed integer).
# Note "1E" is 10^18 (exa) while "1E3" is 1000: the exponent branch requires digits.
_QUANTITY_RE = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<exp>[eE][+-]?[0-9]+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$"
)
_NANO = Decimal("1e-9")


def _parse(text: str) -> tuple[Decimal, QuantityFormat]:
    match = _QUANTITY_RE.match(text.strip())
    if match is None:
        raise ValueError(
            f"invalid quantity {text!r}: quantities must match the regular expression "
            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        )
    number = Decimal(match.group("num"))
    exp, suffix = match.group("exp"), match.group("suffix") or ""
    if exp is not None:
        return number.scaleb(int(exp[1:])), QuantityFormat.DECIMAL_EXPONENT
    if suffix in _BINARY:
        return number * (Decimal(2) ** _BINARY[suffix]), QuantityFormat.BINARY_SI
    return number.scaleb(_DECIMAL[suffix]), QuantityFormat.DECIMAL_SI


def _from_number(value: int | float | Decimal) -> Decimal:
    if isinstance(value, bool):  # bool is an int subclass; True CPUs is a bug, not 1
        raise ValueError(f"quantity must be a string or a number, got {value!r}")
    if isinstance(value, float):
        # repr() gives the shortest string that round-trips, so 0.1 becomes exactly 0.1.
        return Decimal(repr(value))
    return Decimal(value)


def parse_quantity(value: str | int | float | Decimal | Quantity) -> Decimal:
    """The exact value of a quantity: ``parse_quantity("500m") == Decimal("0.5")``."""
    if isinstance(value, Quantity):
        return value.amount
    if isinstance(value, str):
        return _parse(value)[0]
    if isinstance(value, (int, float, Decimal)):
        return _from_number(value)
    raise ValueError(f"quantity must be a string or a number, got {type(value).__name__}")


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def _format_decimal(value: Decimal, exponent_form: bool) -> str:
    """Largest power-of-1000 suffix that leaves an integer mantissa (Kubernetes' canonical form)."""
    if value == 0:
        return "0"
    # Kubernetes keeps at most nano precision and rounds anything finer up.
    value = (value / _NANO).to_integral_value(rounding=ROUND_CEILING) * _NANO
    for exp in range(18, -10, -3):
        mantissa = value.scaleb(-exp)
        if mantissa == mantissa.to_integral_value():
            digits = str(int(mantissa))
            if exponent_form:
                return digits if exp == 0 else f"{digits}e{exp}"
            return digits + _DECIMAL_BY_EXP[exp]
    raise AssertionError("unreachable: nano precision always yields an integer mantissa")


def format_quantity(value: Decimal, fmt: QuantityFormat = QuantityFormat.DECIMAL_SI) -> str:
    """Canonical string for ``value`` in the given format."""
    if fmt is QuantityFormat.BINARY_SI and value == value.to_integral_value() and abs(value) >= 1024:
        whole = int(value)
        for exp in range(60, 0, -10):
            if whole % (1 << exp) == 0:
                return f"{whole >> exp}{_BINARY_BY_EXP[exp]}"
    # Small or fractional binary amounts print in decimal SI, as Kubernetes does ("512", "500m").
    return _format_decimal(value, fmt is QuantityFormat.DECIMAL_EXPONENT)


class Quantity:
    """A parsed quantity: exact Decimal value, the format it was written in, and the original text."""

    __slots__ = ("_amount", "_format", "_original")
    _amount: Decimal
    _format: QuantityFormat
    _original: str | None

    def __init__(self, value: str | int | float | Decimal | Quantity = 0) -> None:
        if isinstance(value, Quantity):
            self._amount, self._format, self._original = value._amount, value._format, value._original
        elif isinstance(value, str):
            self._amount, self._format = _parse(value)
            self._original = value
        else:
            self._amount, self._format, self._original = _from_number(value), QuantityFormat.DECIMAL_SI, None

    @classmethod
    def from_decimal(cls, amount: Decimal, fmt: QuantityFormat = QuantityFormat.DECIMAL_SI) -> Quantity:
        q = cls.__new__(cls)
        q._amount, q._format, q._original = amount, fmt, None
        return q

    @property
    def amount(self) -> Decimal:
        return self._amount

    @property
    def format(self) -> QuantityFormat:
        return self._format

    @property
    def original(self) -> str:
        """The string this quantity was parsed from (the canonical form if built from a number)."""
        return self._original if self._original is not None else str(self)

    def value(self) -> int:
        """Whole units, rounded up (Kubernetes' ``Value()``): ``Quantity("1500m").value() == 2``."""
        return _ceil(self._amount)

    def milli(self) -> int:
        """Thousandths, rounded up (Kubernetes' ``MilliValue()``): ``Quantity("0.1").milli() == 100``."""
        return _ceil(self._amount * 1000)

    def is_zero(self) -> bool:
        return self._amount == 0

    def __str__(self) -> str:
        return format_quantity(self._amount, self._format)

    def __repr__(self) -> str:
        return f"Quantity({str(self)!r})"

    def __hash__(self) -> int:
        return hash(self._amount)

    @staticmethod
    def _other(other: object) -> Decimal | None:
        if isinstance(other, Quantity):
            return other._amount
        if isinstance(other, (str, int, float, Decimal)) and not isinstance(other, bool):
            try:
                return parse_quantity(other)
            except (ValueError, InvalidOperation):
                return None
        return None

    def __eq__(self, other: object) -> bool:
        amount = self._other(other)
        return amount is not None and self._amount == amount

    def _cmp(self, other: object) -> Decimal:
        amount = self._other(other)
        if amount is None:
            raise TypeError(f"cannot compare Quantity with {type(other).__name__}")
        return amount

    def __lt__(self, other: object) -> bool:
        return self._amount < self._cmp(other)

    def __le__(self, other: object) -> bool:
        return self._amount <= self._cmp(other)

    def __gt__(self, other: object) -> bool:
        return self._amount > self._cmp(other)

    def __ge__(self, other: object) -> bool:
        return self._amount >= self._cmp(other)

    def __add__(self, other: object) -> Quantity:
        return Quantity.from_decimal(self._amount + self._cmp(other), self._format)

    def __radd__(self, other: object) -> Quantity:
        # Lets sum() start from 0.
        return Quantity.from_decimal(self._cmp(other) + self._amount, self._format)

    def __sub__(self, other: object) -> Quantity:
        return Quantity.from_decimal(self._amount - self._cmp(other), self._format)

    def __neg__(self) -> Quantity:
        return Quantity.from_decimal(-self._amount, self._format)

    def __mul__(self, factor: int | Decimal) -> Quantity:
        return Quantity.from_decimal(self._amount * factor, self._format)

    __rmul__ = __mul__

    # pydantic integration: accept str/int/float/Quantity, serialize to the canonical string.
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate_quantity,
            serialization=core_schema.plain_serializer_function_ser_schema(
                _serialize_quantity, info_arg=True, return_schema=core_schema.any_schema()
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"anyOf": [{"type": "string"}, {"type": "number"}], "x-kubernetes-int-or-string": True}


def _validate_quantity(value: Any) -> Quantity:
    if isinstance(value, Quantity):
        return value
    if isinstance(value, (str, int, float, Decimal)) and not isinstance(value, bool):
        return Quantity(value)
    raise ValueError(f"quantity must be a string or a number, got {type(value).__name__}")


def _serialize_quantity(value: Quantity, info: core_schema.SerializationInfo) -> Any:
    # Python-mode dumps keep the object (cheap copies inside the process); JSON gets the string.
    return str(value) if info.mode_is_json() else value


# For model fields: ``cpu: QuantityField``. Quantity itself already carries the pydantic schema;
# the alias exists so field declarations read as "a quantity in wire form".
QuantityField = Annotated[Quantity, "kubernetes-quantity"]
ResourceList = dict[str, Quantity]
QuantityLike = Union[Quantity, str, int, float, Decimal]


def resource_list(values: Mapping[str, QuantityLike]) -> ResourceList:
    """Build a resource list from strings/numbers: ``resource_list({"cpu": "2", "nvidia.com/gpu": 1})``."""
    return {name: _validate_quantity(v) for name, v in values.items()}


def add_resources(*lists: Mapping[str, Quantity] | None) -> ResourceList:
    """Sum resource lists key by key (missing keys count as zero)."""
    total: ResourceList = {}
    for resources in lists:
        for name, q in (resources or {}).items():
            total[name] = total[name] + q if name in total else q
    return total


def subtract_resources(a: Mapping[str, Quantity], b: Mapping[str, Quantity] | None) -> ResourceList:
    """``a - b`` key by key; keys only in ``b`` come out negative."""
    out: ResourceList = dict(a)
    for name, q in (b or {}).items():
        out[name] = out[name] - q if name in out else -q
    return out


def fits(request: Mapping[str, Quantity] | None, available: Mapping[str, Quantity] | None) -> list[str]:
    """Names of resources in ``request`` that exceed ``available`` (empty list: it fits)."""
    available = available or {}
    return [
        name for name, q in (request or {}).items() if q.amount > 0 and q.amount > available.get(name, _ZERO).amount
    ]


_ZERO = Quantity(0)
