"""Label and field selectors: the ``LabelSelector`` model and kubectl's ``-l`` / ``--field-selector``.

All matching goes through ``Selector`` (a list of ``Requirement``s) so a selector parsed from
``app=web,tier notin (db)`` and one written in a manifest's ``matchExpressions`` behave the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import model_validator

from .meta import KrayModel
from .validation import FieldValueError, is_qualified_name, is_valid_label_value

# Operator spellings as in k8s.io/apimachinery/pkg/selection.
IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "in", "notin", "=", "==", "!="
EXISTS, DOES_NOT_EXIST, GT, LT = "exists", "!", "gt", "lt"
_POSITIVE = (IN, EQUALS, DOUBLE_EQUALS)
_NEGATIVE = (NOT_IN, NOT_EQUALS)


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: ``key op values``."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        value = labels.get(self.key)
        if op in _POSITIVE:
            return value is not None and value in self.values
        if op in _NEGATIVE:
            # Kubernetes: "a!=b" and "a notin (b)" also match objects without the label.
            return value is None or value not in self.values
        if value is None:
            return False
        try:
            have, want = int(value), int(self.values[0])
        except ValueError:
            return False
        return have > want if op == GT else have < want

    def __str__(self) -> str:
        if self.operator == EXISTS:
            return self.key
        if self.operator == DOES_NOT_EXIST:
            return f"!{self.key}"
        if self.operator in (IN, NOT_IN):
            return f"{self.key} {self.operator} ({','.join(sorted(self.values))})"
        if self.operator in (GT, LT):
            return f"{self.key}{'>' if self.operator == GT else '<'}{self.values[0]}"
        return f"{self.key}{self.operator}{self.values[0]}"


@dataclass(frozen=True)
class Selector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def selector_from_set(labels: Mapping[str, str] | None) -> Selector:
    """``{"app": "web"}`` as a selector (Service.spec.selector, nodeSelector)."""
    return Selector(tuple(Requirement(k, EQUALS, (v,)) for k, v in sorted((labels or {}).items())))


class LabelSelectorRequirement(KrayModel):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None

    @model_validator(mode="after")
    def _values_match_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise FieldValueError.one(
                "Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "FieldValueRequired",
                "values",
            )
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise FieldValueError.one(
                "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                "FieldValueForbidden",
                "values",
            )
        return self


_MODEL_OPS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


class LabelSelector(KrayModel):
    """metav1.LabelSelector. Empty matches everything; callers treat a missing (None) one as nothing."""

    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None

    def to_selector(self) -> Selector:
        # Not cached on the model: a private attribute would take part in model equality.
        # Callers matching many objects should call this once and reuse the Selector.
        reqs = [Requirement(k, EQUALS, (v,)) for k, v in sorted((self.match_labels or {}).items())]
        for e in self.match_expressions or []:
            reqs.append(Requirement(e.key, _MODEL_OPS[e.operator], tuple(e.values or ())))
        return Selector(tuple(reqs))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        return self.to_selector().matches(labels)

    def __str__(self) -> str:
        return str(self.to_selector())


# --- kubectl label selector syntax --------------------------------------------------------------

_TOKEN_RE = re.compile(r"\s*(==|!=|=|\(|\)|,|!|>|<|[^\s=!(),<>]+)")
_WORD_OPS = {"in": IN, "notin": NOT_IN}


Token = tuple[str, int, int]  # text, start, end in the selector string


def _tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        m = _TOKEN_RE.match(text, pos)
        if m is None:  # pragma: no cover - the pattern accepts any non-space character
            raise ValueError(f"unable to parse requirement: {text[pos:]!r}")
        tokens.append((m.group(1), m.start(1), m.end(1)))
        pos = m.end()
    return tokens


def _split_terms(tokens: list[Token]) -> list[list[Token]]:
    """Split on commas that are not inside a value set's parentheses."""
    terms: list[list[Token]] = [[]]
    depth = 0
    for tok in tokens:
        depth += tok[0] == "("
        depth -= tok[0] == ")"
        if tok[0] == "," and depth == 0:
            terms.append([])
        else:
            terms[-1].append(tok)
    return terms


def _check_key(key: str, term: str) -> None:
    errs = is_qualified_name(key)
    if errs:
        raise ValueError(f"invalid label key {key!r} in {term!r}: {'; '.join(errs)}")


def _check_value(value: str, term: str) -> None:
    errs = is_valid_label_value(value)
    if errs:
        raise ValueError(f"invalid label value {value!r} in {term!r}: {'; '.join(errs)}")


