"""The page shells and static files, in-process: no browser, no API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import agentfirewall_server.dashboard as dashboard
from agentfirewall_server.dashboard import PAGES, SECURITY_HEADERS

STATIC = Path(dashboard.__file__).parent / "static"
TEMPLATES = Path(dashboard.__file__).parent / "templates"


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = Starlette(routes=[Mount("/dashboard", routes=dashboard.routes())])
    return TestClient(app)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.path)
def test_every_page_renders_with_security_headers(client: TestClient, page: dashboard.Page) -> None:
    response = client.get(f"/dashboard{page.path}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert f"<title>{page.title} · TameFlare</title>" in response.text
    assert 'data-api="/api/v1"' in response.text
    assert 'data-base="/dashboard"' in response.text
    script = page.template.removesuffix(".html")
    assert f'src="/dashboard/static/js/pages/{script}.js"' in response.text


def test_signed_in_pages_have_navigation_and_sign_in_pages_do_not(client: TestClient) -> None:
    overview = client.get("/dashboard/overview").text
    assert 'aria-current="page">Overview</a>' in overview
    assert 'data-signed-in="yes"' in overview
    login = client.get("/dashboard/login").text
    assert "<nav" not in login
    assert 'data-signed-in="no"' in login


def test_agent_page_escapes_the_name_from_the_url(client: TestClient) -> None:
    response = client.get('/dashboard/agents/<script>alert("x")</script>')
    assert response.status_code == 200
    assert "<script>alert" not in response.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in response.text


def test_home_redirects_to_overview(client: TestClient) -> None:
    response = client.get("/dashboard/", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "/dashboard/overview"


def test_app_root_path_is_honoured() -> None:
    app = Starlette(routes=[Mount("/dashboard", routes=dashboard.routes())])
    text = TestClient(app, root_path="/tf").get("/tf/dashboard/traffic").text
    assert 'data-api="/tf/api/v1"' in text
    assert 'data-base="/tf/dashboard"' in text


def test_static_files_are_served(client: TestClient) -> None:
    js = client.get("/dashboard/static/js/api.js")
    assert js.status_code == 200
    assert "javascript" in js.headers["content-type"]
    css = client.get("/dashboard/static/css/dashboard.css")
    assert css.status_code == 200
    assert client.get("/dashboard/static/../pages.py").status_code == 404


def test_every_javascript_import_resolves() -> None:
    files = list(STATIC.rglob("*.js"))
    assert files
    for file in files:
        for target in re.findall(r'from "(\.{1,2}/[^"]+)"', file.read_text()):
            assert (file.parent / target).resolve().is_file(), f"{file.name} imports {target}"


def test_templates_have_no_inline_script_or_style() -> None:
    """The Content-Security-Policy allows neither, so none may exist."""
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template.name
        assert " style=" not in text, template.name
        assert not re.search(r"\son[a-z]+=", text), template.name


def test_javascript_never_writes_html() -> None:
    """Data reaches the page only as text: no innerHTML, outerHTML or insertAdjacentHTML."""
    for file in STATIC.rglob("*.js"):
        text = file.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{file.name} uses {sink}"


def test_every_form_control_has_a_label() -> None:
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        labelled = set(re.findall(r'<label for="([^"]+)"', text))
        for control_id in re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', text):
            assert control_id in labelled or control_id == "live", f"{template.name}: #{control_id}"
