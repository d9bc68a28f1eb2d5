"""When tracing is on, and that off it costs nothing: no OpenTelemetry import, no span."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from agentfirewall_server.otel import JsonFormatter, otel_problem, traces_endpoint

URL = "http://127.0.0.1:4318"


@pytest.mark.parametrize(
    ("configured", "env", "expected"),
    [
        (None, {}, None),
        (URL, {}, URL + "/v1/traces"),
        (URL + "/", {}, URL + "/v1/traces"),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": URL}, URL + "/v1/traces"),
        (None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": URL + "/t"}, URL + "/t"),
        (
            None,
            {"OTEL_EXPORTER_OTLP_ENDPOINT": URL, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": URL + "/t"},
            URL + "/t",
        ),
        ("http://flag:4318", {"OTEL_EXPORTER_OTLP_ENDPOINT": URL}, "http://flag:4318/v1/traces"),
        (URL, {"OTEL_SDK_DISABLED": "true"}, None),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": URL, "OTEL_TRACES_EXPORTER": "none"}, None),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, None),
    ],
)
def test_tracing_is_on_only_when_an_endpoint_is_configured(
    configured: str | None, env: dict[str, str], expected: str | None
) -> None:
    assert traces_endpoint(configured, env) == expected


def test_the_installed_extra_has_no_problem() -> None:
    assert otel_problem(URL) is None
    assert otel_problem(None) is None


_OFF = """
import sys
from pathlib import Path
from agentfirewall_server.app import create_app
from agentfirewall_server.settings import Settings
from agentfirewall_proxy.control import StaticControl
from agentfirewall_proxy.main import build_gateway, parse_args
app = create_app(Settings(data_dir=Path(sys.argv[1])))
assert app.state.af.tracing is None and not app.state.af.observed
options = parse_args(["--config-file", "none.json", "--ca-dir", sys.argv[1]])
gateway = build_gateway(options, control=StaticControl({"version": 1}))
assert gateway.tracer is None
from agentfirewall.client._base import trace_headers
assert trace_headers() == {}  # the SDK sends no trace context unless the agent traces
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
print(loaded)
"""


def test_off_nothing_of_opentelemetry_is_imported(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _OFF, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_json_log_lines_carry_fields_and_no_trace_when_none_is_current() -> None:
    record = logging.LogRecord("agentfirewall_server", logging.WARNING, __file__, 1,
                               "could not %s", ("x",), None)  # fmt: skip
    record.fields = {"route": "tameflare.decide"}
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "warning"
    assert line["message"] == "could not x"
    assert line["route"] == "tameflare.decide"
    assert line["trace_id"] is None
    assert line["ts"].endswith("Z")


_DEBUG_LOG_SCRIPT = """
import http.server, logging, logging.config, threading
import httpx
from agentfirewall_server.otel import use_json_logs

class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("X-Echo", self.headers["Authorization"])
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
threading.Thread(target=server.serve_forever, daemon=True).start()
logging.config.dictConfig(use_json_logs("debug"))
logging.getLogger("agentfirewall_server.check").debug("debug is on")
url = f"http://127.0.0.1:{server.server_address[1]}/"
httpx.get(url, headers={"Authorization": "Bearer whsec_SECRET_in_a_header"})
server.shutdown()
"""


def test_debug_logging_never_writes_raw_http_headers() -> None:
    """With `--log-level debug --log-format json`, every logger went to the JSON handler at
    DEBUG, httpx's and httpcore's too, whose debug lines carry the raw headers: an injected
    credential an upstream echoed back was written to the log in clear (the API answer
    redacts it). Those loggers now stay at WARNING."""
    done = subprocess.run([sys.executable, "-c", _DEBUG_LOG_SCRIPT], capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    assert "debug is on" in done.stderr
    assert "whsec_SECRET" not in done.stderr
