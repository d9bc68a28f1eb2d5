"""Anthropic API (api.anthropic.com): messages, token counting, models, message batches,
files.

The credential travels as ``x-api-key``; an agent's ``Authorization`` header is stripped
too (the API accepts OAuth bearer tokens). ``anthropic-version`` is the agent's to keep;
built requests carry ``anthropic-version: 2023-06-01``.
"""

from __future__ import annotations

from agentfirewall.connectors.routes import Route as R
from agentfirewall.connectors.table import RouteConnector

__all__ = ["CONNECTOR"]

B = "/v1/messages/batches"

# fmt: off
_ROUTES = (
    R("POST", "/v1/messages", "anthropic.message.create", "low", "Create a message",
      ("model", "stream", "max_tokens")),
    R("POST", "/v1/messages/count_tokens", "anthropic.message.count_tokens", "low",
      "Count a message's tokens", ("model",)),
    R("POST", "/v1/complete", "anthropic.completion.create", "low", "Legacy text completion",
      ("model", "stream")),
    R("GET", "/v1/models", "anthropic.model.list", "low", "List models"),
    R("GET", "/v1/models/{model_id}", "anthropic.model.get", "low", "Get a model"),
    R("POST", B, "anthropic.batch.create", "medium", "Create a message batch"),
    R("GET", B, "anthropic.batch.list", "low", "List message batches"),
    R("GET", B + "/{batch_id}", "anthropic.batch.get", "low", "Get a message batch"),
    R("POST", B + "/{batch_id}/cancel", "anthropic.batch.cancel", "low", "Cancel a message batch"),
    R("DELETE", B + "/{batch_id}", "anthropic.batch.delete", "medium", "Delete a message batch"),
    R("GET", B + "/{batch_id}/results", "anthropic.batch_result.get", "low",
      "Download batch results"),
    R("POST", "/v1/files", "anthropic.file.upload", "medium", "Upload a file (multipart)"),
    R("GET", "/v1/files", "anthropic.file.list", "low", "List files"),
    R("GET", "/v1/files/{file_id}", "anthropic.file.get", "low", "Get a file's metadata"),
    R("DELETE", "/v1/files/{file_id}", "anthropic.file.delete", "medium", "Delete a file"),
)
# fmt: on

CONNECTOR = RouteConnector(
    name="anthropic",
    description="Anthropic API",
    routes=_ROUTES,
    default_domains=("api.anthropic.com",),
    base_url="https://api.anthropic.com",
    body_limit=1024 * 1024,
    truncated="partial",
    build_headers=(("anthropic-version", "2023-06-01"),),
    auth_scheme="",
    auth_header="x-api-key",
    auth_header_names=("x-api-key", "authorization"),
)
CONNECTOR.notes = __doc__ or ""
#: Which API version and betas read the request: bound to an approval.
CONNECTOR.bound_headers = ("anthropic-version", "anthropic-beta")
