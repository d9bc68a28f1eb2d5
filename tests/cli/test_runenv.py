"""The child environment of `tf run` (pure parts of agentfirewall_proxy.runenv)."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from agentfirewall_proxy.cli.run_cmd import NODE_PRELOAD
from agentfirewall_proxy.runenv import (
    CA_VARIABLES,
    PLACEHOLDER_KEYS,
    PROXY_VARIABLES,
    RunSpec,
    SupportFiles,
    build_ca_bundle,
    build_child_env,
    control_plane_hosts,
    proxy_url_for,
    read_system_ca,
    write_support_files,
)

FILES = SupportFiles(
    ca_bundle=Path("/state/run/ca-bundle.pem"),
    python_dir=Path("/state/run/python"),
    node_preload=Path("/state/run/node/tf-preload.js"),
)


def spec(**overrides: object) -> RunSpec:
    values: dict[str, object] = {
        "proxy_url": "http://127.0.0.1:8443",
        "agent_name": "DevOps Bot",
        "agent_key": "aaf_live_" + "k" * 32,
        "files": FILES,
    }
    values.update(overrides)
    return RunSpec(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "name", "key", "expected"),
    [
        ("http://127.0.0.1:8443", "Bot", "aaf_x", "http://Bot:aaf_x@127.0.0.1:8443"),
        ("http://127.0.0.1:8443/", "DevOps Bot", "k", "http://DevOps%20Bot:k@127.0.0.1:8443"),
        ("http://localhost:1", "a:b@c/d", "k/+", "http://a%3Ab%40c%2Fd:k%2F%2B@localhost:1"),
        ("http://[::1]:9", "Bot", "k", "http://Bot:k@[::1]:9"),
    ],
)
def test_proxy_url_carries_the_agent_credential(
    url: str, name: str, key: str, expected: str
) -> None:
    assert proxy_url_for(url, name, key) == expected


def test_proxy_url_rejects_a_non_http_url() -> None:
    with pytest.raises(ValueError, match="not an http"):
        proxy_url_for("socks5://127.0.0.1:1080", "Bot", "k")


def test_child_env_routes_everything_through_the_gateway() -> None:
    base = {
        "PATH": "/usr/bin",
        "NO_PROXY": "localhost",
        "no_proxy": "*",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        "HTTP_PROXY": "http://corporate:3128",
    }
    env = build_child_env(base, spec())
    expected_proxy = "http://DevOps%20Bot:aaf_live_" + "k" * 32 + "@127.0.0.1:8443"
    assert {env[v] for v in PROXY_VARIABLES} == {expected_proxy}
    assert {env[v] for v in CA_VARIABLES} == {str(FILES.ca_bundle)}
    assert "NO_PROXY" not in env
    assert "no_proxy" not in env
    assert env["NODE_USE_ENV_PROXY"] == "1"
    assert env["NODE_OPTIONS"] == f"--require {FILES.node_preload}"
    assert env["PYTHONPATH"] == str(FILES.python_dir)
    assert env["PATH"] == "/usr/bin"
    assert base["HTTP_PROXY"] == "http://corporate:3128"  # the input is not mutated


@pytest.mark.parametrize(
    ("server", "hosts"),
    [
        ("http://127.0.0.1:3000", ("127.0.0.1", "localhost")),
        ("http://localhost:3000/api", ("127.0.0.1", "localhost")),
        ("http://[::1]:3000", ("127.0.0.1", "localhost", "::1")),
        ("https://TF.Example.com./", ("tf.example.com",)),
        ("https://10.0.0.5:8443", ("10.0.0.5",)),
        ("not a url", ()),
    ],
)
def test_control_plane_hosts(server: str, hosts: tuple[str, ...]) -> None:
    assert control_plane_hosts(server) == hosts


def test_child_env_exempts_only_the_control_plane() -> None:
    base = {"NO_PROXY": "*", "no_proxy": "internal.corp,10.0.0.0/8"}
    env = build_child_env(base, spec(no_proxy=control_plane_hosts("http://127.0.0.1:41234")))
    assert env["NO_PROXY"] == env["no_proxy"] == "127.0.0.1,localhost"
    remote = build_child_env(base, spec(no_proxy=control_plane_hosts("https://tf.acme.io")))
    assert remote["NO_PROXY"] == remote["no_proxy"] == "tf.acme.io"


def test_child_env_removes_token_env_secrets_and_control_tokens() -> None:
    base = {
        "STRIPE_KEY": "sk_live_real",
        "GITHUB_TOKEN": "ghp_real",
        "OPENAI_API_KEY": "sk-real",
        "TF_ADMIN_TOKEN": "tfa_" + "a" * 40,
        "SETTINGS_ENCRYPTION_KEY": "secret",
    }
    env = build_child_env(base, spec(secret_env=("STRIPE_KEY", "GITHUB_TOKEN")))
    assert "STRIPE_KEY" not in env
    assert "TF_ADMIN_TOKEN" not in env
    assert "SETTINGS_ENCRYPTION_KEY" not in env
    for name, placeholder in PLACEHOLDER_KEYS.items():
        assert env[name] == placeholder
    assert not {"sk_live_real", "ghp_real", "sk-real", "secret"} & set(env.values())


def test_child_env_gives_placeholder_aws_keys_and_drops_real_aws_credentials() -> None:
    base = {
        "AWS_ACCESS_KEY_ID": "AKIAREALREALREAL0000",
        "AWS_SECRET_ACCESS_KEY": "real-aws-secret",
        "AWS_SESSION_TOKEN": "real-session",
        "AWS_PROFILE": "prod",
        "AWS_SHARED_CREDENTIALS_FILE": "/home/me/.aws/credentials",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.2/creds",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    env = build_child_env(base, spec())
    assert env["AWS_ACCESS_KEY_ID"] == "AKIATAMEFLAREPLACEHOLDER"
    assert env["AWS_SECRET_ACCESS_KEY"] == PLACEHOLDER_KEYS["AWS_SECRET_ACCESS_KEY"]
    assert env["AWS_CA_BUNDLE"] == str(FILES.ca_bundle)
    assert env["AWS_DEFAULT_REGION"] == "eu-west-1"  # not a credential: kept
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI"):  # fmt: skip
        assert name not in env
    assert not {"real-aws-secret", "real-session"} & set(env.values())


def test_child_env_keeps_existing_node_options_and_pythonpath() -> None:
    base = {"NODE_OPTIONS": "--max-old-space-size=512", "PYTHONPATH": "/src"}
    env = build_child_env(base, spec())
    assert env["NODE_OPTIONS"] == f"--require {FILES.node_preload} --max-old-space-size=512"
    assert env["PYTHONPATH"] == os.pathsep.join([str(FILES.python_dir), "/src"])
    again = build_child_env(env, spec())
    assert again["NODE_OPTIONS"] == env["NODE_OPTIONS"]


def test_the_node_preload_loads_before_the_users_own() -> None:
    """Node loads `--require` preloads in order: a user's that makes a request while loading
    must find the agents routed, also when an earlier `tf run` put the preload after it."""
    preload = f"--require {FILES.node_preload}"
    for mine in ("--require /src/early.js", f"--require /src/early.js {preload}"):
        env = build_child_env({"NODE_OPTIONS": mine}, spec())
        assert env["NODE_OPTIONS"] == f"{preload} --require /src/early.js"


def test_node_preload_path_with_spaces_is_quoted() -> None:
    files = SupportFiles(Path("/a b/ca.pem"), Path("/a b/py"), Path("/a b/tf-preload.js"))
    env = build_child_env({}, spec(files=files))
    assert env["NODE_OPTIONS"] == '--require "/a b/tf-preload.js"'


def test_bundle_puts_the_gateway_ca_first_and_dedupes() -> None:
    gateway = trustme.CA().cert_pem.bytes().decode()
    system = [trustme.CA().cert_pem.bytes().decode() for _ in range(2)]
    bundle = build_ca_bundle([system[0], system[1], system[0] + gateway], gateway)
    assert bundle.startswith(gateway.strip())
    assert bundle.count("BEGIN CERTIFICATE") == 3


def test_bundle_needs_a_gateway_certificate() -> None:
    with pytest.raises(ValueError, match="no PEM certificate"):
        build_ca_bundle([], "not a certificate")


def test_system_ca_is_read_from_the_machine() -> None:
    texts = read_system_ca({})
    assert texts
    assert all("BEGIN CERTIFICATE" in t for t in texts)


def test_support_files_are_private_and_sitecustomize_sets_stripe_bundle(tmp_path: Path) -> None:
    gateway = trustme.CA().cert_pem.bytes().decode()
    files = write_support_files(tmp_path / "run", build_ca_bundle([], gateway), "// js\n")
    for path in (files.ca_bundle, files.node_preload, files.python_dir / "sitecustomize.py"):
        assert path.stat().st_mode & 0o077 == 0
    env = dict(os.environ, PYTHONPATH=str(files.python_dir), TF_CA_BUNDLE=str(files.ca_bundle))
    out = subprocess.run(
        [sys.executable, "-c", "import stripe; print(stripe.ca_bundle_path)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(files.ca_bundle)


def test_sitecustomize_chains_to_the_one_it_shadows(tmp_path: Path) -> None:
    files = write_support_files(tmp_path / "run", trustme.CA().cert_pem.bytes().decode(), "")
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import builtins\nbuiltins.TF_CHAINED = True\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(files.python_dir), str(other)]))
    out = subprocess.run(
        [sys.executable, "-c", "import builtins; print(getattr(builtins, 'TF_CHAINED', False))"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "True"


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.node
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_preload_sends_no_proxy_hosts_direct(local_server: int, tmp_path: Path) -> None:
    """Node's fetch (preload fallback, no undici package) reaches a NO_PROXY host directly;
    the "gateway" here is a socket that never answers, so a proxied call would time out."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        proxy = f"http://Bot:k@127.0.0.1:{silent.getsockname()[1]}"
        script = (
            f"fetch('http://127.0.0.1:{local_server}/', {{signal: AbortSignal.timeout(5000)}})"
            ".then(async r => console.log(r.status, await r.text()))"
            ".catch(e => { console.log('error', String(e)); process.exit(3); });"
        )
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.update(HTTP_PROXY=proxy, HTTPS_PROXY=proxy, NO_PROXY="127.0.0.1,localhost")
        env["NODE_OPTIONS"] = f"--require {NODE_PRELOAD}"
        done = subprocess.run(
            ["node", "-e", script], env=env, cwd=tmp_path, capture_output=True, text=True,
            timeout=30,
        )  # fmt: skip
        assert done.stdout.strip() == "200 hello", done.stderr[-2000:]
        env.update(NO_PROXY="example.com")
        proxied = subprocess.run(
            ["node", "-e", script], env=env, cwd=tmp_path, capture_output=True, text=True,
            timeout=30,
        )  # fmt: skip
        assert proxied.returncode == 3, proxied.stdout


