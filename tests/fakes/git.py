"""A fake github.com serving a real git repository over smart HTTP (``git http-backend``).

The repository ``acme/api.git`` holds one commit with a README; ``git clone`` and
``git ls-remote`` of ``https://github.com/acme/api.git`` work against it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.base import FakeUpstream

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Fake",
    "GIT_AUTHOR_EMAIL": "fake@example.com",
    "GIT_COMMITTER_NAME": "Fake",
    "GIT_COMMITTER_EMAIL": "fake@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": tempfile.gettempdir(),
}


def make_repository(root: Path) -> Path:
    """Create ``root/acme/api.git`` (bare) with one commit; return its path."""
    work = root / "work"
    bare = root / "acme" / "api.git"
    env = {**os.environ, **_GIT_ENV}
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, env=env)
    (work / "README.md").write_text("fake repository\n")
    subprocess.run(["git", "-C", str(work), "add", "README.md"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "commit", "-q", "-m", "first"], check=True, env=env)
    bare.parent.mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True, env=env)
    return bare


def _cgi_env(request: Request, root: Path, body: bytes) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_PROJECT_ROOT": str(root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "REQUEST_METHOD": request.method,
        "PATH_INFO": request.url.path,
        "QUERY_STRING": request.url.query,
        "CONTENT_TYPE": request.headers.get("content-type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": "127.0.0.1",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": tempfile.gettempdir(),
    }
    for name in ("content-encoding", "git-protocol"):
        if name in request.headers:
            env["HTTP_" + name.upper().replace("-", "_")] = request.headers[name]
    return env


def _parse_cgi(output: bytes) -> Response:
    sep = b"\r\n\r\n" if b"\r\n\r\n" in output else b"\n\n"
    head, _, content = output.partition(sep)
    status, headers = 200, {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        elif name:
            headers[name.strip()] = value.strip()
    return Response(content, status_code=status, headers=headers)


def git_server() -> FakeUpstream:
    """github.com with ``acme/api.git`` (the repository is created at construction)."""
    root = Path(tempfile.mkdtemp(prefix="tf-fake-git-"))
    make_repository(root)
    fake = FakeUpstream(name="git", hostnames=("github.com",), app=None)  # type: ignore[arg-type]
    fake.settings["root"] = root

    async def backend(request: Request) -> Response:
        body = await request.body()
        proc = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=_cgi_env(request, root, body),
        )
        output, _ = await proc.communicate(body)
        return _parse_cgi(output)

    fake.app = Starlette(routes=[Route("/{path:path}", backend, methods=["GET", "POST"])])
    return fake
