"""Server settings: flags, ``AGENTFIREWALL_*`` environment variables, defaults.

The two secrets also accept the names TameFlare users already know:
``SIGNING_KEY_PRIVATE`` (ES256 key, PEM or base64 PEM) and ``SETTINGS_ENCRYPTION_KEY``
(32 bytes, base64 or hex). When unset, the data directory's generated files are used.
Previous vault keys (still opening what they sealed during a rotation) come from
``AGENTFIREWALL_ENCRYPTION_KEYS_PREVIOUS`` (comma-separated) and ``encryption.keyring``;
previous signing keys' public halves (still verifying the audit checkpoints they signed)
from ``AGENTFIREWALL_SIGNING_KEYS_PREVIOUS``.
Those names only: a generic ``ENCRYPTION_KEY`` or ``SIGNING_KEY`` another program left in
the environment is never taken for a key. `describe` names a refused setting the way an
operator sets it (``AGENTFIREWALL_PORT`` / ``--port``), never with its value.
"""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["FLAGS", "LOG_LEVELS", "Settings", "describe"]

MIB = 1024 * 1024
#: uvicorn's log levels (a name it does not know stops it with a KeyError)
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
#: the settings `python -m agentfirewall_server` also takes as a flag
FLAGS = {
    name: "--" + name.replace("_", "-")
    for name in ("host", "port", "database_url", "data_dir", "log_level", "log_format",
                 "otlp_endpoint", "trusted_proxies")
}  # fmt: skip


class Settings(BaseSettings):
    """Everything the control plane needs to start."""

    # hide_input_in_errors: a refused token or key is a secret all the same, and the error
    # goes to stderr and logs (a 20-character admin token would be printed whole)
    model_config = SettingsConfigDict(
        env_prefix="AGENTFIREWALL_", populate_by_name=True, extra="ignore",
        hide_input_in_errors=True,
    )  # fmt: skip

    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=0, le=65535)
    database_url: str | None = None
    data_dir: Path = Path("./.tf")
    signing_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTFIREWALL_SIGNING_KEY", "SIGNING_KEY_PRIVATE"),
    )
    encryption_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTFIREWALL_ENCRYPTION_KEY", "SETTINGS_ENCRYPTION_KEY"),
    )
    #: The bootstrap tokens, from a secret store (several replicas share them); unset, the
    #: data directory's ``admin.token`` / ``gateway.token`` (created on the first start).
    admin_token: SecretStr | None = Field(default=None, min_length=32)
    gateway_token: SecretStr | None = Field(default=None, min_length=32)
    encryption_keys_previous: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTFIREWALL_ENCRYPTION_KEYS_PREVIOUS"),
    )
    #: Public halves of retired signing keys (PEM or base64 PEM, comma-separated): the
    #: audit checkpoints they signed still verify. Never decision tokens, nor the JWKS.
    signing_keys_previous: Annotated[list[str], NoDecode] = Field(default_factory=list)
    vault_rotate_batch: int = Field(default=100, ge=1, le=10_000)
    audit_checkpoint_seconds: float = Field(default=60.0, gt=0)
    audit_anchor_url: str | None = None
    audit_anchor_file: Path | None = None
    approval_timeout_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600)
    #: days a decision's replayable input is kept (``replaystore.py``); the traffic row stays
    decision_input_retention_days: float = Field(default=30.0, gt=0, le=3650)
    rate_limit_per_minute: int = Field(default=60, ge=1)
    webhook_allow_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=MIB, ge=1024)
    slack_api_url: str = "https://slack.com/api"
    #: how often each server looks for pending approvals with no Slack message yet (given
    #: up for a transient reason, created while Slack was down or not set up) to post them
    slack_sweep_seconds: float = Field(default=300.0, gt=0, le=24 * 3600)
    public_url: str | None = None
    execute_timeout_seconds: float = Field(default=10.0, gt=0)
    #: how long a refresh lease lasts (``refreshleases.py``): a holder that dies blocks the
    #: refresh of its connector's rotating grant this long at most
    refresh_lease_seconds: float = Field(default=30.0, ge=1, le=600)
    #: a CA bundle (PEM) trusted besides the default CAs for outbound TLS: executed actions
    #: and token endpoints (a company CA, an internal API)
    upstream_ca: Path | None = None
    sqlite_synchronous: Literal["FULL", "EXTRA", "NORMAL"] = "FULL"
    #: /metrics: a bearer token for scrapers; public only when set so (or by an admin)
    metrics_token: SecretStr | None = None
    metrics_public: bool = False
    metrics_max_label_sets: int = Field(default=1000, ge=1)
    #: sign-in throttling: failures allowed per account and per address before delays
    login_free_failures: int = Field(default=5, ge=1)
    login_max_delay_seconds: int = Field(default=900, ge=1)
    log_level: str = "info"
    #: ``json``: one JSON object per log line, with the trace id (``otel.py``)
    log_format: Literal["text", "json"] = "text"
    #: OTLP/HTTP collector (``http://host:4318``): spans go to ``/v1/traces``; unset, the
    #: standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` is read; neither set, tracing is off
    otlp_endpoint: str | None = None
    #: Load balancers in front (addresses or networks, comma-separated): a request from one
    #: is taken to come from its ``X-Forwarded-For`` client (sign-in throttling, logs) and
    #: scheme. Empty (the default): the header is ignored, since anyone can send it.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("sqlite_synchronous", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lower() not in LOG_LEVELS:
                raise ValueError(f"unknown log level: use one of {', '.join(LOG_LEVELS)}")
            return value.lower()
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: object) -> object:
        found = _items(value)
        if found is None:
            return value
        for item in found:
            if item == "*":  # every address: anyone could name any client
                raise ValueError("`*` would trust anyone's X-Forwarded-For: name the proxies")
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"`{item}` is no address or network: e.g. 10.0.0.5 or 10.0.0.0/24"
                ) from None
        return found

    @field_validator("signing_keys_previous", mode="before")
    @classmethod
    def _public_keys(cls, value: object) -> object:
        found = _items(value)
        return value if found is None else [_public_pem(item) for item in found]

    @field_validator("webhook_allow_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [h.strip().lower() for h in value.split(",") if h.strip()]
        return value

    @model_validator(mode="after")
    def _distinct_tokens(self) -> Settings:
        """Each bootstrap token is one kind of key: the admin, gateway and metrics tokens
        differ, and none starts with ``aaf_`` (an agent key's prefix)."""
        named = [
            (name, value.get_secret_value())
            for name, value in (
                ("admin_token", self.admin_token),
                ("gateway_token", self.gateway_token),
                ("metrics_token", self.metrics_token),
            )
            if value is not None and value.get_secret_value()
        ]
        for i, (name, text) in enumerate(named):
            if text.startswith("aaf_"):
                raise ValueError(f"`{name}` starts with `aaf_`, the prefix of agent keys")
            for other, other_text in named[i + 1 :]:
                if text == other_text:
                    raise ValueError(f"`{name}` and `{other}` are the same: give each its own")
        return self

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        from sqlalchemy.engine import URL  # escapes the path: `?`, `#`, `%` are no syntax

        path = (self.data_dir / "agentfirewall.db").resolve()
        return URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)

    @property
    def base_url(self) -> str:
        """Where people reach this server (used in the setup link and Slack messages)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:  # an IPv6 address is bracketed in a URL
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


def _items(value: object) -> list[str] | None:
    """The items of a comma-separated string (or a list), stripped, none empty; None for
    another type (pydantic then names the expected one)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        return None
    return [str(item).strip() for item in items if str(item).strip()]


