"""Search filters over product fields (``aisle/data/fields.py``): parsed, checked, applied.

A filter is a conjunction of conditions, one or more per field:

- equality: ``brand=DeWalt`` (text compares case-blind, after Unicode NFKC and whitespace
  folding, so ``brand=dewalt`` matches "DeWalt"); ``in_stock=true``; ``price=4.99``;
- set membership: ``brand=DeWalt|Makita`` (any of);
- a path and what is under it: ``category^=dairy eggs`` keeps "dairy eggs" and
  "dairy eggs > milk" (a category path's levels are joined by " > ");
- numeric ranges: ``price>=10``, ``price<50``, ``price=10..50`` (inclusive; ``10..`` and
  ``..50`` leave a side open).

The Python API and ``POST /search`` take the same as JSON: ``{"brand": "DeWalt"}``,
``{"brand": ["DeWalt", "Makita"]}``, ``{"price": {"gte": 10, "lt": 50}}``,
``{"category": {"under": "dairy eggs"}}``, ``{"in_stock": true}``. ``aisle search --filter``
and ``GET /search?filter=`` take the text form, one condition per flag or parameter. A
product whose field is missing matches no condition on it. ``FieldTable.mask`` turns a filter
into one boolean per catalog row, which the dense side hands FAISS as an id selector and BM25
applies before its top k.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from aisle.data.fields import FIELD_NAME, FieldType, field_type
from aisle.errors import AisleError
from aisle.retrieval.querytext import normalise

Scalar = str | float | bool
RANGE_KEYS = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}
# The text form, exactly: a field name, an operator, then a value the field's type admits.
# These patterns are the grammar itself: the parser below matches them, and the service's
# OpenAPI document declares the same ones (field_pattern), so a condition is valid by the
# schema exactly when the service accepts it. Blanks are what str.strip() removes; a number has
# at most 15 digits either side of its point (no exponent), so it is always finite.
MAX_CONDITION_CHARS = 200
# At most this many conditions (GET parameters, or JSON keys) and values in one JSON list.
MAX_CONDITIONS = 20
MAX_VALUES = 100
_CONDITION = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(>=|<=|\^=|>|<|=)(.*)", re.DOTALL)
# A text value "a > b > c" is a path (Instacart's "department > aisle"): ``field^=a`` keeps
# the values equal to "a" or under it ("a > ...").
PATH_SEP = " > "
BLANK = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_WS = f"[{BLANK}]*"
_NUM = r"[+-]?(?:[0-9]{1,15}(?:\.[0-9]{0,15})?|\.[0-9]{1,15})"
# Blanks, one character that is neither a blank nor "|", then anything but "|": one way only to
# match a value, so checking a long one is linear (a pattern with several ways to place its
# non-blank character backtracks exponentially over "a|a|...| ").
_TEXT_VALUE = f"[{BLANK}]*[^|{BLANK}][^|]*"
_BOOL_VALUE = f"{_WS}(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]){_WS}"
_NUMBER_VALUE = f"{_WS}(?:{_NUM}|(?:{_NUM})?\\.\\.(?:{_NUM})?){_WS}"
_BOUND_VALUE = f"{_WS}{_NUM}{_WS}"
# The same, capturing the numbers: an equality or range item, and a bound.
_NUMBER_ITEM = re.compile(f"{_WS}(?:({_NUM})|({_NUM})?\\.\\.({_NUM})?){_WS}")
_BOUND = re.compile(f"{_WS}({_NUM}){_WS}")


def _any_of(value: str) -> str:
    return f"{value}(?:\\|{value})*"


def field_pattern(name: str, kind: FieldType) -> str:
    """The text conditions on field ``name`` of type ``kind``, as one regular expression
    (anchored; Python's and ECMA-262's syntax alike)."""
    if kind == "string":
        return f"^{name}\\^?={_any_of(_TEXT_VALUE)}$"
    if kind == "boolean":
        return f"^{name}={_any_of(_BOOL_VALUE)}$"
    return f"^{name}(?:={_any_of(_NUMBER_VALUE)}|(?:>=|<=|>|<){_BOUND_VALUE})$"


# Values shown per string field in ``FieldTable.summary`` (the search page's filters).
SUMMARY_VALUES = 200


class FilterError(AisleError):
    """A filter that is malformed or names a field the index lacks; says what to send."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Condition:
    """A condition on one field. From the text form, ``source`` is the text and ``values`` its
    raw items (split at ``|`` for ``=``), checked against the field's type when applied; from
    JSON, ``source`` is None and ``values`` are typed (str, float, bool)."""

    field: str
    op: str
    values: tuple[Scalar, ...]
    source: str | None = None

    def text(self) -> str:
        if self.source is not None:
            return self.source
        return f"{self.field}{self.op}{'|'.join(_show(v) for v in self.values)}"


