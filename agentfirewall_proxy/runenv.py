"""The child environment of ``tf run``: every variable that routes an agent through the gateway.

Pure functions over data (``build_child_env``, ``build_ca_bundle``, ``proxy_url_for``) plus one
small writer (``write_support_files``) that puts the CA bundle, the Python ``sitecustomize`` and
the Node.js preload into the state directory. What each client honours is recorded in
``client-compat``: both cases of the proxy variables, a CA bundle (system CAs + gateway CA) in
every CA variable, ``NODE_OPTIONS=--require`` for Node (its http/https agents and its global
``fetch``, which ignore the proxy variables before Node 24), a ``sitecustomize``
for stripe-python, which ignores every CA variable, and ``WGETRC`` naming the bundle for wget.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

__all__ = [
    "CA_VARIABLES",
    "PLACEHOLDER_KEYS",
    "PROXY_VARIABLES",
    "RunSpec",
    "SupportFiles",
    "build_ca_bundle",
    "build_child_env",
    "control_plane_hosts",
    "proxy_url_for",
    "read_system_ca",
    "render_sitecustomize",
    "render_wgetrc",
    "write_support_files",
]

PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)
NO_PROXY_VARIABLES = ("NO_PROXY", "no_proxy")
CA_VARIABLES = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "PIP_CERT",
    "AWS_CA_BUNDLE",
    "HTTPLIB2_CA_CERTS",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "NIX_SSL_CERT_FILE",
)
# SDKs that refuse to start without a key get an obvious placeholder; the gateway replaces the
# agent's auth header with the connector's real credential.
PLACEHOLDER_KEYS: dict[str, str] = {
    "OPENAI_API_KEY": "sk-tameflare-placeholder",
    "ANTHROPIC_API_KEY": "sk-ant-tameflare-placeholder",
    "STRIPE_API_KEY": "sk_test_tameflare_placeholder",
    "GITHUB_TOKEN": "ghp_tameflare_placeholder",
    "SLACK_BOT_TOKEN": "xoxb-tameflare-placeholder",
    # AWS SDKs sign every request: with these keys, and the gateway re-signs (SigV4)
    "AWS_ACCESS_KEY_ID": "AKIATAMEFLAREPLACEHOLDER",
    "AWS_SECRET_ACCESS_KEY": "tameflare-placeholder-secret-not-a-real-key",
}
#: Removed from the agent's environment: real AWS credentials and where they come from.
AWS_UNSET = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)
# Never handed to an agent: they would let it reconfigure or impersonate the firewall, read
# its vault or its database (every secret setting of the server, under each of its names).
CONTROL_SECRETS = (
    "TF_ADMIN_TOKEN",
    "TF_GATEWAY_TOKEN",
    "SIGNING_KEY_PRIVATE",
    "SETTINGS_ENCRYPTION_KEY",
    "AGENTFIREWALL_SIGNING_KEY",
    "AGENTFIREWALL_ENCRYPTION_KEY",
    "AGENTFIREWALL_ENCRYPTION_KEYS_PREVIOUS",
    "AGENTFIREWALL_GATEWAY_TOKEN",
    "AGENTFIREWALL_ADMIN_TOKEN",
    "AGENTFIREWALL_METRICS_TOKEN",
    "AGENTFIREWALL_DATABASE_URL",
)
_WELL_KNOWN_CA_FILES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/usr/local/etc/openssl/cert.pem",
)
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"


@dataclass(frozen=True, slots=True)
class SupportFiles:
    """Files ``tf run`` points the child at (all inside the state directory)."""

    ca_bundle: Path
    python_dir: Path
    node_preload: Path
    wgetrc: Path | None = None  # wget reads no CA variable: its startup file names the bundle


@dataclass(frozen=True, slots=True)
class RunSpec:
    """Everything the child environment depends on besides the inherited environment."""

    proxy_url: str
    agent_name: str
    agent_key: str
    files: SupportFiles
    secret_env: tuple[str, ...] = ()
    node_modules: Path | None = None
    no_proxy: tuple[str, ...] = ()  # the control plane's host(s): see control_plane_hosts


def control_plane_hosts(server_url: str) -> tuple[str, ...]:
    """What ``NO_PROXY`` exempts: the host of the control plane ``tf`` talks to, nothing else.

    A loopback server is exempt under both usual spellings (``127.0.0.1,localhost``, plus the
    URL's own when it is another loopback address), since SDK agents name it either way.
    """
    host = (urlsplit(server_url).hostname or "").lower().rstrip(".")
    if not host:
        return ()
    if host == "localhost" or host.endswith(".localhost") or _is_loopback_ip(host):
        return tuple(dict.fromkeys(("127.0.0.1", "localhost", host)))
    return (host,)


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def proxy_url_for(proxy_url: str, agent_name: str, agent_key: str) -> str:
    """``http://127.0.0.1:8443`` + ``DevOps Bot`` → ``http://DevOps%20Bot:aaf_…@127.0.0.1:8443``."""
    parts = urlsplit(proxy_url)
    if not parts.hostname or parts.scheme not in ("http", "https"):
        raise ValueError(f"proxy url `{proxy_url}` is not an http(s) url with a host")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{quote(agent_name, safe='')}:{quote(agent_key, safe='')}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, "", "", ""))


