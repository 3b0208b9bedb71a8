"""A query as it is searched: normalised once and spell-corrected once, for every mode and caller.

``aisle search``, ``aisle evaluate``, ``aisle tune-fusion``, training's dev checks and the service
all turn the typed text into a ``PreparedQuery`` here, so each of them searches exactly what the
others would for the same typed text:

1. Unicode NFKC (full-width letters, ligatures and superscripts become the plain characters)
   and every whitespace run one space (``querytext.normalise``);
2. each misspelt word replaced by the catalog word the query speller picks, in the case it was
   typed (``aisle.retrieval.spelling``): "Celing FAN" -> "Ceiling FAN", which is what a shopper
   is shown ("showing results for ...");
3. lower-cased when the query tower ignores case (``querytext.case_blind``), so case variants
   share one cached vector: "ceiling fan".

The text of step 3 is what the query tower embeds, what BM25 analyses and what the service's
cache keys: one decision, both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aisle.retrieval.querytext import normalise
from aisle.retrieval.spelling import QuerySpeller


@dataclass(frozen=True)
class PreparedQuery:
    typed: str  # as received
    shown: str  # normalised and spell-corrected, in the case typed: what the shopper is shown
    text: str  # ``shown``, lower-cased for a case-blind tower: what is embedded and analysed
    corrected: bool  # whether the speller changed a word

    @property
    def correction(self) -> str | None:
        """``shown`` when a word was corrected (for "showing results for ..."), else None."""
        return self.shown if self.corrected else None


class QueryPreparer:
    """Turns typed queries into ``PreparedQuery``; built once per (index, model)."""

    def __init__(self, speller: QuerySpeller | None, fold_case: bool) -> None:
        self.speller = speller
        self.fold_case = fold_case

    def _prepared(self, typed: str, normal: str, shown: str) -> PreparedQuery:
        text = shown.lower() if self.fold_case else shown
        return PreparedQuery(typed, shown, text, shown != normal)

    def prepare(self, typed: str) -> PreparedQuery:
        normal = normalise(typed)
        shown = normal if self.speller is None else self.speller.rewrite(normal)
        return self._prepared(typed, normal, shown)

    def prepare_known(self, typed: str) -> PreparedQuery | None:
        """``prepare`` without a speller search: None when some word's correction is not
        known yet (a latency-bound caller, the service's event loop, leaves that search to
        another thread)."""
        normal = normalise(typed)
        shown = normal if self.speller is None else self.speller.rewrite_known(normal)
        return None if shown is None else self._prepared(typed, normal, shown)

    def prepare_all(self, typed: Sequence[str]) -> list[PreparedQuery]:
        return [self.prepare(t) for t in typed]
