"""OpenAI API (api.openai.com): chat, responses, embeddings, images, audio, files,
fine-tuning, batches, models, moderations, vector stores.

``model`` becomes a parameter on every JSON request that names one (chat, completions,
responses, embeddings, image generation, speech, fine-tuning, moderations), and ``stream``
on those that can stream (chat, completions, responses, image generation); the output
limits of chat, completions and responses (``max_tokens``, ``max_completion_tokens``,
``max_output_tokens``, and ``n``, from the body) too: what a token budget estimates a
call by when its usage cannot be read (docs/budgets.md); multipart
uploads (files, audio transcription, image edits) are named without reading the body.
``OpenAI-Organization`` becomes ``resource.account`` (two lines naming different
organizations, a list in one line or ``OpenAI_Organization`` refused).
A body past the 1 MiB body limit keeps the members wholly inside it and gets
``risk_hints.body_truncated``.
"""

from __future__ import annotations

from agentfirewall.connectors.routes import Route as R
from agentfirewall.connectors.table import RouteConnector

__all__ = ["CONNECTOR"]

MS = ("model", "stream")
#: A completion's most output: max_* tokens per choice, `n` choices.
LLM = (*MS, "max_tokens:body", "max_completion_tokens:body", "max_output_tokens:body", "n:body")

# fmt: off
_ROUTES = (
    R("POST", "/v1/chat/completions", "openai.chat.create", "low", "Create a chat completion", LLM),
    R("GET", "/v1/chat/completions", "openai.chat.list", "low", "List stored chat completions"),
    R("GET", "/v1/chat/completions/{completion_id}", "openai.chat.get", "low",
      "Get a stored chat completion"),
    R("DELETE", "/v1/chat/completions/{completion_id}", "openai.chat.delete", "medium",
      "Delete a stored chat completion"),
    R("POST", "/v1/completions", "openai.completion.create", "low", "Create a completion", LLM),
    R("POST", "/v1/responses", "openai.response.create", "low", "Create a response", LLM),
    R("GET", "/v1/responses/{response_id}", "openai.response.get", "low", "Get a response"),
    R("DELETE", "/v1/responses/{response_id}", "openai.response.delete", "medium",
      "Delete a response"),
    R("POST", "/v1/responses/{response_id}/cancel", "openai.response.cancel", "low",
      "Cancel a background response"),
    R("POST", "/v1/embeddings", "openai.embedding.create", "low", "Create embeddings", ("model",)),
    R("POST", "/v1/images/generations", "openai.image.generate", "low", "Generate images",
      ("model", "stream", "n", "size")),
    R("POST", "/v1/images/edits", "openai.image.edit", "low", "Edit an image (multipart)"),
    R("POST", "/v1/images/variations", "openai.image.variation", "low",
      "Create image variations (multipart)"),
    R("POST", "/v1/audio/speech", "openai.audio.speech", "low", "Text to speech",
      ("model", "voice")),
    R("POST", "/v1/audio/transcriptions", "openai.audio.transcribe", "low",
      "Transcribe audio (multipart)"),
    R("POST", "/v1/audio/translations", "openai.audio.translate", "low",
      "Translate audio (multipart)"),
    R("POST", "/v1/files", "openai.file.upload", "medium", "Upload a file (multipart)"),
    R("GET", "/v1/files", "openai.file.list", "low", "List files", ("purpose",)),
    R("GET", "/v1/files/{file_id}", "openai.file.get", "low", "Get a file's metadata"),
    R("DELETE", "/v1/files/{file_id}", "openai.file.delete", "medium", "Delete a file"),
    R("GET", "/v1/files/{file_id}/content", "openai.file_content.get", "low",
      "Download a file's content"),
    R("POST", "/v1/uploads", "openai.upload.create", "medium", "Start a multipart upload",
      ("purpose", "bytes")),
    R("POST", "/v1/fine_tuning/jobs", "openai.fine_tuning.create", "medium",
      "Start a fine-tuning job", ("model", "training_file")),
    R("GET", "/v1/fine_tuning/jobs", "openai.fine_tuning.list", "low", "List fine-tuning jobs"),
    R("GET", "/v1/fine_tuning/jobs/{job_id}", "openai.fine_tuning.get", "low",
      "Get a fine-tuning job"),
    R("POST", "/v1/fine_tuning/jobs/{job_id}/cancel", "openai.fine_tuning.cancel", "low",
      "Cancel a fine-tuning job"),
    R("GET", "/v1/fine_tuning/jobs/{job_id}/events", "openai.fine_tuning_event.list", "low",
      "List fine-tuning events"),
    R("POST", "/v1/batches", "openai.batch.create", "medium", "Create a batch",
      ("endpoint", "input_file_id")),
    R("GET", "/v1/batches", "openai.batch.list", "low", "List batches"),
    R("GET", "/v1/batches/{batch_id}", "openai.batch.get", "low", "Get a batch"),
    R("POST", "/v1/batches/{batch_id}/cancel", "openai.batch.cancel", "low", "Cancel a batch"),
    R("GET", "/v1/models", "openai.model.list", "low", "List models"),
    R("GET", "/v1/models/{model}", "openai.model.get", "low", "Get a model"),
    R("DELETE", "/v1/models/{model}", "openai.model.delete", "high", "Delete a fine-tuned model"),
    R("POST", "/v1/moderations", "openai.moderation.create", "low", "Classify content",
      ("model",)),
    R("POST", "/v1/vector_stores", "openai.vector_store.create", "low", "Create a vector store",
      ("name",)),
    R("GET", "/v1/vector_stores", "openai.vector_store.list", "low", "List vector stores"),
    R("GET", "/v1/vector_stores/{vector_store_id}", "openai.vector_store.get", "low",
      "Get a vector store"),
    R("DELETE", "/v1/vector_stores/{vector_store_id}", "openai.vector_store.delete", "medium",
      "Delete a vector store"),
)
# fmt: on

CONNECTOR = RouteConnector(
    name="openai",
    description="OpenAI API",
    routes=_ROUTES,
    default_domains=("api.openai.com",),
    base_url="https://api.openai.com",
    body_limit=1024 * 1024,
    truncated="partial",
    account_headers=("openai-organization",),
)
CONNECTOR.notes = __doc__ or ""
#: Which organization and project pay, which beta API reads the request: bound to an approval.
CONNECTOR.bound_headers = ("openai-organization", "openai-project", "openai-beta")
