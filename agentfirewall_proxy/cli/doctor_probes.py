"""The HTTP clients `tf doctor` runs through the gateway, and how it judges each answer.

Each probe is a small program run by the user's own interpreter or tool (not `tf`'s), in
exactly the environment `tf run` gives an agent. It prints the HTTP status on its first line and
the body after it, ``missing`` when its library is not installed (``unusable`` and why when it
does not load there), or ``error`` and the error.
A client goes through the gateway when it gets the gateway's own 403 JSON (it carries a
``request_id``); anything else means it bypassed the gateway or did not trust its CA, and the
probe's ``fix`` says what to change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "NODE_CHECK",
    "NODE_MINIMUM",
    "NODE_PROBES",
    "PYTHON_PROBES",
    "TOOL_PROBES",
    "Probe",
    "judge",
    "judge_node",
]

Runtime = Literal["python", "node", "tool"]


@dataclass(frozen=True)
class Probe:
    name: str
    runtime: Runtime
    code: str  # Python or Node source, the URL in argv[1] ("" for a tool)
    fix: str
    argv: tuple[str, ...] = ()  # a tool's command line, the URL appended


def _py(module: str, body: str) -> str:
    """A Python probe: `missing` without `module`, else `body` with ``url`` bound."""
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return (
        "import sys\nurl = sys.argv[1]\n"
        f"try:\n    import {module}\nexcept ImportError:\n    print('missing')\n    sys.exit(0)\n"
        f"try:\n{lines}\n"
        "except Exception as exc:\n    print('error')\n    print(repr(exc)[:300])\n"
    )


PYTHON_PROBES = (
    Probe(
        "requests",
        "python",
        _py("requests", "r = requests.get(url, timeout=15)\nprint(r.status_code)\nprint(r.text)"),
        "requests honours HTTPS_PROXY and REQUESTS_CA_BUNDLE: check that nothing sets "
        "`session.trust_env = False` or `proxies={}`",
    ),
    Probe(
        "httpx",
        "python",
        _py("httpx", "r = httpx.get(url, timeout=15)\nprint(r.status_code)\nprint(r.text)"),
        "httpx honours HTTPS_PROXY and SSL_CERT_FILE unless given `trust_env=False`, "
        "`proxy=` or `verify=`: drop those",
    ),
    Probe(
        "urllib",
        "python",
        _py(
            "urllib.request",
            "import urllib.error\n"
            "try:\n"
            "    r = urllib.request.urlopen(url, timeout=15)\n"
            "    print(r.status)\n    print(r.read().decode())\n"
            "except urllib.error.HTTPError as x:\n"
            "    print(x.code)\n    print(x.read().decode())",
        ),
        "urllib honours HTTPS_PROXY unless an opener is built with ProxyHandler({})",
    ),
    Probe(
        "urllib3 PoolManager",
        "python",
        _py(
            "urllib3",
            "r = urllib3.PoolManager().request('GET', url, timeout=15, retries=False)\n"
            "print(r.status)\nprint(r.data.decode())",
        ),
        "urllib3.PoolManager ignores HTTPS_PROXY: use requests or httpx, or "
        "urllib3.ProxyManager(<HTTPS_PROXY without user:key@>, proxy_headers="
        "urllib3.make_headers(proxy_basic_auth='<user:key from HTTPS_PROXY>'))",
    ),
    Probe(
        "aiohttp",
        "python",
        _py(
            "aiohttp",
            "import asyncio\n"
            "async def main():\n"
            "    async with aiohttp.ClientSession() as s, s.get(url) as r:\n"
            "        print(r.status)\n        print(await r.text())\n"
            "asyncio.run(main())",
        ),
        "aiohttp ignores HTTPS_PROXY by default: create sessions with "
        "aiohttp.ClientSession(trust_env=True)",
    ),
    Probe(
        "stripe",
        "python",
        _py(
            "stripe",
            "client = stripe.new_default_http_client()  # what stripe's API calls use\n"
            "body, status, _ = client.request('get', url, {'Authorization': 'Bearer sk_test_x'})\n"
            "print(status)\nprint(body.decode() if isinstance(body, bytes) else body)",
        ),
        "stripe-python trusts the gateway CA only through the sitecustomize `tf run` puts on "
        "PYTHONPATH: keep PYTHONPATH (no `python -I`/`-E`) and don't set "
        "stripe.ca_bundle_path or stripe.proxy yourself",
    ),
)


def _node(module: str, body: str) -> str:
    """A Node probe of a package: `missing` when `module` does not resolve from the working
    directory (the project), `unusable` when it does not load, else `body` with ``lib`` (its
    default export) and ``url`` bound. ``import()`` loads CommonJS and ESM-only packages."""
    return (
        "const url=process.argv[1];"
        f"import({module!r}).then(async(m)=>{{const lib=m.default||m;{body}}},(e)=>{{"
        "if(e&&e.code==='ERR_MODULE_NOT_FOUND'){console.log('missing');return}"
        "console.log('unusable');console.log(String(e&&e.message||e))})"
        ".catch(e=>{console.log('error');console.log(String(e&&e.cause||e))})"
    )


_PRELOAD = "the preload `tf run` adds to NODE_OPTIONS"
_KEEP_NODE_OPTIONS = "keep NODE_OPTIONS (add to it, don't replace it)"
_OWN_AGENT = (
    "an `agent` with its own connection code needs the proxy itself: "
    "`new HttpsProxyAgent(process.env.HTTPS_PROXY)` (https-proxy-agent)"
)
_ON_AGENTS = f"it uses Node's http/https agents, which {_PRELOAD} routes: {_KEEP_NODE_OPTIONS}"


def _fetch_body(status: str, text: str) -> str:
    return f"console.log({status});console.log({text})"


NODE_PROBES = (
    Probe(
        "node fetch",
        "node",
        "fetch(process.argv[1]).then(async r=>{console.log(r.status);"
        "console.log(await r.text())})"
        ".catch(e=>{console.log('error');console.log(String(e&&e.cause||e))})",
        f"Node's fetch goes through {_PRELOAD}: {_KEEP_NODE_OPTIONS}, and install no global "
        "dispatcher of your own (undici's setGlobalDispatcher)",
    ),
    Probe(
        "node https",
        "node",
        "const req=require('https').get(process.argv[1],{timeout:15000},r=>{let b='';"
        "r.on('data',c=>b+=c);r.on('end',()=>{console.log(r.statusCode);console.log(b)})});"
        "req.on('error',e=>{console.log('error');console.log(String(e))});"
        "req.on('timeout',()=>req.destroy(new Error('timed out')))",
        f"Node's http/https agents go through {_PRELOAD}: {_KEEP_NODE_OPTIONS}; {_OWN_AGENT}",
    ),
    Probe(
        "node-fetch",
        "node",
        _node("node-fetch", "const r=await lib(url);" + _fetch_body("r.status", "await r.text()")),
        f"node-fetch: {_ON_AGENTS}; {_OWN_AGENT}",
    ),
    Probe(
        "got",
        "node",
        _node(
            "got",
            "const r=await lib(url,{throwHttpErrors:false,retry:{limit:0},"
            "timeout:{request:15000}});" + _fetch_body("r.statusCode", "r.body"),
        ),
        f"got: {_ON_AGENTS}; {_OWN_AGENT}; `http2: true` is not routed",
    ),
    Probe(
        "axios",
        "node",
        _node(
            "axios",
            "const r=await lib.get(url,{validateStatus:()=>true,timeout:15000,"
            "transformResponse:x=>x});" + _fetch_body("r.status", "r.data"),
        ),
        "axios honours HTTPS_PROXY itself: don't pass `proxy: false` or an agent of your own",
    ),
    Probe(
        "undici",
        "node",
        _node(
            "undici",
            "const r=await lib.request(url);" + _fetch_body("r.statusCode", "await r.body.text()"),
        ),
        f"undici's request and fetch use the global dispatcher {_PRELOAD} installs: "
        f"{_KEEP_NODE_OPTIONS}, and pass no `dispatcher` of your own",
    ),
)

#: The oldest Node `tf run`'s preload supports (checked on 18 and 20): global fetch, and
#: undici's dispatcher shared by every copy of undici in the process.
NODE_MINIMUM = 18
#: Which Node runs, and what the preload installed in it (null: it did not load).
NODE_CHECK = (
    "console.log(JSON.stringify({version:process.version,"
    "preload:globalThis[Symbol.for('tameflare.preload')]||null}))"
)


def judge_node(stdout: str, stderr: str) -> tuple[bool, str]:
    """Whether this Node runs `tf run`'s preload, and what to do when it does not."""
    try:
        found = json.loads(stdout.strip().splitlines()[-1])
        version = str(found["version"])
    except (ValueError, IndexError, KeyError, TypeError):
        return False, f"does not run ({' '.join(stderr.split())[:160] or 'no output'})"
    major = version.lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < NODE_MINIMUM:
        return False, (
            f"Node {version} is older than Node {NODE_MINIMUM}, the oldest `tf run` supports: "
            f"its clients are not known to go through the gateway; fix: install Node "
            f"{NODE_MINIMUM} or later (20 LTS: `nvm install 20`, or your package manager's nodejs)"
        )
    preload = found.get("preload")
    if not isinstance(preload, dict):
        return False, (
            f"Node {version} did not load {_PRELOAD}: every Node client bypasses the gateway; "
            f"fix: {_KEEP_NODE_OPTIONS}"
        )
    routed = preload.get("fetch")
    if routed == "not routed" or not preload.get("agents"):
        return False, (
            f"Node {version}: the preload could not route fetch ({routed}): undici's "
            f"requests are refused; fix: install Node {NODE_MINIMUM} or later and leave its "
            "fetch on (no --no-experimental-fetch), or add the `undici` package to the project"
        )
    return True, f"Node {version}: the preload routes the http/https agents and fetch ({routed})"


