"""Offline index builds: embed the catalog, write a FAISS index as a self-describing artifact,
publish it as a version. Loading and searching it is ``aisle.retrieval``'s."""