def _parse_term(tokens: list[Token], text: str) -> Requirement:
    if not tokens:
        raise ValueError(f"found empty requirement in {text!r} (two commas, or a comma at the start or end)")
    term = text[tokens[0][1] : tokens[-1][2]]  # the term as the user wrote it, for error messages
    toks = [t[0] for t in tokens]
    if toks[0] == "!":
        if len(toks) != 2:
            raise ValueError(f"unable to parse requirement {term!r}: '!' takes exactly one key")
        _check_key(toks[1], term)
        return Requirement(toks[1], DOES_NOT_EXIST)
    key = toks[0]
    _check_key(key, term)
    if len(toks) == 1:
        return Requirement(key, EXISTS)
    op = toks[1]
    if op in ("=", "==", "!="):
        if len(toks) == 2:
            value = ""  # "a=" selects the empty value, as in Kubernetes
        elif len(toks) == 3:
            value = toks[2]
        else:
            raise ValueError(f"unable to parse requirement {term!r}: expected a single value after {op!r}")
        _check_value(value, term)
        return Requirement(key, op, (value,))
    if op in (">", "<"):
        if len(toks) != 3 or not re.fullmatch(r"-?[0-9]+", toks[2]):
            raise ValueError(f"unable to parse requirement {term!r}: {op!r} needs an integer value")
        return Requirement(key, GT if op == ">" else LT, (toks[2],))
    if op.lower() in _WORD_OPS:
        rest = toks[2:]
        if len(rest) < 2 or rest[0] != "(" or rest[-1] != ")":
            raise ValueError(f"unable to parse requirement {term!r}: expected '(' values ')' after {op!r}")
        values = [v for v in rest[1:-1] if v != ","]
        if not values or any(v in "()" for v in values):
            raise ValueError(f"unable to parse requirement {term!r}: the value set must not be empty")
        for v in values:
            _check_value(v, term)
        return Requirement(key, _WORD_OPS[op.lower()], tuple(values))
    raise ValueError(f"unable to parse requirement {term!r}: unknown operator {op!r}")


def parse_label_selector(text: str | None) -> Selector:
    """Parse kubectl syntax: ``a=b,c!=d,e in (x,y),f notin (z),g,!h`` (also ``==``, ``>``, ``<``).

    Raises ValueError naming the bad term.
    """
    if text is None or not text.strip():
        return Selector()
    return Selector(tuple(_parse_term(t, text) for t in _split_terms(_tokenize(text))))


# --- field selectors ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    operator: str  # "=" or "!="
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        equal = field_value(obj, self.path) == self.value
        return equal if self.operator == "=" else not equal


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Match against an object's wire dict (``to_dict()`` form)."""
        return all(r.matches(obj) for r in self.requirements)

    def empty(self) -> bool:
        return not self.requirements

    def paths(self) -> list[str]:
        return [r.path for r in self.requirements]

    def __str__(self) -> str:
        return ",".join(f"{r.path}{r.operator}{_escape(r.value)}" for r in self.requirements)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a dotted path's value; missing fields read as "" like in Kubernetes."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return ""
        cur = cur[part]
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _split_unescaped(text: str, sep: str) -> Iterable[str]:
    part, escaped = [], False
    for ch in text:
        if escaped:
            part.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            yield "".join(part)
            part = []
        else:
            part.append(ch)
    if escaped:
        raise ValueError(f"invalid field selector {text!r}: trailing backslash")
    yield "".join(part)


def _unescape(value: str, term: str) -> str:
    out, escaped = [], False
    for ch in value:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "=":
            raise ValueError(f"invalid field selector term {term!r}: unescaped '=' in the value")
        else:
            out.append(ch)
    return "".join(out)


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse ``metadata.name=x,status.phase!=Running`` (``=``, ``==``, ``!=``; ``\\,`` escapes a comma)."""
    if text is None or not text.strip():
        return FieldSelector()
    reqs = []
    for term in _split_unescaped(text, ","):
        raw = term.strip()
        m = re.match(r"^([^=!\s]+)\s*(==|!=|=)(.*)$", raw)
        if m is None or "\\" in m.group(1):
            raise ValueError(f"invalid field selector term {raw!r}: expected <path>=<value> or <path>!=<value>")
        path, op, value = m.group(1), m.group(2), m.group(3).strip()
        reqs.append(FieldRequirement(path, "!=" if op == "!=" else "=", _unescape(value, raw)))
    return FieldSelector(tuple(reqs))