def _public_pem(text: str) -> str:
    """The PEM of an ES256 public key given as PEM or base64 PEM (`ValueError` otherwise)."""
    raw = text.encode()
    if b"-----BEGIN" not in raw:
        try:
            raw = base64.b64decode(raw, validate=True)
        except ValueError:
            raise ValueError("a previous signing key is neither PEM nor base64 PEM") from None
    try:
        key = serialization.load_pem_public_key(raw)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError(
            "a previous signing key is not a PEM public key: give its public half "
            "(`openssl pkey -in signing-key.pem -pubout`)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("a previous signing key is not an EC P-256 (ES256) key")
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _names(field: str) -> list[str]:
    """How an operator sets `field`: its flag, then its environment variables."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        envs = [c for c in alias.choices if isinstance(c, str)]
        envs.sort(key=lambda name: name.startswith("AGENTFIREWALL_"))  # the known name first
    else:
        envs = [f"AGENTFIREWALL_{field.upper()}"]
    return ([FLAGS[field]] if field in FLAGS else []) + envs


def _field_of(name: str) -> str | None:
    """The field an error location names: its own name or one of its aliases."""
    if name in Settings.model_fields:
        return name
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and name in alias.choices:
            return field
    return None


def describe(exc: ValidationError) -> str:
    """One line per refused setting, named as the operator sets it, without its value:
    ``--port / AGENTFIREWALL_PORT: Input should be less than or equal to 65535``."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        field = _field_of(str(error["loc"][0])) if error["loc"] else None
        if field is not None:
            lines.append(f"{' / '.join(_names(field))}: {message}")
            continue
        for field in Settings.model_fields:  # a check across fields names them in backticks
            message = message.replace(f"`{field}`", f"`{' / '.join(_names(field))}`")
        lines.append(message)
    return "; ".join(lines)