def _show(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else repr(float(value))


@dataclass(frozen=True)
class Filter:
    """Conditions that must all hold. ``key`` is a canonical text, for caches."""

    conditions: tuple[Condition, ...]

    def __bool__(self) -> bool:
        return bool(self.conditions)

    @property
    def key(self) -> str:
        """Equal for filters that select the same way; JSON values keep their type, so a
        value of the wrong type never shares a valid one's key."""
        return json.dumps(sorted([c.source or "", c.field, c.op,
                                  [[type(v).__name__, _show(v)] for v in c.values]]
                                 for c in self.conditions), ensure_ascii=False)

    @property
    def fields(self) -> list[str]:
        return sorted({c.field for c in self.conditions})

    def describe(self) -> str:
        return " and ".join(c.text() for c in self.conditions)


def parse_condition(text: str, where: str | None = None) -> Condition:
    """One condition of the text form (``brand=DeWalt|Makita``, ``price<=50``,
    ``price=10..50``); ``where`` is what the error names (a parameter). The value is checked
    against the field's type when the filter is applied to an index."""
    if len(text) > MAX_CONDITION_CHARS:
        raise FilterError(f"a filter is {len(text)} characters; at most {MAX_CONDITION_CHARS}",
                          where)
    match = _CONDITION.fullmatch(text)
    if match is None:
        raise FilterError(f"filter {text[:60]!r} is not field=value, field=a|b, field>=n, "
                          "field<=n, field>n, field<n or field=lo..hi (no space before the "
                          "operator)", where)
    name, op, value = match.group(1), match.group(2), match.group(3)
    listed = op in ("=", "^=")  # any of several values
    return Condition(name, op, tuple(value.split("|")) if listed else (value,), text)


def parse_filters(texts: Sequence[str], where: str | None = None) -> Filter:
    if len(texts) > MAX_CONDITIONS:
        raise FilterError(f"{len(texts)} filter conditions; at most {MAX_CONDITIONS}", where)
    return Filter(tuple(parse_condition(t, where) for t in texts))


def _json_scalar(value: Any, name: str, where: str) -> Scalar:
    if isinstance(value, np.generic):  # a numpy scalar from Python code: its Python value
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if not value.strip() or len(value) > MAX_CONDITION_CHARS:
            raise FilterError(f"filter {name!r}: a value must hold some non-blank character "
                              f"and at most {MAX_CONDITION_CHARS}", where)
        return value
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:  # a bound beyond any float: every product is below (above) it
            return math.inf if value > 0 else -math.inf
    if isinstance(value, float) and not math.isnan(value):
        return value
    try:
        shown = json.dumps(value)
    except (TypeError, ValueError):  # from Python code, not JSON: a set, an object, ...
        shown = f"a value of type {type(value).__name__}"
    except RecursionError:  # lists in lists ~1,000 deep: a body JSON could still parse
        shown = f"a {type(value).__name__} nested too deeply"
    raise FilterError(f"filter {name!r}: {shown[:60]} is not a string, number or boolean",
                      where)


def filter_from_json(obj: Mapping[str, Any], where: str = "filters") -> Filter:
    """``{"brand": "DeWalt", "category": ["a", "b"], "price": {"gte": 10, "lte": 50},
    "in_stock": true}`` -> a ``Filter``; ``where`` prefixes the field named in errors. A list
    means any of its values; a text value is taken whole (a ``|`` in it is no separator)."""
    if not isinstance(obj, Mapping):
        raise FilterError("filters must be an object of field: value", where)
    if len(obj) > MAX_CONDITIONS:
        raise FilterError(f"filters names {len(obj)} fields; at most {MAX_CONDITIONS}", where)
    conditions: list[Condition] = []
    for name, spec in obj.items():
        at = f"{where}.{name}"
        if not FIELD_NAME.fullmatch(str(name)):
            raise FilterError(f"filter field {str(name)[:40]!r} is not a field name", at)
        if isinstance(spec, Mapping) and set(spec) == {"under"}:
            under = spec["under"]
            values = under if isinstance(under, list) else [under]
            if not values or len(values) > MAX_VALUES:
                raise FilterError(f"filter {name!r}: give 1 to {MAX_VALUES} paths under "
                                  "'under'", at)
            conditions.append(Condition(name, "^=", tuple(_json_scalar(v, name, at)
                                                           for v in values)))
        elif isinstance(spec, Mapping):
            unknown = sorted(set(spec) - set(RANGE_KEYS))
            if unknown or not spec:
                raise FilterError(f"filter {name!r}: a range takes gte, gt, lte and lt (a "
                                  f"text path: under alone), got {sorted(spec)}", at)
            conditions += [Condition(name, RANGE_KEYS[key], (_json_scalar(spec[key], name, at),))
                           for key in spec]
        elif isinstance(spec, list):
            if not spec or len(spec) > MAX_VALUES:
                raise FilterError(f"filter {name!r}: give 1 to {MAX_VALUES} values, got "
                                  f"{len(spec)}" if spec else
                                  f"filter {name!r}: the list of values is empty", at)
            conditions.append(Condition(name, "=", tuple(_json_scalar(v, name, at)
                                                          for v in spec)))
        else:
            conditions.append(Condition(name, "=", (_json_scalar(spec, name, at),)))
    return Filter(tuple(conditions))


def as_filter(filters: Filter | Mapping[str, Any] | Sequence[str] | str | None) -> Filter | None:
    """What the Python API takes: a ``Filter``, its JSON form (a dict), text conditions (a
    string or a list of strings) or None."""
    if filters is None or isinstance(filters, Filter):
        return filters or None
    if isinstance(filters, str):
        return parse_filters([filters]) or None
    if isinstance(filters, Mapping):
        return filter_from_json(filters) or None
    if (isinstance(filters, Sequence) and not isinstance(filters, bytes | bytearray)
            and all(isinstance(c, str) for c in filters)):
        return parse_filters(list(filters)) or None
    raise FilterError(f"filters of type {type(filters).__name__}: give a dict such as "
                      '{"brand": "DeWalt"}, text conditions such as ["price<=50"], a Filter or '
                      "None", "filters")


def fold(text: str) -> str:
    """How text field values compare: NFKC, whitespace runs as one space, case-blind."""
    return normalise(text).strip().casefold()


HOW = {
    "string": "{name} is a text field: use {name}=value, {name}=a|b or {name}^=path (the "
              "path and every value under it; no blank value)",
    "boolean": "{name} is a boolean field: use {name}=true or {name}=false",
    "number": "{name} is a number field: use {name}>=n (or <=, >, <), {name}=n, {name}=a|b or "
              "{name}=lo..hi, n with at most 15 digits either side of its point and no exponent",
}


HOW_JSON = {
    "string": "{name} is a text field: give a string, a list of strings or "
              "{{\"under\": path}}",
    "boolean": "{name} is a boolean field: give true, false or a list of them",
    "number": "{name} is a number field: give a number, a list of numbers or a range "
              "{{\"gte\": n, \"lt\": n}} (gte, gt, lte, lt)",
}


@functools.cache
def _pattern(name: str, kind: FieldType) -> re.Pattern[str]:
    return re.compile(field_pattern(name, kind), re.DOTALL)


# A number condition, typed: ("=", [value or (low, high) range, ...]) or (bound op, [value]).
NumberTest = tuple[str, list[float | tuple[float | None, float | None]]]


def _typed(c: Condition, kind: FieldType, where: str | None) -> list[Any]:
    """The values of ``c`` for a field of type ``kind``; raises ``FilterError`` unless they
    are of that type (text conditions: unless the text matches ``field_pattern``)."""
    if c.source is None:
        where = f"{where}.{c.field}" if where else c.field
        how = HOW_JSON[kind].format(name=c.field)
    else:
        how = HOW[kind].format(name=c.field)
    wrong = FilterError(f"filter {c.text()[:60]!r}: {how}", where)
    if c.source is not None:
        if _pattern(c.field, kind).fullmatch(c.source) is None:
            raise wrong
        raw = [str(v) for v in c.values]
        if kind == "string":
            return [v.strip() for v in raw]
        if kind == "boolean":
            return [v.strip().lower() == "true" for v in raw]
        if c.op != "=":
            bound = _BOUND.fullmatch(raw[0])
            assert bound is not None  # the pattern matched
            return [float(bound.group(1))]
        items: list[Any] = []
        for v in raw:
            item = _NUMBER_ITEM.fullmatch(v)
            assert item is not None
            exact, low, high = item.groups()
            if low is not None and high is not None and float(low) > float(high):
                # 10..5 matches nothing: a swapped range, answered empty without a word
                raise FilterError(f"filter {c.text()[:60]!r}: the range {v.strip()} runs "
                                  f"backwards; write it low..high ({high}..{low})", where)
            items.append(float(exact) if exact is not None else
                         (None if low is None else float(low),
                          None if high is None else float(high)))
        return items
    wanted = {"string": str, "boolean": bool, "number": float}[kind]
    ops = {"string": ("=", "^="), "boolean": ("=",)}.get(kind, ("=", ">=", ">", "<=", "<"))
    if c.op not in ops or not all(
            type(v) is wanted for v in c.values):  # exact types: a bool is no number here
        raise wrong
    return list(c.values)


class FieldTable:
    """The stored fields of an index's rows (by row position), typed, ready to filter."""

    def __init__(self, columns: Mapping[str, pd.Series]) -> None:
        self.types: dict[str, FieldType] = {n: field_type(s) for n, s in columns.items()}
        self.rows = len(next(iter(columns.values()))) if columns else 0
        # String fields: each row's code into its distinct raw values (-1 = missing), and each
        # raw value's code into the distinct folded values, which filters compare.
        self._raw: dict[str, tuple[np.ndarray, list[str]]] = {}
        self._folded: dict[str, tuple[np.ndarray, dict[str, int]]] = {}
        self._numbers: dict[str, np.ndarray] = {}  # number and boolean fields (NaN = missing)
        self._summary: list[dict[str, Any]] | None = None
        for name, series in columns.items():
            if self.types[name] == "string":
                text = series.astype("object").where(series.notna(), "").astype(str)
                codes, uniques = pd.factorize(text.where(text.str.strip() != ""),
                                              use_na_sentinel=True)
                raw = [str(u) for u in uniques]
                folded, folded_uniques = pd.factorize(pd.Series([fold(u) for u in raw],
                                                                dtype="object"))
                self._raw[name] = (codes.astype(np.int64), raw)
                self._folded[name] = (np.asarray(folded, dtype=np.int64),
                                      {str(u): i for i, u in enumerate(folded_uniques)})
            else:
                self._numbers[name] = pd.to_numeric(
                    series.astype("object").where(series.notna()), errors="coerce"
                ).astype("float64").to_numpy()

    def _shown(self, name: str, row: int) -> Any:
        """Field ``name`` of ``row`` as results carry it (None = missing)."""
        if name in self._raw:
            codes, raw = self._raw[name]
            return raw[codes[row]] if codes[row] >= 0 else None
        value = float(self._numbers[name][row])
        if math.isnan(value):
            return None
        return bool(value) if self.types[name] == "boolean" else value

    @property
    def names(self) -> list[str]:
        return list(self.types)

    def check_names(self, names: Sequence[str], where: str | None = None) -> None:
        for name in names:
            if name not in self.types:
                known = (f"this index has {', '.join(self.names)}" if self.names else
                         "this index stores no fields (one built before fields were stored: "
                         "build it again with aisle index)")
                raise FilterError(f"unknown field {name[:40]!r}: {known}", where)

    def check(self, flt: Filter, where: str | None = None) -> None:
        """Raise ``FilterError`` as ``mask`` would, without computing a mask (cheap: what a
        latency-bound caller checks before it hands the search to another thread)."""
        for c in flt.conditions:
            at = where if c.source is not None else f"{where}.{c.field}" if where else c.field
            self.check_names([c.field], at)
            _typed(c, self.types[c.field], where)

    def mask(self, flt: Filter, where: str | None = None) -> np.ndarray:
        """One boolean per row: whether the row meets every condition of ``flt``."""
        keep = np.ones(self.rows, dtype=bool)
        for c in flt.conditions:
            at = where if c.source is not None else f"{where}.{c.field}" if where else c.field
            self.check_names([c.field], at)
            keep &= self._condition(c, where)
        return keep

    def _condition(self, c: Condition, where: str | None) -> np.ndarray:
        kind = self.types[c.field]
        values = _typed(c, kind, where)
        if kind == "string":
            raw_codes, _ = self._raw[c.field]
            folded, code_of = self._folded[c.field]
            paths = {fold(v) for v in values}
            if c.op == "^=":
                wanted = [i for u, i in code_of.items()
                          if u in paths or any(u.startswith(p + PATH_SEP) for p in paths)]
            else:
                wanted = [code_of[f] for f in paths if f in code_of]
            raw_match = np.append(np.isin(folded, wanted), False)  # code -1: missing
            return raw_match[raw_codes]
        numbers = self._numbers[c.field]
        with np.errstate(invalid="ignore"):
            if c.op != "=":
                return {">=": numbers >= values[0], ">": numbers > values[0],
                        "<=": numbers <= values[0], "<": numbers < values[0]}[c.op]
            exact = [float(v) for v in values if not isinstance(v, tuple)]
            keep = np.isin(numbers, exact) if exact else np.zeros(self.rows, dtype=bool)
            for v in values:
                if isinstance(v, tuple):
                    inside = ~np.isnan(numbers)
                    if v[0] is not None:
                        inside &= numbers >= v[0]
                    if v[1] is not None:
                        inside &= numbers <= v[1]
                    keep |= inside
            return keep

    def values(self, rows: Sequence[int], names: Sequence[str] | None = None
               ) -> list[dict[str, Any]]:
        """The fields ``names`` (default: all) of catalog rows ``rows``."""
        wanted = self.names if names is None else list(names)
        return [{n: self._shown(n, r) for n in wanted} for r in rows]

    def summary(self) -> list[dict[str, Any]]:
        """Per field: its type and, for text, its most common values (with counts); for
        numbers, the range: what a search page builds its filter controls from (computed
        once)."""
        if self._summary is None:
            self._summary = self._summarise()
        return self._summary

    def _summarise(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name, kind in self.types.items():
            entry: dict[str, Any] = {"name": name, "type": kind}
            if kind == "string":
                codes, raw = self._raw[name]
                folded, code_of = self._folded[name]
                per_raw = np.bincount(codes[codes >= 0], minlength=len(raw))
                per_folded = np.bincount(folded, weights=per_raw, minlength=len(code_of))
                first = {int(f): raw[i] for i, f in reversed(list(enumerate(folded.tolist())))}
                top = np.argsort(-per_folded, kind="stable")[:SUMMARY_VALUES]
                entry["values"] = [{"value": first[int(f)], "count": int(per_folded[f])}
                                   for f in top if per_folded[f] > 0]
                if any(PATH_SEP in v for v in raw):  # paths: their top levels too
                    heads = pd.Series(per_raw, index=[v.split(PATH_SEP)[0].strip()
                                                      for v in raw])
                    groups = heads.groupby(heads.index.map(fold)).agg(["sum"])["sum"]
                    shown = {fold(h): h for h in reversed(list(heads.index))}
                    top_groups = groups.sort_values(ascending=False, kind="stable")
                    entry["groups"] = [{"value": shown[str(g)], "count": int(n)}
                                       for g, n in top_groups[:SUMMARY_VALUES].items() if n > 0]
            elif kind == "number":
                present = self._numbers[name][~np.isnan(self._numbers[name])]
                entry["min"] = float(present.min()) if len(present) else None
                entry["max"] = float(present.max()) if len(present) else None
            entry["missing"] = int((self._raw[name][0] < 0).sum() if name in self._raw
                                   else np.isnan(self._numbers[name]).sum())
            out.append(entry)
        return out