@pytest.mark.node
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_preload_sends_http_requests_to_the_gateway_as_proxy_requests(
    tmp_path: Path,
) -> None:
    """An http:// fetch reaches the gateway as a proxy request (the target URL in the
    request line, its Host, the agent's Proxy-Authorization), as curl and Python send it:
    through a CONNECT tunnel it carried plain HTTP where the gateway expects TLS, and every
    http:// fetch under `tf run` failed with `other side closed`."""
    seen: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as gateway:

        def answer() -> None:
            client, _ = gateway.accept()
            with client:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += client.recv(4096)
                seen.append(head)
                client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                               b"Connection: close\r\n\r\nhello")  # fmt: skip

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        proxy = f"http://Bot:k3y@127.0.0.1:{gateway.getsockname()[1]}"
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.update(HTTP_PROXY=proxy, HTTPS_PROXY=proxy, NODE_OPTIONS=f"--require {NODE_PRELOAD}")
        script = (
            "fetch('http://echo.test:8080/x?y=1', {headers: {Host: 'evil.test', 'X-A': 'b'}})"
            ".then(async r => console.log(r.status, await r.text()))"
            ".catch(e => { console.log('error', e.cause || e); process.exit(3); });"
        )
        done = subprocess.run(["node", "-e", script], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        thread.join(10)
    assert done.stdout.strip() == "200 hello", done.stdout + done.stderr[-2000:]
    lines = seen[0].decode("latin-1").split("\r\n")
    assert lines[0] == "GET http://echo.test:8080/x?y=1 HTTP/1.1"
    headers = [line.split(": ", 1) for line in lines[1:] if line]
    assert [v for n, v in headers if n.lower() == "host"] == ["echo.test:8080"]
    assert [v for n, v in headers if n.lower() == "proxy-authorization"] == [
        "Basic " + base64.b64encode(b"Bot:k3y").decode()
    ]
    assert ["X-A", "b"] in headers


def test_two_runs_writing_the_support_files_at_once_both_finish(tmp_path: Path) -> None:
    """Two `tf run` started together in one project write the same files: each write is a
    temporary file of its own renamed over the target (a shared `.tmp` name made one of
    them die with FileNotFoundError), and nothing temporary is left behind."""
    from concurrent.futures import ThreadPoolExecutor

    run_dir = tmp_path / "run"

    def write(n: int) -> SupportFiles:
        return write_support_files(run_dir, f"bundle {n}\n", "// preload\n", env={"HOME": "/x"})

    for _ in range(20):
        with ThreadPoolExecutor(8) as pool:
            written = list(pool.map(write, range(8)))
        assert written[0].ca_bundle.read_text() in {f"bundle {n}\n" for n in range(8)}
    assert oct(written[0].ca_bundle.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in run_dir.rglob("*.tmp")] == []


def test_no_secret_setting_of_the_server_reaches_an_agent() -> None:
    """Every setting of the control plane that holds a secret (a token, a key, a database
    URL with its password), under each environment name it is read from, is held back:
    the metrics token, the previous vault keys and the database URL were not."""
    from pydantic import SecretStr

    from agentfirewall_proxy.runenv import CONTROL_SECRETS
    from agentfirewall_server.settings import Settings, _names

    secret = [name for name, info in Settings.model_fields.items()
              if SecretStr in getattr(info.annotation, "__args__", (info.annotation,))]  # fmt: skip
    assert {"admin_token", "gateway_token", "metrics_token", "encryption_keys_previous"} <= set(
        secret
    )
    for field in [*secret, "database_url"]:
        for env in _names(field):
            if not env.startswith("--"):
                assert env in CONTROL_SECRETS, (field, env)