def _node_options(existing: str, preload: Path) -> str:
    """The preload's ``--require`` first, then the user's options: Node loads preloads in
    order, and one of the user's that makes a request while loading must find it routed."""
    path = str(preload)
    flag = f'--require "{path}"' if " " in path else f"--require {path}"
    return f"{flag} {existing.replace(flag, '').strip()}".strip()


def build_child_env(base: Mapping[str, str], spec: RunSpec) -> dict[str, str]:
    """The environment of the agent process: ``base`` with the gateway wired in."""
    env = dict(base)
    for name in (*spec.secret_env, *CONTROL_SECRETS, *NO_PROXY_VARIABLES, *AWS_UNSET):
        env.pop(name, None)
    url = proxy_url_for(spec.proxy_url, spec.agent_name, spec.agent_key)
    env.update(dict.fromkeys(PROXY_VARIABLES, url))
    env.update(dict.fromkeys(CA_VARIABLES, str(spec.files.ca_bundle)))
    env["TF_CA_BUNDLE"] = str(spec.files.ca_bundle)
    if spec.files.wgetrc is not None:
        env["WGETRC"] = str(spec.files.wgetrc)
    env["NODE_USE_ENV_PROXY"] = "1"
    env["NODE_OPTIONS"] = _node_options(env.get("NODE_OPTIONS", ""), spec.files.node_preload)
    if spec.node_modules is not None:
        env["TF_NODE_MODULES"] = str(spec.node_modules)
    python_path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(spec.files.python_dir), python_path) if p)
    env.update(PLACEHOLDER_KEYS)
    env["TF_AGENT_NAME"] = spec.agent_name
    if spec.no_proxy:
        env.update(dict.fromkeys(NO_PROXY_VARIABLES, ",".join(spec.no_proxy)))
    return env


def _pem_blocks(text: str) -> Iterable[str]:
    start = text.find(_PEM_BEGIN)
    while start != -1:
        end = text.find(_PEM_END, start)
        if end == -1:
            return
        yield text[start : end + len(_PEM_END)]
        start = text.find(_PEM_BEGIN, end)


def build_ca_bundle(system_pems: Iterable[str], gateway_ca_pem: str) -> str:
    """One PEM bundle: the gateway CA first, then every distinct system certificate."""
    gateway = list(_pem_blocks(gateway_ca_pem))
    if not gateway:
        raise ValueError("the gateway CA holds no PEM certificate")
    seen: set[str] = set()
    blocks: list[str] = []
    for block in (*gateway, *(b for text in system_pems for b in _pem_blocks(text))):
        if block not in seen:
            seen.add(block)
            blocks.append(block)
    return "\n".join(blocks) + "\n"


