"""TameFlare control plane: API, store, vault, approvals, audit, dashboard."""
