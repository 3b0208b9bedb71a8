"""Query and product towers over sentence-transformers encoders (``towers.model``), their
configuration (``towers.config``) and the one product-text function (``towers.text``).

Light on purpose: importing a config or running ``aisle --help`` must not load torch."""
