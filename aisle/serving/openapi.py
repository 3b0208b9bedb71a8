"""The OpenAPI document, as the service behaves: what FastAPI derives from the routes and
models, plus what only the config knows (text lengths, the ranges of k and of a batch), what
only the index knows (its modes: dense alone without BM25; its fields: the filters and fields
a search may name, each condition's exact grammar) and the media type of errors (RFC 9457
problem details, serving/errors.py).

The routes check those limits themselves, with messages that say what to fix; the document
declares the same limits, so that a request valid by the schema is one the service accepts.
"""

from __future__ import annotations

import copy
import functools
import sys
import unicodedata
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from aisle.data.fields import FieldType
from aisle.retrieval.filters import MAX_CONDITION_CHARS, MAX_CONDITIONS, MAX_VALUES, field_pattern
from aisle.retrieval.querytext import query_problem
from aisle.serving.config import ServeConfig
from aisle.serving.errors import PROBLEM_JSON
from aisle.serving.params import MODES

# What a prefix must hold: a character Python's str.strip() keeps (not \s: ECMA-262's
# whitespace differs in U+001C-001F, U+0085 and U+FEFF).
NOT_BLANK = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


@functools.cache
def searchable() -> str:
    r"""A pattern for the queries ``query_problem`` (aisle/retrieval/querytext.py) lets
    through: those holding a character that is a letter or digit in Unicode NFKC.

    That is ``\p{L}`` or ``\p{N}``, or one of ~900 symbols NFKC spells with letters (㎏ is
    searched as kg, ℡ as TEL; trade marks are dropped: ``querytext.nfkc``), which are listed
    here as they are found, by asking ``query_problem`` of every character. Not expressed: 17
    letters NFKC turns into combining marks (U+037A, U+FC5E-FC63, U+FE70-FE7E, U+FF9E-FF9F),
    which the service refuses alone.
    """
    extra: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if unicodedata.category(char)[0] in "LNC" or query_problem(char) is not None:
            continue
        if extra and extra[-1][1] == code - 1:
            extra[-1] = (extra[-1][0], code)
        else:
            extra.append((code, code))
    return r"[\p{L}\p{N}" + "".join(_escape(a) if a == b else f"{_escape(a)}-{_escape(b)}"
                                    for a, b in extra) + "]"


def _escape(code: int) -> str:
    return "\\" + chr(code) if chr(code) in "\\[]^-" else chr(code)


def contract(app: FastAPI, config: ServeConfig, fields: dict[str, FieldType],
             modes: Sequence[str] = MODES) -> dict[str, Any]:
    """``app``'s OpenAPI document for an index with stored ``fields`` that searches in
    ``modes`` (built once per index shape: a reload to an index with other fields, or with
    BM25 where the last had none, gets a new document)."""
    shape = (dict(fields), tuple(modes))
    if app.openapi_schema is None or getattr(app.state, "openapi_shape", None) != shape:
        # A copy: FastAPI's document shares dicts with the routes (params.SEARCH_PARAMETERS).
        doc = copy.deepcopy(get_openapi(title=app.title, version=app.version, routes=app.routes))
        declare_limits(doc, config)
        declare_modes(doc, modes)
        declare_fields(doc, fields)
        errors_as_problems(doc)
        app.openapi_schema, app.state.openapi_shape = doc, shape
    return app.openapi_schema


def declare_modes(doc: dict[str, Any], modes: Sequence[str]) -> None:
    """The modes the index searches in (``dense`` alone for an index without BM25, which
    refuses the others with a 422), in what a search may ask and in what it answers."""
    unknown = set(modes) - set(MODES)
    if not modes or unknown:
        raise ValueError(f"modes must be some of {', '.join(MODES)}, got {list(modes)}")
    enum = [m for m in MODES if m in modes]
    _parameter(doc, "/search", "mode")["schema"]["enum"] = enum
    schemas = doc["components"]["schemas"]
    for model in ("SearchRequest", "BatchRequest"):
        _enum_of(schemas[model]["properties"]["mode"])["enum"] = enum
    _enum_of(schemas["SearchResponse"]["properties"]["mode"])["enum"] = enum


def _enum_of(schema: dict[str, Any]) -> dict[str, Any]:
    """The enum-bearing schema in ``schema`` or in its ``anyOf`` (an optional field's)."""
    return schema if "enum" in schema else next(s for s in schema["anyOf"] if "enum" in s)


