"""docs/proxy.md, followed as a newcomer: every option, sample and answer it shows, for real.

One `python -m agentfirewall_proxy --config-file gateway.yaml` (the doc's own file, plus a few
agents and connectors for the other checks) runs for the module, driven with curl, requests,
httpx and raw sockets against the fake upstreams; the command line's mistakes run against the
real entry point; the embedding sample runs as written; the `--control-plane` command runs
beside `tf up` (slow). The doc's blocks are read from the doc, so it cannot drift.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from agentfirewall_proxy.main import parse_args
from tests.cli.conftest import Project, tf_bin  # noqa: F401 (a fixture)
from tests.fakes import FakeUpstreams
from tests.proxy.rawclient import auth_header, read_response, status_of
from tests.proxy.support import ConnectRelay, ca_bundle

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "proxy.md").read_text()
#: The doc's agent key, and the credentials the gateway injects.
KEY = "aaf_live_0123456789abcdef0123456789abcdef"
TOKEN = "ghp_docsProxyRealToken000000000000000000"
STRIPE = "sk_test_docsProxyStripeKey0000000000"
KEYS = {name: f"aaf_live_{name.lower():0<32}" for name in ("Sleepy", "Watcher", "Stopped")}
_LISTENING = re.compile(r"agentfirewall_proxy listening on 127\.0\.0\.1:(\d+) \(CA: (\S+)\)")
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def fenced(language: str, containing: str) -> str:
    """The doc's one ```language block that contains `containing`."""
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.S)
    found = [block for block in blocks if containing in block]
    assert len(found) == 1, f"{len(found)} {language} blocks with `{containing}`"
    return found[0]


def wait_until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env["PYTHONPATH"] = str(REPO)
    return {**env, **extra}


@dataclass
class Gateway:
    """`python -m agentfirewall_proxy` in a subprocess, its stderr in `log`."""

    root: Path
    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    def proxy(self, key: str = KEY, name: str = "Bot") -> str:
        return f"http://{name}:{key}@127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        self.process.terminate()  # SIGTERM: the doc says it stops cleanly
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"the gateway ignored SIGTERM:\n{self.text()}") from None


def start(root: Path, args: list[str], env: dict[str, str], *, wait: bool = True) -> Gateway:
    """Start the gateway in `root` and wait for the line that names its port."""
    log = root / f"gateway-{len(list(root.glob('gateway-*.log')))}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "agentfirewall_proxy", *args],
                                   cwd=root, env=env, stdout=out, stderr=out)  # fmt: skip
    gateway = Gateway(root, process, log)
    if not wait:
        return gateway

    def listening() -> re.Match[str] | None:
        if process.poll() is not None:
            raise AssertionError(f"the gateway exited {process.returncode}:\n{gateway.text()}")
        return _LISTENING.search(gateway.text())

    gateway.port = int(wait_until(listening, "the gateway to listen", timeout=30).group(1))
    return gateway


def upstream_args(fakes: FakeUpstreams) -> list[str]:
    resolve = [arg for entry in fakes.resolve_entries() for arg in ("--resolve", entry)]
    return [*resolve, "--upstream-ca", str(fakes.ca_path)]


# -- the air-gapped gateway of the doc, with a few more agents and connectors --------------


def doc_config() -> dict[str, Any]:
    """The doc's gateway.yaml, and what the other checks need beside it."""
    config: dict[str, Any] = yaml.safe_load(fenced("yaml", "# gateway.yaml"))
    config["settings"]["approval_timeout_seconds"] = 1  # (60 in the doc)
    config["agents"] += [
        {"name": "Sleepy", "status": "suspended", "api_keys": [KEYS["Sleepy"]]},
        {"name": "Watcher", "enforcement_level": "monitor", "api_keys": [KEYS["Watcher"]]},
        {"name": "Stopped", "api_keys": [KEYS["Stopped"]]},
    ]
    config["connectors"] += [
        {"id": "pay", "type": "stripe", "domains": ["api.stripe.com"], "credential_env": "STRIPE"},
        {"id": "models", "type": "generic", "domains": ["api.openai.com"]},
    ]
    config["permissions"] += [
        {"agent": "Bot", "connector": "github", "action_pattern": p, "decision": "allow"}
        for p in ("github.repo.get", "github.user.get")
    ] + [{"agent": "Bot", "connector": "generic", "action_pattern": "generic.get",
          "decision": "allow"}]  # fmt: skip
    config["kill_switches"] = [{"scope": "agent", "target": "Stopped", "reason": "incident"}]
    return config


