"""Fake token issuers and the APIs that check their tokens (real TLS, like every fake).

- :func:`github_app`: api.github.com minting installation tokens at
  ``POST /app/installations/{id}/access_tokens`` only for a valid app JWT (RS256 verified
  with ``settings["public_key"]``, ``iss`` = ``settings["app_id"]``, ``exp`` at most ten
  minutes after ``iat`` and not past), and answering ``/repos/...`` only with
  ``Authorization: token <a token it minted>``.
- :func:`oauth_server`: auth.example.com ``POST /token`` (client credentials in Basic auth,
  or a refresh token); ``settings["fail"]`` makes it answer 400 ``invalid_grant``. With
  ``settings["valid_refresh"]`` it rotates refresh tokens and refuses a used one (recorded in
  ``settings["reused"]``); ``settings["revoke_on_reuse"]`` then also revokes every token of
  the grant, as providers with reuse detection do.
- :func:`oauth_api`: api.example.com answering only ``Bearer <a token auth.example.com
  minted>``.
Each records what it minted (``settings["minted"]``) and what it refused.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import secrets
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import FakeUpstream

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_ids = itertools.count(1)


def github_app() -> FakeUpstream:
    fake = FakeUpstream(name="github_app", hostnames=("api.github.com",), app=None)  # type: ignore[arg-type]
    fake.settings.update(minted=[], refused=[], jwts=[])

    async def handle(request: Request) -> Response:
        path, auth = request.url.path, request.headers.get("authorization", "")
        if path.startswith("/app/installations/") and path.endswith("/access_tokens"):
            return _installation_token(fake, path, auth)
        if auth.removeprefix("token ") not in fake.settings["minted"]:
            fake.settings["refused"].append(auth[:12])
            return JSONResponse({"message": "Bad credentials"}, 401)
        parts = path.strip("/").split("/")
        if parts[0] == "repos" and len(parts) == 3:
            owner, name = parts[1], parts[2]
            url = f"https://api.github.com/repos/{owner}/{name}"
            return JSONResponse({"id": 1, "name": name, "full_name": f"{owner}/{name}",
                                 "owner": {"login": owner}, "url": url})  # fmt: skip
        if parts[0] == "repos" and parts[3:] == ["issues"] and request.method == "POST":
            data = await request.json()
            number = next(_ids)
            url = f"https://api.github.com{path}/{number}"
            return JSONResponse({"number": number, "title": data["title"], "state": "open",
                                 "url": url}, 201)  # fmt: skip
        return JSONResponse({"message": "Not Found"}, 404)

    fake.app = Starlette(routes=[Route("/{path:path}", handle, methods=_METHODS)])
    return fake


def _installation_token(fake: FakeUpstream, path: str, auth: str) -> Response:
    token = auth.removeprefix("Bearer ")
    try:
        claims = jwt.decode(
            token, fake.settings["public_key"], algorithms=["RS256"],
            options={"require": ["iat", "exp", "iss"]},
        )  # fmt: skip
    except jwt.PyJWTError as exc:
        fake.settings["refused"].append(f"jwt: {exc}")
        return JSONResponse({"message": "A JSON web token could not be decoded"}, 401)
    if claims["iss"] != fake.settings["app_id"] or claims["exp"] - claims["iat"] > 600:
        fake.settings["refused"].append("jwt claims")
        return JSONResponse({"message": "bad claims"}, 401)
    if path.split("/")[3] != fake.settings["installation_id"]:
        return JSONResponse({"message": "Not Found"}, 404)
    fake.settings["jwts"].append(claims)
    minted = "ghs_" + secrets.token_hex(18)
    fake.settings["minted"].append(minted)
    expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return JSONResponse({"token": minted, "expires_at": expires}, 201)


def oauth_server() -> FakeUpstream:
    fake = FakeUpstream(name="oauth_server", hostnames=("auth.example.com",), app=None)  # type: ignore[arg-type]
    fake.settings.update(minted=[], grants=[], expires_in=3600, fail=False, delay=0.0)

    async def token(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        fake.settings["grants"].append(form)
        if fake.settings["delay"]:
            await asyncio.sleep(fake.settings["delay"])  # keeps concurrent callers waiting
        basic = request.headers.get("authorization", "").removeprefix("Basic ")
        client = base64.b64decode(basic).decode() if basic else ""
        if fake.settings["fail"] or client != fake.settings.get("client", client):
            return JSONResponse({"error": "invalid_grant"}, 400)
        # strict rotation (when `valid_refresh` is set): each refresh token works once
        valid: set[str] | None = fake.settings.get("valid_refresh")
        if form.get("grant_type") == "refresh_token" and valid is not None:
            if form.get("refresh_token") not in valid:
                fake.settings.setdefault("reused", []).append(form.get("refresh_token"))
                if fake.settings.get("revoke_on_reuse"):  # reuse detection: the grant is dead
                    valid.clear()
                return JSONResponse({"error": "invalid_grant"}, 400)
            valid.discard(form["refresh_token"])
        minted = "at_" + secrets.token_hex(16)
        fake.settings["minted"].append(minted)
        answer = {"access_token": minted, "token_type": "Bearer",
                  "expires_in": fake.settings["expires_in"]}  # fmt: skip
        if form.get("grant_type") == "refresh_token":
            answer["refresh_token"] = "rt_" + secrets.token_hex(8)  # rotated
            if valid is not None:
                valid.add(answer["refresh_token"])
        return JSONResponse(answer)

    fake.app = Starlette(routes=[Route("/token", token, methods=["POST"])])
    return fake


def oauth_api(server: FakeUpstream) -> FakeUpstream:
    fake = FakeUpstream(name="oauth_api", hostnames=("api.example.com",), app=None)  # type: ignore[arg-type]
    fake.settings.update(refused=0, seen=[])

    async def handle(request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in server.settings["minted"]:
            fake.settings["refused"] += 1
            return JSONResponse({"error": "invalid_token"}, 401)
        fake.settings["seen"].append(token)
        return JSONResponse({"ok": True, "at": time.time()})

    fake.app = Starlette(routes=[Route("/{path:path}", handle, methods=_METHODS)])
    return fake