def declare_fields(doc: dict[str, Any], fields: dict[str, FieldType]) -> None:
    """The filters and fields the index admits: GET's ``filter`` conditions by the grammar
    the parser matches (aisle/retrieval/filters.py), the bodies' ``filters`` as typed JSON,
    and ``fields`` as the index's field names. An index without fields admits none."""
    names = list(fields)
    some = {"enum": names} if names else {}
    condition: dict[str, Any] = {"type": "string", "maxLength": MAX_CONDITION_CHARS}
    if names:  # in an allOf of its own, as the query's pattern (declare_limits says why)
        condition["allOf"] = [{"pattern": "|".join(field_pattern(n, t)
                                                   for n, t in fields.items())}]
    else:
        condition["enum"] = []  # no condition is valid
    none = {} if names else {"maxItems": 0}
    _parameter(doc, "/search", "filter")["schema"].update(
        items=condition, **(none or {"maxItems": MAX_CONDITIONS}))
    _parameter(doc, "/search", "fields")["schema"].update(items={"type": "string", **some},
                                                          **none)
    text = {"type": "string", "minLength": 1, "maxLength": MAX_CONDITION_CHARS,
            "allOf": [{"pattern": NOT_BLANK}]}
    number = {"type": "number"}

    def listed(item: dict[str, Any]) -> dict[str, Any]:
        return {"type": "array", "items": item, "minItems": 1, "maxItems": MAX_VALUES}

    by_type = {
        "string": {"anyOf": [text, listed(text),
                             {"type": "object", "additionalProperties": False,
                              "required": ["under"],
                              "properties": {"under": {"anyOf": [text, listed(text)]}}}]},
        "boolean": {"anyOf": [{"type": "boolean"}, listed({"type": "boolean"})]},
        "number": {"anyOf": [number, listed(number),
                             {"type": "object", "minProperties": 1,
                              "additionalProperties": False,
                              "properties": {k: number for k in ("gte", "gt", "lte", "lt")}}]},
    }
    filters = {"type": "object", "additionalProperties": False, "maxProperties": MAX_CONDITIONS,
               "properties": {n: by_type[t] for n, t in fields.items()}}
    field_list = {"type": "array", "items": {"type": "string", **some}, **none}
    schemas = doc["components"]["schemas"]
    for model in ("SearchRequest", "BatchRequest"):
        properties = schemas[model]["properties"]
        for key, schema in (("filters", filters), ("fields", field_list)):
            description = properties[key].get("description")
            properties[key] = {"anyOf": [schema, {"type": "null"}],
                               **({"description": description} if description else {})}


def declare_limits(doc: dict[str, Any], config: ServeConfig) -> None:
    schemas = doc["components"]["schemas"]
    # Each pattern sits in an allOf of its own: JSON Schema's pattern matches anywhere in the
    # text, and a tool that folds the lengths into it (schemathesis 4 writes "[c]" with
    # maxLength 512 as "^[c]{1,512}$") would demand that every character match.
    schemas["Query"] = {
        "type": "string", "minLength": 1, "maxLength": config.max_query_chars,
        "allOf": [{"pattern": searchable()}],
        "description": "a query: at most max_query_chars characters, some letter or digit",
    }
    query = {"$ref": "#/components/schemas/Query"}
    k = {"minimum": 1, "maximum": config.max_k}
    single = schemas["SearchRequest"]["properties"]
    single["query"] = {**query, "description": single["query"]["description"]}
    _number(single["k"]).update(k)
    batch = schemas["BatchRequest"]["properties"]
    batch["queries"].update(items=query, minItems=1, maxItems=config.max_batch)
    _number(batch["k"]).update(k)
    _parameter(doc, "/search", "q").update(schema=query)
    _parameter(doc, "/search", "k")["schema"].update(k)
    _parameter(doc, "/autocomplete", "prefix")["schema"].update(
        minLength=1, maxLength=config.max_query_chars, allOf=[{"pattern": NOT_BLANK}])
    _parameter(doc, "/autocomplete", "k")["schema"].update(
        minimum=1, maximum=config.autocomplete_max_k)


def errors_as_problems(doc: dict[str, Any]) -> None:
    """Every error response of every operation as ``application/problem+json``; FastAPI's
    own validation-error models go (the service never answers with them)."""
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in doc["paths"].values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if status[0] in "45":
                    response["content"] = problem
    schemas = doc["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def _parameter(doc: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    parameters = doc["paths"][path]["get"]["parameters"]
    parameter: dict[str, Any] = next(p for p in parameters if p["name"] == name)
    return parameter


def _number(schema: dict[str, Any]) -> dict[str, Any]:
    """The integer branch of an optional integer's ``anyOf``."""
    branch: dict[str, Any] = next(s for s in schema.get("anyOf", [schema])
                                  if s.get("type") == "integer")
    return branch
