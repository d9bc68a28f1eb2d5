"""`tf connector add` flags of computed credentials (SigV4 keys, GitHub App, OAuth2).

Each set of flags becomes one JSON document sent as the connector's `token` with its
`auth_type` (``aws_sigv4``, ``github_app``, ``oauth2``); the server checks it and vaults
it whole. Secrets may come from the environment instead of the command line (``ps``
shows arguments): ``--secret-access-key-env``, ``--client-secret-env``,
``--refresh-token-env``; ``tf connector add aws`` with no key flags reads
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``. Variables read are removed from the
environment of every ``tf run`` agent.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from agentfirewall_proxy.cli.context import Context
from agentfirewall_proxy.cli.output import CliError

__all__ = ["add_arguments", "computed_credential"]


def add_arguments(add: argparse.ArgumentParser) -> None:
    aws = add.add_argument_group("aws (SigV4 re-signing)")
    aws.add_argument("--access-key-id", metavar="AKIA…", help="the AWS access key id")
    aws.add_argument("--secret-access-key", metavar="S", help="the AWS secret access key")
    aws.add_argument(
        "--secret-access-key-env", metavar="VAR", help="read the secret access key from $VAR"
    )
    aws.add_argument("--role-arn", metavar="ARN", help="assume this role (STS, cached)")
    aws.add_argument("--external-id", metavar="ID", help="the external id --role-arn requires")
    aws.add_argument("--sts-region", metavar="REGION", help="default us-east-1")
    app = add.add_argument_group("github App")
    app.add_argument("--app-id", metavar="ID", help="the GitHub App's id")
    app.add_argument("--private-key", metavar="FILE", help="the app's .pem private key")
    app.add_argument(
        "--installation-id", metavar="ID", help="the installation whose tokens are minted"
    )
    oauth = add.add_argument_group("OAuth2 (client credentials or refresh token)")
    oauth.add_argument("--oauth2-token-url", metavar="URL", help="the token endpoint")
    oauth.add_argument("--client-id", metavar="ID", help="the OAuth2 client id")
    oauth.add_argument("--client-secret", metavar="S", help="the OAuth2 client secret")
    oauth.add_argument(
        "--client-secret-env", metavar="VAR", help="read the client secret from $VAR"
    )
    oauth.add_argument(
        "--refresh-token", metavar="T", help="a refresh token (else: client credentials)"
    )
    oauth.add_argument(
        "--refresh-token-env", metavar="VAR", help="read the refresh token from $VAR"
    )
    oauth.add_argument("--scope", action="append", metavar="SCOPE", help="repeatable")
    oauth.add_argument(
        "--client-auth",
        choices=["basic", "body"],
        help="send the client id and secret as HTTP Basic or in the form body",
    )


def _secret(ctx: Context, value: str | None, env: str | None, holders: list[str]) -> str | None:
    if env:
        found = ctx.env.get(env)
        if not found:
            raise CliError(f"environment variable `{env}` is not set", hint=f"export {env}=...")
        holders.append(env)
        return found
    if value:
        holders.extend(k for k, v in ctx.env.items() if v == value)
    return value


def computed_credential(ctx: Context, kind: str) -> tuple[str, str, list[str]] | None:
    """(auth_type, credential JSON, environment variables that held a secret), or None
    when no computed-credential flag was given."""
    args = ctx.args
    holders: list[str] = []
    doc: dict[str, Any]
    if kind == "aws":
        key_id = args.access_key_id or ctx.env.get("AWS_ACCESS_KEY_ID")
        env = args.secret_access_key_env or (
            None if args.secret_access_key else "AWS_SECRET_ACCESS_KEY"
        )
        if not key_id:
            raise CliError(
                "an `aws` connector needs --access-key-id and --secret-access-key",
                hint="or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY first",
            )
        if not args.access_key_id:
            holders.append("AWS_ACCESS_KEY_ID")
        secret = _secret(ctx, args.secret_access_key, env, holders)
        doc = {"kind": "aws_sigv4", "access_key_id": key_id, "secret_access_key": secret}
        for field, value in (
            ("role_arn", args.role_arn),
            ("external_id", args.external_id),
            ("sts_region", args.sts_region),
        ):
            if value:
                doc[field] = value
        return "aws_sigv4", json.dumps(doc), holders
    if args.app_id or args.private_key or args.installation_id:
        if not (args.app_id and args.private_key and args.installation_id):
            raise CliError("a GitHub App needs --app-id, --private-key FILE and --installation-id")
        try:
            pem = Path(args.private_key).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read the private key `{args.private_key}`: {exc}") from None
        doc = {"kind": "github_app", "app_id": str(args.app_id), "private_key": pem,
               "installation_id": str(args.installation_id)}  # fmt: skip
        if args.base_url:
            doc["api_url"] = str(args.base_url)
        return "github_app", json.dumps(doc), holders
    if args.oauth2_token_url or args.client_id:
        if not (args.oauth2_token_url and args.client_id):
            raise CliError("OAuth2 needs --oauth2-token-url and --client-id")
        secret = _secret(ctx, args.client_secret, args.client_secret_env, holders)
        refresh = _secret(ctx, args.refresh_token, args.refresh_token_env, holders)
        doc = {"kind": "oauth2", "token_url": args.oauth2_token_url, "client_id": args.client_id,
               "grant": "refresh_token" if refresh else "client_credentials"}  # fmt: skip
        for field, value in (
            ("client_secret", secret),
            ("refresh_token", refresh),
            ("scopes", args.scope),
            ("client_auth", args.client_auth),
        ):
            if value:
                doc[field] = value
        return "oauth2", json.dumps(doc), holders
    return None
