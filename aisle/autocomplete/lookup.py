"""Prefix lookup: exact (marisa trie) and typo-tolerant (rapidfuzz OSA to the key's nearest
start) candidates, ranked, then greedy semantic de-duplication among suggestions that state
the same numbers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import marisa_trie
import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import OSA

from aisle.autocomplete.config import AutocompleteConfig
from aisle.autocomplete.dedup import greedy_dedup
from aisle.autocomplete.store import Artifact, load_artifact
from aisle.autocomplete.suggestions import tiers
from aisle.autocomplete.text import digit_runs, numbers, numbers_kept, prefix_key
from aisle.configs import from_dict
from aisle.errors import AisleError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Suggestion:
    text: str
    popularity: int
    source: str  # "log" or "catalog"
    edits: int  # typo edits between the prefix and the suggestion's start


class Autocomplete:
    """Suggestions for a typed prefix, ranked by tier and popularity (a typo match's
    popularity discounted per edit), then fewer edits, shorter, alphabetical; then greedily
    de-duplicated."""

    SHORT = 2

    def __init__(self, artifact: Artifact, threshold: float | None = None) -> None:
        self.artifact = artifact
        self.manifest = artifact.manifest
        self.config = from_dict(AutocompleteConfig, self.manifest["config"])
        self.threshold = float(self.manifest["threshold"] if threshold is None else threshold)
        # Past 1 turns de-duplication off (the tests look at raw lists so); NaN would do the
        # same silently, and below -1 every suggestion would be a duplicate of the first.
        if not self.threshold >= -1.0:
            raise AisleError(f"threshold is a cosine >= -1 (past 1: no de-duplication), got "
                             f"{self.threshold}")
        # An artifact built before suggestions were cleaned still serves (its format is the
        # same): refusing it would take autocomplete down on upgrade for a cosmetic defect.
        self.cleaned = "cleaning" in self.manifest
        if not self.cleaned:
            log.warning("autocomplete index %s shows the query log as typed (built before "
                        "suggestions were cleaned: case, spacing and misspelt variants); "
                        "rebuild it with `aisle autocomplete build`", self.version)
        frame = artifact.suggestions
        self.texts: list[str] = frame["text"].tolist()
        self.sources: list[str] = frame["source"].tolist()
        self.popularity = frame["popularity"].to_numpy(np.int64)
        self.embeddings = artifact.embeddings
        keys: list[str] = frame["key"].tolist()
        self.trie = marisa_trie.Trie(keys)
        self.trie_row = np.empty(len(keys), dtype=np.int64)
        for row, k in enumerate(keys):
            self.trie_row[self.trie[k]] = row
        self.tier = tiers(frame).to_numpy(np.int64)
        # Suggestions stating different numbers ("24 inch vanity", "36 inch vanity") are
        # never duplicates: rows are de-duplicated only within a group of equal numbers.
        stated: dict[tuple[str, ...], int] = {}
        self.number_group = np.array([stated.setdefault(numbers(t), len(stated))
                                      for t in self.texts], dtype=np.int64)
        self.digit_runs = [digit_runs(k) for k in keys]
        self._score = self.popularity.astype(np.float64)
        # 1-2 character prefixes match thousands of keys: their rows, in rank order, are
        # listed once here rather than enumerated from the trie on every keystroke.
        heads: dict[str, list[int]] = {}
        for row, k in enumerate(keys):
            for n in range(1, min(self.SHORT, len(k)) + 1):
                heads.setdefault(k[:n], []).append(row)
        self._heads = {h: np.array(rows, dtype=np.int64) for h, rows in heads.items()}
        # Typo candidates share the typed first character (blocking keeps lookups ~1 ms).
        by_first: dict[str, list[int]] = {}
        for row, k in enumerate(keys):
            by_first.setdefault(k[0], []).append(row)
        self._blocks = {c: (np.array(rows), [keys[r] for r in rows])
                        for c, rows in by_first.items()}

    @classmethod
    def load(cls, directory: Path, threshold: float | None = None) -> Autocomplete:
        return cls(load_artifact(directory), threshold)

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    def max_edits(self, length: int) -> int:
        c = self.config
        return 0 if length < c.typo1_chars else 1 if length < c.typo2_chars else 2

    def candidates(self, prefix: str) -> tuple[np.ndarray, np.ndarray]:
        """Rows matching ``prefix`` (already a prefix key) and their edit counts."""
        limit = self.max_edits(len(prefix))
        if limit == 0:
            rows = self._exact(prefix)
            word = prefix.rstrip()
            if word != prefix and word in self.trie:
                # A typed space ends the word, and the word itself is a suggestion ("ge "
                # lists "ge", as the typo path's "moen " lists "moen"): keys keep no trailing
                # space. Row order is rank order.
                rows = np.union1d(rows, self.trie_row[self.trie[word]])
            return rows, np.zeros(len(rows), dtype=np.int64)
        empty = np.zeros(0, dtype=np.int64)
        block_rows, block_keys = self._blocks.get(prefix[0], (empty, []))
        if not block_keys:
            return empty, empty
        if prefix.endswith(" "):
            # The last word is complete ("moen " must not match "moenix"): it is compared
            # with each key's words up to the first word end that could match it, never with
            # part of a longer word (the typed space is not a character to substitute).
            typed = prefix.rstrip()
            start = max(len(typed) - limit, 1)
            heads = [k[: end if (end := k.find(" ", start)) >= 0 else len(k)]
                     for k in block_keys]
            dist = self._distance(typed, heads, limit)
        else:
            # The distance to the nearest start of the key, whatever its length, not to its
            # first len(prefix) characters: "glcier" (a letter left out) is 1 edit from
            # "glacier", 2 from "glacie"; "glaciier" 1 from "glacier", 2 from "glacier ".
            typed = prefix
            dist = np.full(len(block_keys), limit + 1, dtype=np.int32)
            for n in range(max(len(typed) - limit, 1), len(typed) + limit + 1):
                np.minimum(dist, self._distance(typed, [k[:n] for k in block_keys], limit),
                           out=dist)
        hit = dist <= limit
        rows, edits = block_rows[hit], dist[hit].astype(np.int64)
        if any(c.isdigit() for c in typed):
            # An edit never changes a number the shopper typed: "14000 btu" is 2 edits from
            # the more popular "10,000 btu", "3/4 inch" 1 from "3/8 inch", and "10 g" 1 from
            # "100 g". ``prefix``, not ``typed``: a typed space finishes a number ("dewalt 2 ").
            keeps = numbers_kept(prefix)
            keep = np.fromiter((keeps(self.digit_runs[r]) for r in rows), dtype=bool,
                               count=len(rows))
            rows, edits = rows[keep], edits[keep]
        return rows, edits

    def _exact(self, prefix: str) -> np.ndarray:
        """Rows whose key starts with ``prefix``, in rank order."""
        if len(prefix) <= self.SHORT:
            return self._heads.get(prefix, np.zeros(0, dtype=np.int64))
        rows = np.fromiter((i for _, i in self.trie.items(prefix)), dtype=np.int64)
        return np.sort(self.trie_row[rows])

    @staticmethod
    def _distance(typed: str, heads: list[str], limit: int) -> np.ndarray:
        return process.cdist([typed], heads, scorer=OSA.distance, score_cutoff=limit,
                             dtype=np.int32, workers=1)[0]

    def suggest(self, prefix: str, k: int = 10) -> list[Suggestion]:
        if k < 1:
            raise AisleError(f"k is {k}; ask for at least one suggestion")
        typed = prefix_key(prefix)
        if not typed.strip():
            return []
        rows, edits = self.candidates(typed)
        if len(rows) == 0:
            return []
        # Tier, then popularity discounted per typo edit, then fewer edits, then the
        # artifact's own order (shorter, alphabetical).
        if edits.any():
            score = self._score[rows] * self.config.typo_discount ** edits
            order = np.lexsort((rows, edits, -score, self.tier[rows]))
        else:  # exact matches only, listed in the artifact's row order: the rank
            order = np.arange(len(rows))
        # One greedy walk down the ranked candidates, stopping at the k-th kept one (it used to
        # re-run from the top on a doubled window each time too few survived).
        kept = greedy_dedup(self.embeddings, self.threshold, k, rows[order],
                            self.number_group)
        return [self._suggestion(int(rows[order[i]]), int(edits[order[i]])) for i in kept]

    def _suggestion(self, row: int, edits: int) -> Suggestion:
        return Suggestion(self.texts[row], int(self.popularity[row]), self.sources[row], edits)