def doc_command() -> list[str]:
    """The doc's command line, as written (its environment assignment and `&` aside)."""
    line = fenced("bash", "--config-file gateway.yaml").splitlines()[0]
    words = shlex.split(line)
    assert (words[:4], words[-1]) == (
        ["GITHUB_TOKEN=ghp_...", "python", "-m", "agentfirewall_proxy"],
        "&",
    ), line
    return words[4:-1]


@pytest.fixture(scope="module")
def gateway(fakes: FakeUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("airgapped")
    (root / "gateway.yaml").write_text(yaml.safe_dump(doc_config()))
    args = [*doc_command(), "--listen", "127.0.0.1:0", *upstream_args(fakes),
            "--passthrough", "slack.com", "--access-log"]  # fmt: skip
    running = start(root, args, clean_env(GITHUB_TOKEN=TOKEN, STRIPE=STRIPE))
    yield running
    assert running.stop() == 0, running.text()
    assert "Traceback" not in running.text()


def bundle(gateway: Gateway) -> str:
    """System CAs and the gateway's, as `tf run` gives agents."""
    return str(ca_bundle(gateway.root / ".tf" / "ca.crt", gateway.root / "bundle.pem"))


def session(gateway: Gateway, key: str = KEY, name: str = "Bot") -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    http.proxies = {"http": gateway.proxy(key, name), "https": gateway.proxy(key, name)}
    http.verify = bundle(gateway)
    return http


def test_the_port_is_printed_and_the_ca_is_made_once_in_dot_tf(gateway: Gateway) -> None:
    found = _LISTENING.search(gateway.text())
    assert found is not None
    assert found.group(2) == ".tf/ca.crt"
    cert = x509.load_pem_x509_certificate((gateway.root / ".tf" / "ca.crt").read_bytes())
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"
    assert (gateway.root / ".tf" / "ca.key").stat().st_mode & 0o777 == 0o600


def test_the_docs_curl_gets_its_answer_with_the_credential_injected(
    gateway: Gateway, fakes: FakeUpstreams
) -> None:
    command = fenced("bash", "--config-file gateway.yaml").split("\n", 1)[1]
    command = command.replace("\\\n", " ").split("#")[0].replace(":8443", f":{gateway.port}")
    assert command.startswith("curl -x http://Bot:")
    done = subprocess.run(["bash", "-c", command.replace("curl", "curl -sS", 1)], cwd=gateway.root,
                          env=clean_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["title"] == "fake pr"
    got = fakes["github"].received("GET", "/repos/acme/api/pulls")[-1]
    assert got.header("authorization") == f"token {TOKEN}"


def test_forwarded_headers_are_the_documented_ones(gateway: Gateway, fakes: FakeUpstreams) -> None:
    """Step 8: the placeholder key and the proxy's headers are dropped, the credential and
    the agent's name and request id added, everything else passes unchanged."""
    sent = {"Authorization": "token placeholder", "Cookie": "a=1", "X-Custom": "kept"}
    with session(gateway) as http:
        answer = http.get("https://api.github.com/repos/acme/api/pulls?doc=8", headers=sent)
    assert answer.status_code == 200
    got = next(r for r in fakes["github"].received() if r.query == "doc=8")
    assert got.header("authorization") == f"token {TOKEN}"
    assert (got.header("cookie"), got.header("x-custom")) == ("a=1", "kept")
    assert got.header("x-tameflare-agent") == "Bot"
    assert (got.header("x-tameflare-request-id") or "").startswith("req_")
    assert got.header("proxy-authorization") is None
    assert "placeholder" not in got.raw_text()


def test_the_credential_never_comes_back(gateway: Gateway, fakes: FakeUpstreams) -> None:
    github = fakes["github"]
    github.settings["responses"] = {("GET", "/user"): (200, {"echo": f"token {TOKEN}"})}
    try:
        with session(gateway) as http:
            answer = http.get("https://api.github.com/user")
    finally:
        github.settings.pop("responses")
    assert answer.status_code == 200
    echoed = answer.json()["echo"]
    assert TOKEN not in answer.text
    assert len(echoed) == len(f"token {TOKEN}")  # same length: Content-Length stays true
    assert "[REDACTED by TameFlare]" in echoed


def test_a_deny_is_json_and_stripe_gets_an_error_object(gateway: Gateway) -> None:
    with session(gateway) as http:
        denied = http.get("https://api.github.com/repos/acme/api/issues")
        paid = http.post("https://api.stripe.com/v1/charges", data={"amount": "100"})
    assert denied.status_code == 403
    body = denied.json()
    assert set(body) == {"error", "action", "rule", "reason", "request_id"}
    assert (body["error"], body["action"]) == ("denied", "github.issue.list")
    assert denied.headers["X-TameFlare-Request-Id"] == body["request_id"]
    # where to add the permission: the file (there is no control plane for `tf permissions`)
    assert body["reason"] == (
        "no permission for `github.issue.list` (agent `Bot`, connector `github`): add one to "
        "`permissions` in `gateway.yaml` (the gateway reads it again "
        "when it changes)"
    )
    assert paid.status_code == 403
    error = paid.json()["error"]
    assert set(error) == {"type", "code", "message"}
    assert error["code"] == "denied"
    assert paid.json()["action"] == "stripe.charge.create"


def test_a_host_without_connector_answers_403_inside_the_tunnel(gateway: Gateway) -> None:
    """Step 3: curl shows the reason (exit 0), not `CONNECT tunnel failed` (exit 56)."""
    done = subprocess.run(
        ["curl", "-sS", "-x", gateway.proxy(), "--cacert", bundle(gateway),
         "-w", "\n%{http_code}", "https://example.com/x"],
        env=clean_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    body, status = done.stdout.rsplit("\n", 1)
    assert status == "403"
    assert json.loads(body)["error"] == "no_connector"
    verify = ssl.create_default_context(cafile=bundle(gateway))
    with httpx.Client(proxy=gateway.proxy(), verify=verify, trust_env=False) as http:
        assert http.get("https://example.com/y").json()["error"] == "no_connector"


def test_one_407_whatever_the_key_and_identity_is_the_key(gateway: Gateway) -> None:
    answers = []
    for proxy in (f"http://127.0.0.1:{gateway.port}", gateway.proxy("aaf_live_unknown"),
                  gateway.proxy(KEYS["Sleepy"], "Sleepy")):  # fmt: skip
        with httpx.Client(proxy=proxy, trust_env=False) as http:
            answers.append(http.get("http://api.github.com/repos/acme/api"))
    for answer in answers:
        assert answer.status_code == 407
        assert answer.headers["Proxy-Authenticate"] == 'Basic realm="TameFlare"'
        assert answer.json()["error"] == "proxy_auth_required"
    assert answers[0].json()["reason"] == "proxy credential required"  # none: it says so
    unknown, suspended = ({**a.json(), "request_id": ""} for a in answers[1:])
    assert unknown == suspended  # a suspended agent's key: the very answer of an unknown one
    with session(gateway, name="Nobody") as http:  # Bot's key under another user name
        assert http.get("https://api.github.com/repos/acme/who/pulls").status_code == 200
    pattern = r"req_\S+ (\S+) GET api\.github\.com/repos/acme/who/pulls 200"
    line = wait_until(lambda: re.search(pattern, gateway.text()), "the access log line")
    assert line.group(1) == "Bot"


_REFUSED = [  # step 1, step 4 and Protocols: (name, raw request, status, reason or error)
    ("origin-form", b"GET /user HTTP/1.1\r\nHost: api.github.com\r\n", 400, "absolute"),
    ("another Host", b"GET http://api.github.com/user HTTP/1.1\r\nHost: evil.example\r\n",
     421, "misdirected_request"),
    ("https absolute", b"GET https://api.github.com/user HTTP/1.1\r\nHost: api.github.com\r\n",
     400, "use CONNECT"),
    ("user info", b"GET http://u:p@api.github.com/user HTTP/1.1\r\nHost: api.github.com\r\n",
     400, "credentials in the request url"),
    ("bad authority", b"GET http://api.github.com:9x/ HTTP/1.1\r\nHost: api.github.com\r\n",
     400, "invalid port"),
    ("backslash", b"GET http://api.github.com/a\\b HTTP/1.1\r\nHost: api.github.com\r\n",
     400, "invalid characters"),
    ("%5c", b"GET http://api.github.com/a%5cb HTTP/1.1\r\nHost: api.github.com\r\n", 400,
     "encoded backslash"),
    ("%00", b"GET http://api.github.com/a%00 HTTP/1.1\r\nHost: api.github.com\r\n", 400,
     "encoded backslash or NUL"),
    ("fragment", b"GET http://api.github.com/a#f HTTP/1.1\r\nHost: api.github.com\r\n", 400,
     "invalid characters"),
    ("length and chunked", b"POST http://api.github.com/user HTTP/1.1\r\nHost: api.github.com"
     b"\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n", 400, "bad_request"),
    ("duplicate length", b"POST http://api.github.com/user HTTP/1.1\r\nHost: api.github.com"
     b"\r\nContent-Length: 2\r\nContent-Length: 2\r\n", 400, "Duplicate Content-Length"),
    ("gzip coding", b"POST http://api.github.com/user HTTP/1.1\r\nHost: api.github.com\r\n"
     b"Transfer-Encoding: gzip\r\n", 501, "unsupported transfer-encoding"),
    ("obs-fold", b"GET http://api.github.com/user HTTP/1.1\r\nHost: api.github.com\r\n"
     b"X-A: b\r\n c\r\n", 400, "bad_request"),
    ("head over 64 KiB", b"GET http://api.github.com/user HTTP/1.1\r\nHost: api.github.com\r\n"
     b"X-Big: " + b"a" * 66_000 + b"\r\n", 431, "too large"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "status", "said"), [c[1:] for c in _REFUSED],
                         ids=[c[0] for c in _REFUSED])  # fmt: skip
def test_targets_paths_and_framing_refused_as_documented(
    gateway: Gateway, raw: bytes, status: int, said: str
) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(raw + auth_header(KEY) + b"\r\n")  # (refused on the head alone)
        answer = read_response(sock)
    assert status_of(answer) == status, answer[:300]
    assert said in answer.decode("latin-1")


def test_inside_a_tunnel_the_host_must_be_the_connect_host(gateway: Gateway) -> None:
    done = subprocess.run(
        ["curl", "-sS", "-x", gateway.proxy(), "--cacert", bundle(gateway), "-w", "\n%{http_code}",
         "-H", "Host: evil.example", "https://api.github.com/repos/acme/api/pulls"],
        env=clean_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout.rsplit("\n", 1)[1] == "421", done.stdout + done.stderr


def test_dot_segments_are_resolved_before_naming_and_forwarding(
    gateway: Gateway, fakes: FakeUpstreams
) -> None:
    """Step 4: `/repos/a/b/pulls/..` is `/repos/a/b/` (github.repo.get), trailing slash kept."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"GET http://api.github.com/repos/acme/api/pulls/..?doc=dots HTTP/1.1\r\n"
                     b"Host: api.github.com\r\n" + auth_header(KEY) + b"\r\n")  # fmt: skip
        assert status_of(read_response(sock)) == 200
    got = next(r for r in fakes["github"].received() if r.query == "doc=dots")
    assert got.path == "/repos/acme/api/"


def test_no_decision_in_time_is_408(gateway: Gateway) -> None:
    """`approval_timeout_seconds` (1 s here): with a file, nobody can approve."""
    with session(gateway) as http:
        answer = http.delete("https://api.github.com/repos/acme/api", timeout=30)
    assert answer.status_code == 408
    assert (answer.json()["error"], answer.json()["action"]) == (
        "approval_timeout",
        "github.repo.delete",
    )


def test_kill_switch_monitor_and_the_generic_alias(gateway: Gateway, fakes: FakeUpstreams) -> None:
    with session(gateway, KEYS["Stopped"], "Stopped") as http:
        stopped = http.get("https://api.github.com/repos/acme/api/pulls")
    assert stopped.status_code == 403
    assert stopped.headers["X-TameFlare-Kill-Switch"] == "active"
    assert stopped.json()["error"] == "kill_switch"
    with session(gateway, KEYS["Watcher"], "Watcher") as http:  # monitor: forwarded all the same
        watched = http.get("https://api.github.com/repos/acme/api/issues?doc=monitor")
    assert watched.status_code == 200
    assert any(r.query == "doc=monitor" for r in fakes["github"].received())
    with session(gateway) as http:  # `generic.get` grants the generic connector's `http.get`
        listed = http.get("http://api.openai.com/v1/models?doc=alias")
    assert listed.status_code == 200
    assert any(r.query == "doc=alias" for r in fakes["openai"].received())


def test_passthrough_is_tunnelled_blind(gateway: Gateway, fakes: FakeUpstreams) -> None:
    """The agent sees the upstream's own certificate; nothing is decided or injected."""
    with httpx.Client(proxy=gateway.proxy(), verify=fakes.ssl_context(), trust_env=False) as http:
        answer = http.post("https://api.slack.com/api/auth.test?doc=blind",
                           headers={"Authorization": "Bearer agent-own"})  # fmt: skip
    assert answer.status_code == 200
    got = next(r for r in fakes["slack"].received() if r.query == "doc=blind")
    assert got.header("authorization") == "Bearer agent-own"
    assert got.header("x-tameflare-agent") is None
    assert wait_until(lambda: re.search(r"Bot CONNECT api\.slack\.com:443 200 passthrough",
                                        gateway.text()), "the passthrough's log line")  # fmt: skip


def test_the_access_log_holds_no_header_value(gateway: Gateway) -> None:
    sent = {"Authorization": "token placeholder-log", "Cookie": "session=log"}
    with session(gateway) as http:
        assert http.get("https://api.github.com/repos/acme/log/pulls", headers=sent).ok
    pattern = r"req_\S+ Bot GET api\.github\.com/repos/acme/log/pulls 200"
    wait_until(lambda: re.search(pattern, gateway.text()), "the access log line")
    for secret in (TOKEN, STRIPE, KEY, "placeholder-log", "session=log"):
        assert secret not in gateway.text()


def test_a_refused_connect_is_logged_with_its_target(gateway: Gateway) -> None:
    """A CONNECT has no path: its line names `host:port` (it said `api.github.com/`)."""
    with socket.create_connection(("127.0.0.1", gateway.port)) as raw:
        raw.sendall(b"CONNECT api.github.com:8443 HTTP/1.1\r\nHost: api.github.com:8443\r\n\r\n")
        assert raw.recv(65536).startswith(b"HTTP/1.1 407 ")
    pattern = r"req_\S+ - CONNECT api\.github\.com:8443 407 proxy credential required\n"
    wait_until(lambda: re.search(pattern, gateway.text()), "the refused CONNECT's log line")


def test_a_config_file_that_stops_loading_refuses_everything_until_it_loads(
    gateway: Gateway,
) -> None:
    """The file is read again when it changes; a change that does not load used to stop
    the gateway with a traceback (an editor's half-written save was enough)."""
    path = gateway.root / "gateway.yaml"
    good = path.read_text()

    def status() -> int:
        try:
            with session(gateway) as http:
                answer = http.get("https://api.github.com/repos/acme/api/pulls", timeout=10)
        except requests.RequestException:  # in flight when the refusal came: cut, as documented
            return 0
        return answer.status_code

    try:
        replace(path, "agents: [\n")  # a YAML error
        wait_until(lambda: status() == 403, "the broken file to apply")
        with session(gateway) as http:
            answer = http.get("https://api.github.com/repos/acme/api/pulls")
        assert answer.headers["X-TameFlare-Kill-Switch"] == "active"
        reason = answer.json()["reason"]
        assert reason.startswith("config file `gateway.yaml` cannot be read (line 2, column 1")
        assert reason.endswith("every action is denied until it reads again")
        assert reason in gateway.text()  # said on stderr too
        assert gateway.process.poll() is None
        replace(path, good)
        wait_until(lambda: status() == 200, "the fixed file to apply")
        # a misspelt key loads as YAML but not as a configuration: it used to be ignored
        # (here a rule without its decision, skipped: the pulls denied for another reason)
        assert "decision: allow" in good
        replace(path, good.replace("decision: allow", "decison: allow", 1))
        wait_until(lambda: status() == 403, "the misspelt file to apply")
        with session(gateway) as http:
            reason = http.get("https://api.github.com/repos/acme/api/pulls").json()["reason"]
        assert reason.startswith("config file `gateway.yaml` cannot be read (permissions[0]: "
                                 "unknown key `decison` (did you mean `decision`?)")  # fmt: skip
    finally:
        replace(path, good)
    wait_until(lambda: status() == 200, "the fixed file to apply")


def replace(path: Path, text: str) -> None:
    """Write `path` whole at once, as an editor saves (no half-written file is read)."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


# -- the command line: mistakes get one line, not a traceback -----------------------------


def test_every_option_of_the_table_is_in_the_help_and_back() -> None:
    rows = re.findall(r"^\| (`--.*?) \|", DOC, flags=re.M)
    documented = {m for row in rows for m in re.findall(r"`(--[a-z-]+)", row)}
    shown = subprocess.run([sys.executable, "-m", "agentfirewall_proxy", "--help"],
                           env=clean_env(COLUMNS="200"), capture_output=True, text=True,
                           timeout=60, check=True).stdout  # fmt: skip
    assert documented == set(re.findall(r"^\s+(--[a-z-]+)", shown, flags=re.M)) - {"--help"}
    for option, default in (("--header-timeout S", "10.0"), ("--idle-timeout S", "60.0")):
        assert re.search(rf"{option}\s+\S.*\(default {default}\)", shown), option


_USAGE = [  # (arguments, what the error says): exit status 2, before anything starts
    (["--listen", "bad"], "invalid listen address `bad`: expected HOST:PORT"),
    (["--listen", "127.0.0.1:99999"], "with a port from 0 (any free one) to 65535"),
    (["--header-timeout", "-1"], "--header-timeout must be a positive number of seconds"),
    (["--idle-timeout", "0"], "--idle-timeout must be a positive number of seconds"),
    (["--resolve", "api.github.com=127.0.0.1:70000"], "invalid resolve entry"),
    (["--upstream-proxy", "proxy.corp:3128"], "is not a proxy URL: expected http://"),
    (["--agent-ports", "9-1"], "invalid port range `9-1`"),
    (["--body-inspect-limit", "0"], "--body-inspect-limit must be a positive number"),
    (["--log-format", "yaml"], "invalid choice: 'yaml'"),
]


@pytest.mark.parametrize(("args", "said"), _USAGE, ids=[" ".join(a) for a, _ in _USAGE])
def test_a_value_that_does_not_parse_is_a_usage_error(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        parse_args(["--config-file", "gateway.yaml", *args])
    assert done.value.code == 2
    assert said in capsys.readouterr().err


def test_a_control_plane_url_that_is_not_one_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It was retried every second forever ("unreachable: UnsupportedProtocol")."""
    for url in ("127.0.0.1:3000", "http://127.0.0.1:30x0", ","):
        with pytest.raises(SystemExit) as done:
            parse_args(["--control-plane", url, "--token", "tfg_x"])
        assert done.value.code == 2
        assert "--control-plane" in capsys.readouterr().err


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


_CANNOT_START = [  # (arguments, files, what the one line says): exit status 1
    (["--config-file", "missing.yaml"], {}, "cannot read --config-file `missing.yaml`: No such"),
    (["--config-file", "g.yaml"], {"g.yaml": "agents: [\n"},
     "cannot read --config-file `g.yaml`: line 2, column 1: expected the node content"),
    (["--config-file", "g.json"], {"g.json": "[1]"}, "`g.json`: expected a mapping"),
    (["--config-file", "g.yaml"], {"g.yaml": "agents: [{}]\n"},
     "config file `g.yaml`: agents[0]: `name` is required"),
    (["--config-file", "g.yaml"], {"g.yaml": "agents: [{name: Bot, api_key: [aaf_test_x]}]\n"},
     "agents[0]: unknown key `api_key` (did you mean `api_keys`?); known keys are name,"),
    (["--config-file", "g.yaml"], {"g.yaml": "agent: []\n"},
     "the file: unknown key `agent` (did you mean `agents`?)"),
    (["--config-file", "g.yaml"], {"g.yaml": "connectors: [{type: github}]\n"},
     "connectors[0]: `id` is required"),
    (["--config-file", "g.yaml"], {"g.yaml": "connectors: [{id: gh, type: githb}]\n"},
     "connectors[0]: unknown connector type `githb` (did you mean `github`?)"),
    (["--config-file", "g.yaml"],
     {"g.yaml": "connectors: [{id: gh, type: github, credential_env: TF_UNSET_TOKEN}]\n"},
     "connectors[0] (`gh`): credential_env `TF_UNSET_TOKEN` is not set in the gateway's"),
    (["--config-file", "g.yaml"], {"g.yaml": "permissions: [{agent: Bot, connector: github}]\n"},
     "permissions[0]: `action_pattern` is required"),
    (["--config-file", "g.yaml"], {"g.yaml": "connectors: {id: gh}\n"},
     "`connectors` must be a list"),
    (["--config-file", "g.yaml"], {"g.yaml": "agents: [{name: Bot, api_keys: aaf_test_x}]\n"},
     "agents[0].api_keys: expected a list of strings"),
    (["--upstream-ca", "none.pem"], {}, "cannot read --upstream-ca `none.pem`: No such file"),
    (["--upstream-ca", "ca.pem"], {"ca.pem": "hello\n"}, "`ca.pem` holds no PEM certificate"),
    (["--ca-dir", "file/ca"], {"file": ""}, "cannot use --ca-dir `file/ca`: Not a directory"),
    (["--listen", "127.0.0.1:{busy}"], {},
     "cannot listen on 127.0.0.1:{busy}: Address already in use (--listen HOST:0 picks"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "files", "said"), _CANNOT_START,
                         ids=[" ".join(c[0]) for c in _CANNOT_START])  # fmt: skip
def test_what_stops_it_is_said_in_one_line(
    tmp_path: Path, busy_port: int, args: list[str], files: dict[str, str], said: str
) -> None:
    for name, text in {"gateway.yaml": "agents: []\n", **files}.items():
        (tmp_path / name).write_text(text)
    args = [a.replace("{busy}", str(busy_port)) for a in args]
    base = [] if "--config-file" in args else ["--config-file", "gateway.yaml"]
    listen = [] if "--listen" in args else ["--listen", "127.0.0.1:0"]
    done = subprocess.run([sys.executable, "-m", "agentfirewall_proxy", *base, *listen, *args],
                          cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m agentfirewall_proxy: error: ")
    assert said.replace("{busy}", str(busy_port)) in last
    assert "Traceback" not in done.stderr


# -- the embedding sample, as written ------------------------------------------------------


def test_the_code_sample_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "embed.py").write_text(fenced("python", "build_gateway"))
    done = subprocess.run([sys.executable, "embed.py"], cwd=tmp_path, env=clean_env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = re.search(r"It prints `(.*?)`, then `(.*?)`\.", DOC)
    assert said is not None
    assert done.stdout.splitlines() == [said.group(1), said.group(2)]
    assert done.stderr == ""


# -- --upstream-proxy ----------------------------------------------------------------------


def test_upstream_proxy_credentials_are_percent_decoded(
    tmp_path: Path, fakes: FakeUpstreams
) -> None:
    """`http://USER:PASSWORD@HOST:PORT` as curl reads it: `%40` is `@` (it was sent as is)."""
    proxy = ConnectRelay({"api.github.com:443": fakes["github"].tls_port})  # it resolves
    (tmp_path / "gateway.yaml").write_text(fenced("yaml", "# gateway.yaml"))
    try:
        running = start(tmp_path, ["--config-file", "gateway.yaml", "--listen", "127.0.0.1:0",
                                   "--upstream-ca", str(fakes.ca_path), "--upstream-proxy",
                                   f"http://corp%40ops:p%3Ass@127.0.0.1:{proxy.port}"],
                        clean_env(GITHUB_TOKEN=TOKEN))  # fmt: skip
        try:
            with session(running) as http:
                assert http.get("https://api.github.com/repos/acme/api/pulls").status_code == 200
        finally:
            assert running.stop() == 0
    finally:
        proxy.stop()
    (head,) = proxy.heads
    assert head.startswith(b"CONNECT api.github.com:443 HTTP/1.1\r\n")
    sent = re.search(rb"Proxy-Authorization: Basic (\S+)", head)
    assert sent is not None
    assert base64.b64decode(sent.group(1)) == b"corp@ops:p:ss"


# -- beside `tf up`: the doc's first command, with the project's token and CA --------------


AGENT = """\
import os, sys
import requests

proxy = os.environ["HTTPS_PROXY"]  # tf up's gateway; this one listens on another port
assert proxy == os.environ["HTTP_PROXY"]
mine = {"https": proxy.rsplit(":", 1)[0] + ":" + sys.argv[1]}
print(requests.get("https://api.github.com/repos/acme/api/pulls", proxies=mine).status_code)
denied = requests.delete("https://api.github.com/repos/acme/api", proxies=mine)
print(denied.status_code, denied.json()["error"])
"""


@pytest.fixture
def project(
    tmp_path: Path,
    tf_bin: Path,  # noqa: F811 (the fixture imported above)
    fakes: FakeUpstreams,
) -> Iterator[Project]:
    root = tmp_path / "myproject"
    root.mkdir()
    made = Project(root, tf_bin, fakes)
    try:
        yield made
    finally:
        made.stop_up()


@pytest.mark.slow
def test_the_control_plane_command_beside_tf_up(project: Project) -> None:
    first = fenced("", "--control-plane").splitlines()[0]
    assert first.split() == ["python", "-m", "agentfirewall_proxy", "--control-plane",
                             "http://127.0.0.1:3000", "--token", "tfg_..."]  # fmt: skip
    up = project.up()
    project.tf("connector", "add", "github", "--token", TOKEN)
    project.tf("permissions", "set", "--gateway", "Bot", "--connector", "github",
               "--action", "github.pr.*", "--decision", "allow")  # fmt: skip
    assert project.fakes is not None
    command = first.replace("http://127.0.0.1:3000", up["server_url"]).split()[3:]
    env = clean_env()

    wrong = start(project.root, [*command[:-1], "tfg_wrong"], env, wait=False)
    try:
        wait_until(lambda: "is --token its gateway token (tfg_...)?" in wrong.text(), "a hint")
        assert "answered 401" in wrong.text()
    finally:
        wrong.stop()

    token = (project.root / ".tf" / "gateway.token").read_text().strip()
    args = [*command[:-1], token, "--listen", "127.0.0.1:0", "--access-log",
            "--log-format", "json", *upstream_args(project.fakes)]  # fmt: skip
    running = start(project.root, args, env)
    try:
        project.agent("agent.py", AGENT)
        done = project.tf("run", "--name", "Bot", "python", "agent.py", str(running.port))
        assert done.stdout.splitlines() == ["200", "403 denied"], done.stderr
        lines = [json.loads(line) for line in running.text().splitlines()]
        ids = {line["request_id"] for line in lines if line["logger"].endswith(".access")}
        assert len(ids) == 2
        assert all("trace_id" in line for line in lines)

        def shipped() -> bool:  # the traffic of this gateway, in the project's `tf logs`
            logs = project.tf_json("logs", "--last", "20")["traffic"]
            return ids <= {record["request_id"] for record in logs}

        wait_until(shipped, "the gateway's traffic in `tf logs`")
        listens = [p["listen"] for p in project.tf_json("status")["gateway"]["proxies"]]
        assert f"127.0.0.1:{running.port}" in listens  # its heartbeat
    finally:
        assert running.stop() == 0, running.text()