TOOL_PROBES = (
    Probe(
        "curl",
        "tool",
        "",
        "curl honours https_proxy and CURL_CA_BUNDLE: check ~/.curlrc for `noproxy` or `--cacert`",
        ("curl", "-sS", "--max-time", "15", "-w", "\n%{http_code}", "-o", "-"),
    ),
    Probe(
        "wget",
        "tool",
        "",
        "wget trusts the gateway CA through the WGETRC file `tf run` sets: don't override "
        "WGETRC, and don't pass --no-proxy or --ca-certificate",
        ("wget", "-nv", "-S", "--content-on-error", "--timeout=15", "--tries=1", "-O", "-"),
    ),
)


def status_and_body(probe: Probe, stdout: str, stderr: str) -> tuple[str, str]:
    """The status line and the body a probe's output holds."""
    if probe.name == "curl":  # body first, status last
        lines = stdout.rstrip("\n").splitlines()
        if not lines:
            return "error", stderr.strip()
        return lines[-1], "\n".join(lines[:-1]) or stderr.strip()
    if probe.name == "wget":  # headers on stderr (-S), the body on stdout
        codes = [
            line.split()[1]
            for line in stderr.splitlines()
            if line.strip().startswith("HTTP/") and len(line.split()) > 1
        ]
        if not codes:
            return "error", stderr.strip()
        return codes[-1], stdout
    lines = stdout.strip().splitlines()
    if not lines:
        return "error", stderr.strip()
    return lines[0], "\n".join(lines[1:])


def judge(probe: Probe, stdout: str, stderr: str) -> tuple[bool | None, str]:
    """(True: through the gateway; False: not; None: not installed) and what to tell."""
    status, body = status_and_body(probe, stdout, stderr)
    if status == "missing":
        return None, "not installed (not checked)"
    if status == "unusable":
        return None, f"does not load here ({' '.join(body.split())[:160]}) (not checked)"
    answer: Any
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if status == "403" and isinstance(answer, dict) and "request_id" in answer:
        return True, "through the gateway, CA trusted"
    seen = " ".join(body.split())[:160] or "no answer"
    lowered = seen.lower()
    if "certificate" in lowered and ("verify" in lowered or "issuer" in lowered):
        return False, f"does not trust the gateway CA ({seen}); fix: {probe.fix}"
    return False, f"bypasses the gateway ({status}: {seen}); fix: {probe.fix}"
