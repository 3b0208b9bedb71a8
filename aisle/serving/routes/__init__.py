"""The service's routers: search, operations (health, metrics, admin)."""
