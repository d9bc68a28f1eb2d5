"""deploy/: the Kubernetes manifests and the compose file are valid and run the real product.

No cluster or Docker runs here, so what can be checked offline is checked:

- every Kubernetes object against the OpenAPI schemas of two Kubernetes versions, strictly
  (unknown fields refused), with ``kubernetes-validate``'s bundled schemas;
- ``deploy/compose.yaml`` against the Compose specification's JSON schema (vendored by
  ``check-jsonschema``), and every ``${VAR}`` it reads is in ``deploy/.env.example``;
- every ``python -m agentfirewall_server`` / ``agentfirewall_proxy`` command line through
  the real argument parsers and ``Settings``, with the environment the manifest gives it
  (secrets filled with generated values of the right kind), and every variable name one
  the product reads;
- the wiring: ports, probes, Service selectors, Secret references, the gateways' control-
  plane URLs, the NetworkPolicy's selectors and the load balancer's upstreams.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from agentfirewall.tokens import generate_signing_key, load_signing_key
from agentfirewall_proxy.main import parse_args as gateway_args
from agentfirewall_server.bootstrap import new_token
from agentfirewall_server.main import _parser as server_parser
from agentfirewall_server.main import parse_settings
from agentfirewall_server.settings import Settings
from agentfirewall_server.vault import parse_key

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
SERVER = ("python", "-m", "agentfirewall_server")
GATEWAY = ("python", "-m", "agentfirewall_proxy")

#: What a secret holds, generated for real: the product must accept each.
SECRET_VALUES = {
    "database-url": "postgresql://tameflare:pw@postgres:5432/tameflare",
    "signing-key": generate_signing_key().to_pem().decode(),
    "encryption-key": base64.b64encode(secrets.token_bytes(32)).decode(),
    "admin-token": new_token("tfa_"),
    "gateway-token": new_token("tfg_"),
    "agent-key": "aaf_live_" + "k" * 32,
    "api-key": "aaf_live_" + "k" * 32,
}
COMPOSE_ENV = {
    "POSTGRES_PASSWORD": "pw",
    "SIGNING_KEY_PRIVATE": SECRET_VALUES["signing-key"],
    "SETTINGS_ENCRYPTION_KEY": SECRET_VALUES["encryption-key"],
    "TAMEFLARE_ADMIN_TOKEN": SECRET_VALUES["admin-token"],
    "TAMEFLARE_GATEWAY_TOKEN": SECRET_VALUES["gateway-token"],
}
_VAR = re.compile(r"\$\{(\w+)(?::?[?-][^}]*)?\}")


def _server_env_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"AGENTFIREWALL_{name.upper()}")
        alias = field.validation_alias
        for choice in getattr(alias, "choices", ()):
            if isinstance(choice, str) and choice.isupper():
                names.add(choice)
    return names


ACCEPTED_ENV = {"server": _server_env_names(), "gateway": {"AGENTFIREWALL_GATEWAY_TOKEN"}}


@dataclass
class Command:
    where: str
    argv: list[str]
    env: dict[str, str]
    ports: list[int]
    image: str

    @property
    def kind(self) -> str | None:
        head = " ".join(self.argv[:3])
        return {" ".join(SERVER): "server", " ".join(GATEWAY): "gateway"}.get(head)


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] in ("Deployment", "DaemonSet", "StatefulSet"):
        spec: dict[str, Any] = doc["spec"]["template"]["spec"]
        return spec
    return None


def _secret_data(docs: list[tuple[str, dict[str, Any]]]) -> dict[tuple[str, str], set[str]]:
    return {
        (doc["metadata"]["namespace"], doc["metadata"]["name"]): set(doc["stringData"])
        for _, doc in docs
        if doc["kind"] == "Secret"
    }


def _k8s_env(
    container: dict[str, Any], ns: str, docs: list[tuple[str, dict[str, Any]]]
) -> dict[str, str]:
    secrets_in = _secret_data(docs)
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], item["value"])
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        assert ref["key"] in secrets_in[(ns, ref["name"])], f"{item['name']}: no such secret key"
        env[item["name"]] = SECRET_VALUES[ref["key"]]
    return env


def k8s_commands() -> Iterator[Command]:
    docs = k8s_documents()
    for where, doc in docs:
        pod = _pod_spec(doc)
        if pod is None:
            continue
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            argv = [*container.get("command", []), *container.get("args", [])]
            ports = [p["containerPort"] for p in container.get("ports", [])]
            env = _k8s_env(container, doc["metadata"]["namespace"], docs)
            name = f"{where}/{container['name']}"
            yield Command(name, argv, env, ports, container["image"])


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def _interpolate(value: str) -> str:
    return _VAR.sub(lambda m: COMPOSE_ENV[m.group(1)], value)


def compose_commands() -> Iterator[Command]:
    for name, service in compose()["services"].items():
        argv = service.get("command", [])
        env = {k: _interpolate(str(v)) for k, v in service.get("environment", {}).items()}
        ports = [int(p.rsplit(":", 1)[1]) for p in service.get("ports", [])]
        image = service["image"]
        yield Command(f"compose:{name}", [str(a) for a in argv], env, ports, image)


ALL_COMMANDS = [*k8s_commands(), *compose_commands()]
PRODUCT_COMMANDS = [c for c in ALL_COMMANDS if c.kind is not None]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("AGENTFIREWALL_", "OTEL_")) or name in (
            "SIGNING_KEY_PRIVATE",
            "SETTINGS_ENCRYPTION_KEY",
        ):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("where", "doc"), k8s_documents(), ids=[w for w, _ in k8s_documents()])
def test_kubernetes_objects_match_the_openapi_schemas(
    where: str, doc: dict[str, Any], version: str
) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_compose_file_matches_the_compose_spec() -> None:
    import check_jsonschema

    path = Path(check_jsonschema.__file__).parent / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(path.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []
    used = set(_VAR.findall((DEPLOY / "compose.yaml").read_text()))
    listed = {
        line.split("=", 1)[0]
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert used == listed == set(COMPOSE_ENV)


def test_every_container_of_the_image_runs_the_server_or_the_gateway() -> None:
    ours = {c.where for c in ALL_COMMANDS if c.image.startswith("tameflare:")}
    assert ours == {c.where for c in PRODUCT_COMMANDS}
    kinds = [c.kind for c in PRODUCT_COMMANDS]
    assert (kinds.count("server"), kinds.count("gateway")) == (3, 4)  # compose 2+2, k8s 1+2


@pytest.mark.parametrize("command", PRODUCT_COMMANDS, ids=[c.where for c in PRODUCT_COMMANDS])
def test_command_lines_pass_the_real_parsers(
    command: Command, clean_env: pytest.MonkeyPatch
) -> None:
    unknown = {
        name
        for name in command.env
        if name.startswith(("AGENTFIREWALL_", "SIGNING_", "SETTINGS_"))
        and name not in ACCEPTED_ENV[str(command.kind)]
    }
    assert unknown == set(), f"variables the product does not read: {unknown}"
    for name, value in command.env.items():
        clean_env.setenv(name, value)
    rest = command.argv[3:]
    if command.kind == "server":
        args = server_parser().parse_args(rest)
        assert args.command == "serve"
        settings = parse_settings(args)
        assert settings.host == "0.0.0.0"
        assert settings.port in command.ports or not command.ports
        assert str(settings.database_url).startswith("postgresql://")
        assert settings.signing_key is not None
        load_signing_key(settings.signing_key.get_secret_value())
        assert settings.encryption_key is not None
        assert len(parse_key(settings.encryption_key.get_secret_value())) == 32
        assert settings.admin_token is not None
        assert settings.gateway_token is not None
        assert settings.log_format == "json"
    else:
        options = gateway_args(rest)
        assert options.token == SECRET_VALUES["gateway-token"], shlex.join(rest)
        assert options.control_plane
        assert options.listen_port == 8443
        assert options.ca_dir == Path("/etc/tameflare/ca")


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_kubernetes_wiring() -> None:
    docs = dict(k8s_documents())
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs.values():
        by_kind.setdefault(doc["kind"], []).append(doc)
    services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
    workloads = {w["metadata"]["name"]: w for k in ("Deployment", "DaemonSet", "StatefulSet")
                 for w in by_kind[k]}  # fmt: skip
    plane = workloads["tameflare-control-plane"]
    container = plane["spec"]["template"]["spec"]["containers"][0]
    assert plane["spec"]["replicas"] >= 2
    assert plane["spec"]["serviceName"] in services  # the StatefulSet's governing Service
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/api/health"
        assert container[probe]["httpGet"]["port"] == container["ports"][0]["name"]
    for name, service in services.items():  # each Service selects its workload's pods
        workload = workloads[name]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert _labels_match(service["spec"]["selector"], labels)
        named = {p["name"] for c in workload["spec"]["template"]["spec"]["containers"]
                 for p in c.get("ports", [])}  # fmt: skip
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= named
    # every gateway's control plane is the control plane's Service, at its port
    plane_port = services["tameflare-control-plane"]["spec"]["ports"][0]["port"]
    for command in (c for c in k8s_commands() if c.kind == "gateway"):
        url = urlsplit(command.argv[command.argv.index("--control-plane") + 1])
        assert url.hostname == "tameflare-control-plane.tameflare.svc.cluster.local"
        assert url.port == plane_port
    # agents reach the gateway pods, on the gateway's port, and nothing but DNS besides
    policy = docs["networkpolicy.yaml:NetworkPolicy/agents-reach-only-the-gateway"]
    gateway = workloads["tameflare-gateway"]["spec"]["template"]["metadata"]["labels"]
    first, dns = policy["spec"]["egress"]
    assert _labels_match(first["to"][0]["podSelector"]["matchLabels"], gateway)
    assert [p["port"] for p in first["ports"]] == [8443]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert policy["spec"]["policyTypes"] == ["Egress"]
    assert policy["spec"]["podSelector"] == {}


def test_compose_wiring() -> None:
    services = compose()["services"]
    servers = {c.where.split(":")[1]: c for c in compose_commands() if c.kind == "server"}
    ports = {name: int(c.argv[c.argv.index("--port") + 1]) for name, c in servers.items()}
    nginx = (DEPLOY / "nginx.conf").read_text()
    upstreams = re.findall(r"^\s*server ([\w-]+):(\d+)", nginx, re.MULTILINE)
    assert {(host, int(port)) for host, port in upstreams} == set(ports.items())
    lb_port = int(re.search(r"listen (\d+);", nginx).group(1))  # type: ignore[union-attr]
    mounted = services["lb"]["volumes"][0].split(":")
    assert (DEPLOY / mounted[0]).resolve() == (DEPLOY / "nginx.conf").resolve()
    for command in (c for c in compose_commands() if c.kind == "gateway"):
        urls = command.argv[command.argv.index("--control-plane") + 1].split(",")
        for url in map(urlsplit, urls):
            expected = lb_port if url.hostname == "lb" else ports[str(url.hostname)]
            assert url.port == expected
    assert len(servers) == 2
    assert "postgres" in services


def test_the_image_installs_what_the_manifests_run() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    pyproject = (DEPLOY.parent / "pyproject.toml").read_text()
    extras = re.search(r'pip install --no-cache-dir "\.\[([\w,]+)\]"', dockerfile)
    assert extras is not None
    for extra in extras.group(1).split(","):
        assert re.search(rf"^{extra} = \[", pyproject, re.MULTILINE), extra
    for copied in re.findall(r"^COPY (\w+) ", dockerfile, re.MULTILINE):
        assert (DEPLOY.parent / copied / "__init__.py").exists()


def test_the_validators_refuse_broken_manifests() -> None:
    """The checks above are not vacuous: a misspelt field fails each validator."""
    import copy

    import check_jsonschema

    docs = dict(k8s_documents())
    doc = copy.deepcopy(docs["control-plane.yaml:StatefulSet/tameflare-control-plane"])
    doc["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)
    path = Path(check_jsonschema.__file__).parent / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(path.read_text())
    broken = compose()
    broken["services"]["lb"]["comand"] = ["nginx"]
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))
    with pytest.raises(SystemExit):
        gateway_args(["--control-plane", "http://lb:3000", "--token", "t", "--listen-port", "1"])
