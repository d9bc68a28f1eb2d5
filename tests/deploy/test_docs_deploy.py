"""docs/deploy.md against the product, followed as a newcomer would follow it.

Offline: each file, environment variable, flag and command the page shows exists and does
what it says (its `python -c` lines run, and what they print is what the server takes);
each variable, volume path, port and probe of ``deploy/compose.yaml`` and
``deploy/kubernetes/`` is one the server or the gateway reads, uses, listens on or serves.

Live, without Docker: the compose file's own command lines run with the environment it
gives them (every value made by the page's commands): a replica answers its healthcheck,
says how to create the owner, the page's `curl` creates one and its `tf status` works. On
PostgreSQL (``AGENTFIREWALL_TEST_POSTGRES_URL``, as in CI) both replicas start at once on
one database, keep nothing but their lock file, share people and gateways, the gateway's
compose command opens its listener, and ``/api/health`` answers 503 once the database is
gone. Every process listens on 127.0.0.1 (the manifests' `0.0.0.0` is the one change).
"""

from __future__ import annotations

import inspect
import os
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

import agentfirewall.telemetry
import agentfirewall_proxy.main
import agentfirewall_proxy.options
from agentfirewall.tokens import load_signing_key
from agentfirewall_proxy.certs import CA_CERT_FILE, CA_KEY_FILE
from agentfirewall_server.datalock import LOCK_FILE
from agentfirewall_server.main import _parser as server_parser
from agentfirewall_server.main import parse_settings
from agentfirewall_server.settings import Settings
from agentfirewall_server.vault import parse_key
from tests.deploy.test_manifests import (
    DEPLOY,
    PRODUCT_COMMANDS,
    compose,
    k8s_documents,
)
from tests.server.conftest import PG_ENV, _admin_url

REPO = DEPLOY.parent
PAGE = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
ENV_EXAMPLE = DEPLOY / ".env.example"
_VAR = re.compile(r"\$\{(\w+)(?::?[?-][^}]*)?\}")
#: what a test process must not pass on to the product it starts
_FOREIGN = ("AGENTFIREWALL_", "OTEL_", "TF_", "SIGNING_KEY", "SETTINGS_ENCRYPTION")
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
#: the kinds of Kubernetes objects that run pods
_WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet")


def _blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", PAGE, re.DOTALL)


def _section(title: str) -> str:
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", PAGE, re.DOTALL | re.MULTILINE)
    assert found is not None, title
    return found.group(1)


def _env_example_names() -> set[str]:
    lines = ENV_EXAMPLE.read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")}


def _names_in(source: str, prefix: str) -> set[str]:
    return set(re.findall(rf"\"({prefix}[A-Z0-9_]+)\"", source))


def _server_reads() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"AGENTFIREWALL_{name.upper()}")
        names.update(
            c for c in getattr(field.validation_alias, "choices", ()) if isinstance(c, str)
        )
    return names | _names_in(inspect.getsource(agentfirewall.telemetry), "OTEL_")


def _gateway_reads() -> set[str]:
    sources = [
        inspect.getsource(m) for m in (agentfirewall_proxy.main, agentfirewall_proxy.options)
    ]
    gateway = {n for s in sources for n in re.findall(r"environ\.get\(\"([A-Z0-9_]+)\"", s)}
    return gateway | _names_in(inspect.getsource(agentfirewall.telemetry), "OTEL_")


def _cli_reads() -> set[str]:
    cli = REPO / "agentfirewall_proxy" / "cli"
    return {n for path in cli.glob("*.py") for n in _names_in(path.read_text(), "TF_")}


def _otel_sdk_reads() -> set[str]:
    variables = pytest.importorskip("opentelemetry.sdk.environment_variables")
    return {name for name in dir(variables) if name.startswith("OTEL_")}


