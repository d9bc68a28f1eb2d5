"""TameFlare gateway proxy (data plane) and the `tf` CLI."""
