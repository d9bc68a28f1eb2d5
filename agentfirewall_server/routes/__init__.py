"""The HTTP routes, one module per resource (docs/api.md)."""
