"""Evaluation: pure ranking metrics and the BM25 baseline they are measured against."""
