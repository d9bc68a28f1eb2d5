"""Notifications of pending approvals (Slack)."""