def read_system_ca(env: Mapping[str, str], own_bundle: Path | None = None) -> list[str]:
    """PEM text of the trust the user already has (inherited CA variables, OS store, certifi)."""
    candidates = [env.get(name, "") for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")]
    paths = ssl.get_default_verify_paths()
    candidates += [paths.cafile or "", paths.openssl_cafile or "", *_WELL_KNOWN_CA_FILES]
    try:
        import certifi

        candidates.append(certifi.where())
    except ImportError:
        pass
    texts: list[str] = []
    seen: set[Path] = set()
    for candidate in candidates:
        if not candidate:
            continue
        path = Path(candidate).resolve()
        if path in seen or path == own_bundle or not path.is_file():
            continue
        seen.add(path)
        texts.append(path.read_text(encoding="ascii", errors="ignore"))
    return texts


def render_sitecustomize() -> str:
    """A ``sitecustomize`` that points stripe-python at ``TF_CA_BUNDLE`` and chains to the next."""
    return _SITECUSTOMIZE


def _write(path: Path, text: str) -> None:
    """Write `path` whole (0600), atomically: a temporary file of its own in the same
    directory, renamed over it, so two `tf run` starting together never share one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:  # mkstemp: 0600 already
            out.write(text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def render_wgetrc(ca_bundle: Path, user_wgetrc: str = "") -> str:
    """wget's startup file: the user's own settings, then the gateway's CA bundle."""
    head = "# Written by `tf run`: your wgetrc, then the TameFlare gateway's CA bundle.\n"
    own = user_wgetrc if not user_wgetrc or user_wgetrc.endswith("\n") else user_wgetrc + "\n"
    return f"{head}{own}ca_certificate = {ca_bundle}\n"


def _user_wgetrc(env: Mapping[str, str], ours: Path) -> str:
    """The startup file wget would have read (``$WGETRC``, else ``~/.wgetrc``), if any."""
    named = env.get("WGETRC")
    path = Path(named) if named else Path(env.get("HOME") or Path.home()) / ".wgetrc"
    try:
        if path.resolve() == ours.resolve():
            return ""
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def write_support_files(
    run_dir: Path,
    bundle_pem: str,
    node_preload_js: str,
    env: Mapping[str, str] | None = None,
) -> SupportFiles:
    """Write the bundle, ``sitecustomize.py``, the Node preload and a wgetrc under ``run_dir``.

    `env` (default: this process's) tells which wgetrc the user already has; it is kept.
    """
    files = SupportFiles(
        ca_bundle=run_dir / "ca-bundle.pem",
        python_dir=run_dir / "python",
        node_preload=run_dir / "node" / "tf-preload.js",
        wgetrc=run_dir / "wgetrc",
    )
    assert files.wgetrc is not None
    _write(files.ca_bundle, bundle_pem)
    _write(files.python_dir / "sitecustomize.py", render_sitecustomize())
    _write(files.node_preload, node_preload_js)
    user = _user_wgetrc(os.environ if env is None else env, files.wgetrc)
    _write(files.wgetrc, render_wgetrc(files.ca_bundle, user))
    return files


_SITECUSTOMIZE = '''\
"""Written by `tf run`: trust the TameFlare gateway CA in clients that ignore SSL_CERT_FILE."""

import os
import sys


def _tf_install() -> None:
    import importlib.abc
    import importlib.machinery
    import importlib.util

    bundle = os.environ.get("TF_CA_BUNDLE")
    here = os.path.dirname(os.path.abspath(__file__))
    if bundle:

        class _StripeFinder(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
                if name != "stripe":
                    return None
                spec = importlib.machinery.PathFinder.find_spec(name, path)
                if spec is None or spec.loader is None:
                    return spec
                original = spec.loader.exec_module

                def exec_module(module):  # type: ignore[no-untyped-def]
                    original(module)
                    module.ca_bundle_path = bundle

                spec.loader.exec_module = exec_module  # type: ignore[method-assign]
                return spec

        sys.meta_path.insert(0, _StripeFinder())
    # chain to the sitecustomize this one shadows, if any
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_tf_install()
'''