# -- the page's commands -----------------------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN) and k not in _PROXIES}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def _doc_python(block: str) -> list[tuple[str, str | None]]:
    """The `python -c "..."` lines of a block: (code, the variable its comment names)."""
    found = []
    for line in block.splitlines():
        if line.startswith("python -c "):
            words = shlex.split(line, comments=True)
            comment = re.search(r"#\s*(\w+)\s*$", line)
            found.append((words[2], comment.group(1) if comment else None))
    return found


def _run_python(code: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=_clean_env(),
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """deploy/.env as the page fills it in: each value printed by the page's command."""
    compose_block = next(b for b in _blocks() if "docker compose" in b)
    where = tmp_path_factory.mktemp("made")
    return {name: _run_python(code, where) for code, name in _doc_python(compose_block) if name}


def _interpolate(value: str, env: dict[str, str]) -> str:
    return _VAR.sub(lambda m: env[m.group(1)], value)


def _compose_service(name: str, made: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    service = compose()["services"][name]
    env = {k: _interpolate(str(v), made) for k, v in service.get("environment", {}).items()}
    return [str(a) for a in service["command"]], env


def test_the_pages_commands_make_every_value_the_server_takes(
    made: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert set(made) == _env_example_names()  # every line of deploy/.env, and only those
    argv, env = _compose_service("control-plane-a", made)
    url = urlsplit(env["AGENTFIREWALL_DATABASE_URL"])  # the password is safe in a URL
    assert (url.hostname, url.port, url.password) == ("postgres", 5432, made["POSTGRES_PASSWORD"])
    load_signing_key(env["SIGNING_KEY_PRIVATE"])
    assert len(parse_key(env["SETTINGS_ENCRYPTION_KEY"])) == 32
    for name in os.environ:
        if name.startswith(_FOREIGN):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = parse_settings(server_parser().parse_args(argv[3:]))
    assert settings.database_url == env["AGENTFIREWALL_DATABASE_URL"]
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == made["TAMEFLARE_ADMIN_TOKEN"]


def test_the_kubernetes_commands_fill_what_the_manifests_read(tmp_path: Path) -> None:
    block = next(b for b in _blocks() if "tameflare-gateway-ca" in b)
    [(code, _)] = _doc_python(block)
    _run_python(code, tmp_path)  # the gateways' CA, as the page makes it
    key = tmp_path / "ca" / CA_KEY_FILE
    assert (tmp_path / "ca" / CA_CERT_FILE).exists()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    secrets_in = _secrets()
    commands = " ".join(_blocks()).replace("\\\n", " ")
    made_by_page: dict[tuple[str, str], set[str]] = {}
    for found in re.finditer(
        r"kubectl -n (\S+) create (?:secret generic|configmap) (\S+)(.*)", commands
    ):
        keys = {k.split("=")[0] for k in re.findall(r"--from-literal=(\S+)", found.group(3))}
        keys |= {Path(f).name for f in re.findall(r"--from-file=(\S+)", found.group(3))}
        made_by_page[(found.group(1), found.group(2))] = keys
    for where in (("tameflare", "tameflare-keys"), ("tameflare", "tameflare-gateway-ca"),
                  ("agents", "support-bot-key")):  # fmt: skip
        assert made_by_page[where] == secrets_in[where], where
    # the agents' CA bundle: the ConfigMap the example mounts, the file its variables name
    agent = dict(k8s_documents())["agent-example.yaml:Deployment/support-bot"]
    pod = agent["spec"]["template"]["spec"]
    [volume] = pod["volumes"]
    [mount] = pod["containers"][0]["volumeMounts"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert made_by_page[("agents", volume["configMap"]["name"])] == {"ca-bundle.pem"}
    assert (
        env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"] == f"{mount['mountPath']}/ca-bundle.pem"
    )


def test_every_file_the_page_names_exists() -> None:
    created = set(re.findall(r"^cp \S+ (\S+)", PAGE, re.MULTILINE))  # made by the reader
    paths = re.findall(r"\b(?:deploy|tests|benchmarks|docs)/[\w./-]+", PAGE)
    named = {p.rstrip(".,:;)") for p in paths}
    missing = {p for p in named - created if not (REPO / p).exists()}
    assert missing == set()
    table = set(re.findall(r"^\| `([\w-]+\.yaml)` \|", _section("Kubernetes"), re.MULTILINE))
    assert table == {p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")}


def test_every_variable_the_page_names_is_read_by_what_it_says() -> None:
    readers = {
        "server": _server_reads(),
        "gateway": _gateway_reads(),
        "deploy/.env": _env_example_names(),
        "tf": _cli_reads(),
        "OpenTelemetry SDK": _otel_sdk_reads(),
        "tests": {PG_ENV},
        "the reader's shell (an agent's key)": {"AGENT_KEY"},
    }
    named = set(re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", PAGE))
    unread = {name for name in named if not any(name in names for names in readers.values())}
    assert unread == set()
    # the commands' shell variables: deploy/.env's (`set -a; . deploy/.env`), or the agent's
    shell = set(re.findall(r"\$([A-Z][A-Z0-9_]*)", PAGE))
    assert shell <= _env_example_names() | {"AGENT_KEY"}
    # those the page says the server (or "the control plane and the gateways") read
    for name in ("SIGNING_KEY_PRIVATE", "SETTINGS_ENCRYPTION_KEY", "AGENTFIREWALL_ADMIN_TOKEN",
                 "AGENTFIREWALL_DATABASE_URL", "AGENTFIREWALL_LOGIN_MAX_DELAY_SECONDS",
                 "AGENTFIREWALL_LOGIN_FREE_FAILURES", "OTEL_EXPORTER_OTLP_ENDPOINT"):  # fmt: skip
        assert name in readers["server"], name
    for name in ("AGENTFIREWALL_GATEWAY_TOKEN", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        assert name in readers["gateway"], name


def _flags(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", help_text))


def test_every_flag_the_page_names_is_taken(capsys: pytest.CaptureFixture[str]) -> None:
    server = _flags(server_parser().format_help())
    with pytest.raises(SystemExit):
        agentfirewall_proxy.main.parse_args(["--help"])
    gateway = _flags(capsys.readouterr().out)
    other_tools = ("docker ", "kubectl ", "curl ", "cat ", "cp ")
    lines = PAGE.replace("\\\n", " ").splitlines()
    flags = _flags("\n".join(line for line in lines if not line.startswith(other_tools)))
    assert flags - server - gateway == set()
    for flag in ("--log-format", "--otlp-endpoint"):  # "both", says the page
        assert flag in server
        assert flag in gateway
    assert {"--control-plane", "--ca-dir"} <= gateway


# -- the manifests against the product ---------------------------------------------------


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_every_variable_of_the_products_containers_is_one_it_reads() -> None:
    reads = {"server": _server_reads(), "gateway": _gateway_reads()}
    for command in PRODUCT_COMMANDS:
        unread = set(command.env) - reads[str(command.kind)]
        assert unread == set(), f"{command.where}: the product does not read {unread}"


def test_compose_volumes_ports_and_healthchecks_are_the_commands_own() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if not str(service.get("image", "")).startswith("tameflare:"):
            continue
        argv = [str(a) for a in service["command"]]
        targets = {v.split(":")[1] for v in service.get("volumes", [])}
        check = " ".join(service["healthcheck"]["test"])
        published = {int(p.rsplit(":", 1)[1]) for p in service.get("ports", [])}
        if "agentfirewall_server" in argv:
            assert _flag(argv, "--data-dir") in targets, name
            probe = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]+)", check)
            assert probe is not None, check
            assert (probe.group(1), probe.group(2)) == (_flag(argv, "--port"), "/api/health")
        else:
            assert _flag(argv, "--ca-dir") in targets, name
            port = _flag(argv, "--listen").rsplit(":", 1)[1]
            assert f"('127.0.0.1', {port})" in check, check
            assert published <= {int(port)}, name
    # b waits for a: two replicas migrating an empty database at once race
    after = services["control-plane-b"]["depends_on"]
    assert after["control-plane-a"] == {"condition": "service_healthy"}
    assert after["postgres"] == {"condition": "service_healthy"}
    # the page's addresses on the host are the ones compose publishes
    host_ports = {int(p.split(":")[1]) for s in services.values() for p in s.get("ports", [])}
    page = set(map(int, re.findall(r"127\.0\.0\.1:(\d+)", _section("Docker Compose (one host)"))))
    assert page == host_ports == {3000, 8443, 8444}


def test_the_image_makes_the_paths_and_user_the_manifests_use() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    made = re.search(r"install -d -o (\d+) -g (\d+) -m 0700 (.+)$", dockerfile, re.MULTILINE)
    assert made is not None
    uid, directories = int(made.group(1)), set(made.group(3).split())
    assert re.search(rf"^USER {uid}:{made.group(2)}$", dockerfile, re.MULTILINE)
    assert set(re.findall(r"^EXPOSE (.+)$", dockerfile, re.MULTILINE)[0].split()) == {
        "3000",
        "8443",
    }
    for command in PRODUCT_COMMANDS:
        path = _flag(command.argv, "--data-dir" if command.kind == "server" else "--ca-dir")
        assert path in directories, command.where
    for _, doc in k8s_documents():
        pod = doc["spec"]["template"]["spec"] if doc["kind"] in _WORKLOADS else None
        if pod is not None and any(c["image"].startswith("tameflare:") for c in pod["containers"]
                                   + pod.get("initContainers", [])):  # fmt: skip
            assert pod["securityContext"]["runAsUser"] == uid


def _port_of(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(int(p["containerPort"]) for p in container["ports"] if p["name"] == port)


def _secrets() -> dict[tuple[str, str], set[str]]:
    return {
        (doc["metadata"]["namespace"], doc["metadata"]["name"]): set(doc["stringData"])
        for _, doc in k8s_documents()
        if doc["kind"] == "Secret"
    }


def test_kubernetes_volumes_and_probes_are_the_commands_own() -> None:
    secrets_in = _secrets()
    for where, doc in k8s_documents():
        if doc["kind"] not in _WORKLOADS:
            continue
        pod = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for claim in doc["spec"].get("volumeClaimTemplates", []):  # a volume per replica
            volumes[claim["metadata"]["name"]] = {"persistentVolumeClaim": claim["spec"]}
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            if not container["image"].startswith("tameflare:"):
                continue
            argv = [*container["command"], *container["args"]]
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert "emptyDir" in mounts["/tmp"], where
            probes = [container[p] for p in ("readinessProbe", "livenessProbe", "startupProbe")
                      if p in container]  # fmt: skip
            assert probes, where
            if "agentfirewall_server" in argv:
                # the data directory keeps the audit checkpoints: it outlives the pod
                data = mounts[_flag(argv, "--data-dir")]
                assert "persistentVolumeClaim" in data, where
                assert data["persistentVolumeClaim"]["accessModes"] == ["ReadWriteOnce"], where
                for probe in probes:
                    assert probe["httpGet"]["path"] == "/api/health"
                    port = _port_of(container, probe["httpGet"]["port"])
                    assert port == int(_flag(argv, "--port")), where
            else:
                ca = mounts[_flag(argv, "--ca-dir")]["secret"]
                held = secrets_in[(doc["metadata"]["namespace"], ca["secretName"])]
                keys = {i["path"] for i in ca["items"]} if "items" in ca else held
                assert {CA_CERT_FILE, CA_KEY_FILE} <= keys & held, where
                listen = int(_flag(argv, "--listen").rsplit(":", 1)[1])
                for probe in probes:
                    assert _port_of(container, probe["tcpSocket"]["port"]) == listen, where


# -- running the compose command lines ---------------------------------------------------


class Process:
    """A product process started from a manifest's command line, its output in a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                            env=env, cwd=cwd)  # fmt: skip

    def text(self) -> str:
        return self.log.read_text("utf-8", "replace")

    def wait_for(self, pattern: str, seconds: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if found := re.search(pattern, self.text()):
                return found
            assert self.process.poll() is None, f"exited:\n{self.text()}"
            time.sleep(0.05)
        raise AssertionError(f"no `{pattern}` within {seconds} s:\n{self.text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)


def _local(argv: list[str], changes: dict[str, str]) -> list[str]:
    """A manifest's command line run here: this Python, and `changes` to some flags' values."""
    out = [sys.executable, *argv[1:]]
    for flag, value in changes.items():
        out[out.index(flag) + 1] = value
    return out


def _start_replica(
    name: str, made: dict[str, str], database_url: str, tmp: Path, port: int = 0
) -> Process:
    argv, env = _compose_service(name, made)
    env["AGENTFIREWALL_DATABASE_URL"] = database_url
    changes = {"--host": "127.0.0.1", "--port": str(port), "--data-dir": str(tmp / name)}
    local = _local(argv, changes)
    return Process(local, _clean_env(**env), tmp / f"{name}.log", tmp)


def _port(replica: Process) -> int:
    return int(replica.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1))


def _healthcheck(service: str, port: int) -> int:
    """The compose healthcheck of `service`, run here against `port`."""
    test = [str(t) for t in compose()["services"][service]["healthcheck"]["test"]]
    assert test[:3] == ["CMD", "python", "-c"]
    code = re.sub(r"(127\.0\.0\.1'?[:,] ?)(3000|8443)", rf"\g<1>{port}", test[3])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30,
                          check=False, env=_clean_env())  # fmt: skip
    return done.returncode


def _until(check: Any, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {check}")


def _create_owner_as_printed(replica: Process, port: int, admin_token: str) -> None:
    """The `curl` the start printed, run as a reader would (placeholders filled in)."""
    # printed before the server listens: in the log once the healthcheck passed
    found = re.search(r"curl -X POST \S+/api/v1/users [^\n]*", replica.text())
    assert found is not None, replica.text()
    line = found.group(0)
    line = line.replace("<admin token>", admin_token).replace(
        "<8 or more characters>", "a-long-pass"
    )
    words = shlex.split(line.replace("http://127.0.0.1:3000", f"http://127.0.0.1:{port}"))
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    done = subprocess.run([*words, "--silent", "--fail-with-body"], capture_output=True,
                          text=True, timeout=30, check=False, env=_clean_env())  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"role":"owner"' in done.stdout.replace(" ", "")


def _sign_in(port: int) -> int:
    answer = httpx.post(f"http://127.0.0.1:{port}/api/v1/auth/login", timeout=30,
                        json={"email": "you@example.com", "password": "a-long-pass"})  # fmt: skip
    return answer.status_code


def test_a_replica_runs_with_the_compose_environment(made: dict[str, str], tmp_path: Path) -> None:
    """On SQLite (the compose database URL is the one change): the healthcheck passes, the
    start says how to make the owner, the page's `tf status` works, and sign-ins are
    counted per the address the replica sees (it reads no `X-Forwarded-For`)."""
    replica = _start_replica("control-plane-a", made, f"sqlite:///{tmp_path / 'tf.db'}", tmp_path)
    try:
        port = _port(replica)
        _until(lambda: _healthcheck("control-plane-a", port) == 0)
        assert _healthcheck("control-plane-a", _free_port()) != 0  # the check does check
        admin = made["TAMEFLARE_ADMIN_TOKEN"]
        _create_owner_as_printed(replica, port, admin)
        assert _sign_in(port) == 200
        status_line = next(line for line in PAGE.splitlines() if line.startswith("TF_SERVER="))
        words = shlex.split(
            status_line.replace("<admin token>", admin).replace(":3000", f":{port}")
        )
        env = dict(w.split("=", 1) for w in words if "=" in w)
        assert words[2:] == ["tf", "status"]
        done = subprocess.run([sys.executable, "-m", "agentfirewall_proxy.cli", "status"],
                              env=_clean_env(**env), cwd=tmp_path, capture_output=True,
                              text=True, timeout=90, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"server: http://127.0.0.1:{port}" in done.stdout
        refused = httpx.post(f"http://127.0.0.1:{port}/api/v1/auth/login", timeout=30,
                             json={"email": "you@example.com", "password": "wrong-pass"},
                             headers={"X-Forwarded-For": "198.51.100.7"})  # fmt: skip
        assert refused.status_code == 401
        found = httpx.get(f"http://127.0.0.1:{port}/api/v1/audit",
                          params={"event_type": "user.login_failed"},
                          headers={"Authorization": f"Bearer {admin}"}, timeout=30)  # fmt: skip
        assert [e["data"]["address"] for e in found.json()["events"]] == ["127.0.0.1"]
    finally:
        replica.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def postgres_database() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database: (its URL, its name)."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL not available: set {PG_ENV} (run `source .ci/postgres.sh`)")
    import psycopg

    name = f"af_deploy_{secrets.token_hex(6)}"
    with psycopg.connect(_admin_url(base), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{base.rpartition('/')[0]}/{name}", name
    finally:
        with psycopg.connect(_admin_url(base), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _health(port: int) -> int:
    return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=10).status_code


@pytest.mark.postgres
def test_the_compose_stack_runs_on_postgresql_without_docker(
    made: dict[str, str], tmp_path: Path, postgres_database: tuple[str, str]
) -> None:
    url, name = postgres_database
    ports = {"control-plane-a": _free_port(), "control-plane-b": _free_port()}
    argv, env = _compose_service("gateway-2", made)
    replicas = _flag(argv, "--control-plane")
    for service, port in ports.items():
        replicas = replicas.replace(f"http://{service}:3000", f"http://127.0.0.1:{port}")
    listen = _free_port()
    local = _local(argv, {"--control-plane": replicas, "--listen": f"127.0.0.1:{listen}",
                          "--ca-dir": str(tmp_path / "gateway-ca")})  # fmt: skip
    started: list[Process] = []
    try:
        # the gateway first: no configuration yet, no listener (its readiness probe fails)
        gateway = Process(local, _clean_env(**env), tmp_path / "gateway.log", tmp_path)
        started.append(gateway)
        gateway.wait_for("waiting for the control plane")
        assert _healthcheck("gateway-2", listen) != 0
        # in compose's order: b once a is healthy (a migrated the empty database)
        for service, port in ports.items():
            started.append(_start_replica(service, made, url, tmp_path, port))
            _until(lambda s=service, p=port: _healthcheck(s, p) == 0)
        for service in ports:
            assert sorted(p.name for p in (tmp_path / service).iterdir()) == [LOCK_FILE]
        admin = made["TAMEFLARE_ADMIN_TOKEN"]
        _create_owner_as_printed(started[1], ports["control-plane-a"], admin)
        assert _sign_in(ports["control-plane-b"]) == 200  # one database, one set of people
        # the gateway got its configuration (from a, b being down at first): it listens
        gateway.wait_for(rf"listening on 127\.0\.0\.1:{listen}\b")
        assert _healthcheck("gateway-2", listen) == 0
        assert (tmp_path / "gateway-ca" / CA_CERT_FILE).exists()
        headers = {"Authorization": f"Bearer {admin}"}
        status = f"http://127.0.0.1:{ports['control-plane-b']}/api/v1/status"
        _until(lambda: httpx.get(status, headers=headers, timeout=10).json()["gateway"]["online"])

        import psycopg

        base = os.environ[PG_ENV]
        with psycopg.connect(_admin_url(base), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
        for port in ports.values():  # readiness: out of the Service until the database is back
            _until(lambda p=port: _health(p) == 503)
    finally:
        for process in reversed(started):
            process.stop()
