"""Data layer: canonical schema, CSV loading with validation, parquet preparation, importers
(``data.dataset.load_dataset`` is the entry point)."""
