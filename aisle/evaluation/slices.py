"""Query slices for reading a comparison by kind of query: what ``aisle report`` breaks the
metrics down by. Each slice is a rule on the query text alone, so any run can be sliced."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from aisle.retrieval.spelling import QuerySpeller, whole_words

# A digit, or a unit word as shoppers type sizes ("5 gal", "half inch pipe"). "in", "foot" and
# "feet" are left to the digit beside them ("1/2 in", "6 foot"): alone they are words ("built
# in microwave", "claw foot tub"), ~100 of homedepot's queries, none of them a size.
_SIZES = re.compile(
    r"\d|\b(?:inch|inches|ft|gal|gallon|gallons|lb|lbs|oz|mm|cm|volt|watt|amp)\b",
    re.IGNORECASE,
)
LONG_WORDS = 5

SIZES = "with digits or sizes"
MISSPELT = "misspelt (the query speller corrects it)"
ONE_WORD = "one word"
LONG = f"long ({LONG_WORDS}+ words)"


def query_slices(
    queries: Mapping[str, str], speller: QuerySpeller | None = None
) -> dict[str, set[str]]:
    """Slice name -> the query ids in it; the misspelt slice only when a speller is given.
    A query can sit in several slices, or in none."""
    out: dict[str, set[str]] = {SIZES: set(), ONE_WORD: set(), LONG: set()}
    if speller is not None:
        out[MISSPELT] = set()
    for qid, text in queries.items():
        words = len(text.split())
        if _SIZES.search(text):
            out[SIZES].add(qid)
        if words == 1:
            out[ONE_WORD].add(qid)
        if words >= LONG_WORDS:
            out[LONG].add(qid)
        if speller is not None and speller.rewrite(text) != text:
            out[MISSPELT].add(qid)
    return out


def tokenizer_words(model_dir: Path) -> frozenset[str]:
    """The words a sentence-transformers model's tokenizer holds whole, read from its
    ``tokenizer.json`` without loading the model (no torch)."""
    from tokenizers import Tokenizer

    return whole_words(Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json")).get_vocab())
