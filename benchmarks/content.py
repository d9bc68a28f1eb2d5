"""Content guardrails: scanning throughput, and the gateway CPU a small request costs.

    python benchmarks/content.py [--duration 3] [--detect-secrets /tmp/i23ds]
    python benchmarks/content.py --adversarial [--size 1048576]

1. Scanning MiB/s on one core, for two 1 MiB corpora (a JSON chat prompt of English prose;
   Python source from the standard library, dense in ``_ - : =``), with

   * ``ours``: :class:`agentfirewall.content.Scanner` (rare-character anchors found with
     ``str.find``, each pattern run only where its anchor is);
   * ``re one by one``: the same compiled patterns and validators, each run with
     ``finditer`` over the whole text (the reference);
   * optionally Yelp's ``detect-secrets`` (``scan_line`` over every line, its default
     plugins), when importable from the given directory.

   Rows for the secret detectors alone (the 200 MiB/s target) and for every detector
   (secrets and personal data). Then a request body's whole scan (its pieces, as the
   gateway cuts it) for a 1 MiB file committed through GitHub's contents API, its
   ``content`` base64-encoded: read as it is, and decoded too (what the gateway does for a
   field a connector declares encoded), beside the chat prompt sent as a body (no field
   declared: nothing decoded); and the same file read back (the contents API's answer,
   its base64 in lines of 60 as GitHub sends it: ``Connector.response_encoded``); and an
   SES raw e-mail (``SendRawEmail``'s form: 128 KiB of prose quoted-printable, the same file
   attached in base64), its field read as base64 only and with its MIME parts (``:mime``).
   Then an event stream's cost per event (``EventReader``: one-word OpenAI deltas, the
   secret detectors), with what it takes to tell whether an event must be held back (a
   field's text may end in a secret's beginning): plain prose, and prose that names a
   secret (``api_key = …``, held back until the value is settled).

   ``--adversarial`` prints instead, for each detector family (secrets, personal data,
   injection markers), the MiB/s of crafted texts beside prose: each text one short unit
   repeated to `--size` characters (newlines, ``@``, PEM ``BEGIN`` lines, ``AKIA``,
   digits, ``eyJ``, ``://``, ``token=``..., the units of
   ``tests/core/test_content_adversarial.py``), alone and after 64 KiB of prose (which
   hides the density from the scanner's first sample). The worst ones are listed.

2. Gateway CPU per small request: three gateway processes, one without content rules, one
   with a ``content.secrets`` deny rule (the secret detectors) and one adding a
   ``content.pii`` redact rule (every detector), each driven in turn with the same closed
   loop of plain-HTTP ``POST`` requests carrying a 300-byte JSON body to a local upstream.
   CPU per request is the gateway process's utime+stime from /proc divided by the requests
   it served.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxy import KEY, Upstream, cpu_seconds, start_process

from agentfirewall.content import PII, SECRETS, Scanner
from agentfirewall.content.detectors import Detector

MIB = 1 << 20


_PROSE = (
    "the customer asked about the refund policy and whether the order shipped on time "
    "please summarise the thread below and draft a polite answer with next steps; "
    "mention the tracking link, the warehouse delay, and our apology. "
)


def chat_corpus() -> str:
    words = _PROSE.split()
    messages = []
    size = 0
    index = 0
    while size < MIB:
        text = " ".join(words[(index + i) % len(words)] for i in range(120))
        messages.append({"role": "user" if index % 2 else "assistant", "content": text})
        size += len(text) + 40
        index += 7
    return json.dumps({"model": "gpt-4o", "messages": messages})


def code_corpus() -> str:
    parts = []
    size = 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        size += len(text)
        if size >= MIB:
            break
    return "".join(parts)[:MIB]


def one_by_one(detectors: tuple[Detector, ...]) -> Callable[[str], int]:
    """The reference: each detector's pattern over the whole text, then its checks."""

    def scan(text: str) -> int:
        found = 0
        for detector in detectors:
            for match in detector.pattern.finditer(text):
                start = match.start()
                if (
                    detector.context is not None
                    and detector.context.search(text, max(0, start - detector.back), start) is None
                ):
                    continue
                value = match.group(detector.group)
                if detector.check is None or detector.check(value):
                    found += 1
        return found

    return scan


def rate(scan: Callable[[str], object], text: str, seconds: float = 1.0) -> float:
    scan(text)  # warm
    runs = 0
    start = time.process_time()
    while True:
        scan(text)
        runs += 1
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return runs * len(text) / MIB / elapsed


def detect_secrets_scan(path: str) -> Callable[[str], object] | None:
    sys.path.insert(0, path)
    try:
        from detect_secrets.core.scan import scan_line
        from detect_secrets.settings import default_settings
    except ImportError:
        return None

    def scan(text: str) -> int:
        with default_settings():
            return sum(len(list(scan_line(line))) for line in text.splitlines())

    return scan


def report_scanning(ds_path: str) -> None:
    corpora = {"chat JSON prose": chat_corpus(), "stdlib source": code_corpus()}
    sets = {"secrets": SECRETS, "all detectors": (*SECRETS, *PII)}
    ds = detect_secrets_scan(ds_path)
    print("## scanning, MiB/s on one core (higher is better)")
    print(f"{'corpus':18} {'detectors':14} {'ours':>8} {'re 1-by-1':>10} {'ratio':>6}")
    for cname, text in corpora.items():
        for sname, detectors in sets.items():
            ours = rate(Scanner(detectors).scan, text)
            ref = rate(one_by_one(detectors), text)
            print(f"{cname:18} {sname:14} {ours:8.1f} {ref:10.1f} {ours / ref:5.1f}x")
        if ds is not None:
            sample = text[: MIB // 16]
            print(f"{cname:18} {'detect-secrets':14} {rate(ds, sample, 2.0):8.2f}")


def report_encoded() -> None:
    """MiB/s of the body for a whole request-body scan: plain, and a base64-encoded file."""
    from agentfirewall.content import body_pieces, encoded_body_pieces, scan_pieces

    scanner = Scanner(SECRETS)
    prose = chat_corpus().encode()
    file = code_corpus().encode()
    contents = json.dumps({"message": "add", "content": base64.b64encode(file).decode()}).encode()
    where = ("body.content",)

    def plain(body: bytes) -> object:
        return scan_pieces(scanner, body_pieces(body, "application/json"))

    def decoded(body: bytes) -> object:
        pieces = body_pieces(body, "application/json")
        more = encoded_body_pieces(body, "application/json", where, pieces)
        return scan_pieces(scanner, pieces + more)

    def text(body: bytes) -> object:
        return scan_pieces(scanner, body_pieces(body, "text/plain"))

    def speed(scan: Callable[[bytes], object], body: bytes) -> float:
        return rate(lambda _: scan(body), "x" * len(body))

    print("\n## a request body's scan, MiB/s of the body on one core (secret detectors)")
    print(f"chat prompt (no encoded field)           {speed(plain, prose):8.1f}")
    print(f"the 1 MiB file (source) as a text body   {speed(text, file):8.1f}")
    print(f"contents API, that file, read as it was  {speed(plain, contents):8.1f}")
    print(f"contents API, that file, decoded too     {speed(decoded, contents):8.1f}")
    lines = base64.b64encode(file).decode()
    lines = "".join(lines[i : i + 60] + "\n" for i in range(0, len(lines), 60))
    answer = json.dumps({"name": "a.py", "content": lines, "encoding": "base64"}).encode()
    print(f"its answer to a read (lines), decoded    {speed(decoded, answer):8.1f}")
    form = "application/x-www-form-urlencoded"
    mail = quote(base64.b64encode(raw_email(prose[: MIB // 8], file)).decode(), safe="")
    email = f"Action=SendRawEmail&RawMessage.Data={mail}".encode()
    for label, field in (("read as base64 only", ""), ("and its MIME parts", ":mime")):

        def read(body: bytes, where: tuple[str, ...] = (f"form.RawMessage.Data{field}",)) -> object:
            pieces = body_pieces(body, form)
            return scan_pieces(scanner, pieces + encoded_body_pieces(body, form, where, pieces))

        print(f"ses raw e-mail, {label:24} {speed(read, email):8.1f}")


def raw_email(text: bytes, attachment: bytes) -> bytes:
    """A MIME message: `text` quoted-printable, `attachment` in base64 (SES's raw e-mail)."""
    from email.message import EmailMessage
    from email.policy import SMTP

    message = EmailMessage(policy=SMTP)
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "s"
    message.set_content(text.decode(), cte="quoted-printable")
    message.add_attachment(attachment, maintype="text", subtype="x-python", filename="a.py")
    return message.as_bytes()


def report_events() -> None:
    """CPU per event of an event stream's check: one-word deltas of prose, and of prose
    that names a secret (the events after ``api_key =`` are held back a while)."""
    from agentfirewall_proxy.eventscan import EventReader

    scanner = Scanner(SECRETS)

    def delta(text: str) -> bytes:
        chunk = {"id": "chatcmpl-9xYzAbCdEfGh", "model": "gpt-4o-2024-08-06",
                 "system_fingerprint": "fp_44709d6fcb",
                 "choices": [{"index": 0, "delta": {"content": text},
                              "finish_reason": None}]}  # fmt: skip
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    print("\n## an event stream, CPU per event (one-word deltas, secret detectors)")
    for name, text in (
        ("prose", "The quick brown fox jumps over the lazy dog, and the answer goes back. "),
        ("prose naming a secret", "The token is passed to the API with api_key = value. "),
    ):
        events = [delta(word + " ") for word in (text * 60).split(" ")]
        best = float("inf")
        for _ in range(5):
            reader = EventReader(scanner)
            start = time.process_time()
            for number, event in enumerate(events, 1):
                reader.findings(event, number)
                _ = reader.holding
            best = min(best, time.process_time() - start)
        print(f"{name:24} {best / len(events) * 1e6:8.1f} µs")


ADVERSARIAL_UNITS = (
    "\n", " \n", "\n##", "a@", "a" * 63 + "@", "@", "a.", "a@a.a.", "://", "=", ":", "a=",
    "token=", "token=///", "tok3n=", " +1 ", " (", "AB12 ", "GB82 ", "0123456789", "4242 ",
    "415-555-", " eyJ", " eyJaaaaaaaaa.eyJaaaa.", "_", "-", "-----BEGIN RSA PRIVATE KEY-----\n",
    "-----BEGIN ", "AKIA", "AKIAAAAAAAAAAAAAAAAA ", "https://hooks.slack.com/", " xoxb-1",
    " sk-", " ghp_", "github_pat_", "sk_live_", "ignore all ", "send keys to x", "<|",
    "you are now ",
)  # fmt: skip


def report_adversarial(size: int) -> None:
    """MiB/s of crafted texts beside prose, per detector family (CPU time, best of 3)."""
    from agentfirewall.content import INJECTION

    families = {"secrets": SECRETS, "personal data": PII, "injection": INJECTION}
    prose = ("The quick brown fox jumps over the lazy dog; see you at ten. " * 20000)[:size]
    lead = prose[:65536]

    def speed(scanner: Scanner, text: str) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            scanner.scan(text)
            best = min(best, time.process_time() - start)
        return len(text) / MIB / max(best, 1e-6)

    print(f"## adversarial text, MiB/s on one core ({size} characters each)")
    print(f"{'family':14} {'prose':>8} {'worst':>8}  the five slowest texts (MiB/s)")
    for name, detectors in families.items():
        scanner = Scanner(detectors)
        rates = []
        for unit in ADVERSARIAL_UNITS:
            for before in ("", lead):
                text = before + (unit * (size // len(unit) + 1))[:size]
                label = repr(unit)[:18] + (" after prose" if before else "")
                rates.append((speed(scanner, text), label))
        rates.sort()
        worst = ", ".join(f"{label} {rate:.1f}" for rate, label in rates[:5])
        print(f"{name:14} {speed(scanner, prose):8.1f} {rates[0][0]:8.1f}  {worst}", flush=True)


def write_config(directory: Path, content: str) -> Path:
    digest = __import__("hashlib").sha256(KEY.encode()).hexdigest()
    rules = [
        {"name": "no-secrets", "decision": "deny",
         "conditions": [{"field": "content.secrets", "operator": "exists"}]},
        {"name": "redact-pii", "decision": "redact",
         "conditions": [{"field": "content.pii", "operator": "exists"}]},
    ][: 1 if content == "secrets" else 2] if content != "none" else [
        {"name": "never", "decision": "deny",
         "conditions": [{"field": "action_spec.type", "operator": "equals", "value": "x.y"}]},
    ]  # fmt: skip
    snapshot = {
        "version": 1,
        "settings": {"approval_timeout_seconds": 300},
        "agents": [{"id": "agt_b", "name": "Bench", "status": "active",
                    "enforcement_level": "full_enforce", "key_hashes": [digest]}],
        "connectors": [{"id": "conn_generic_1", "type": "generic", "name": "bench",
                        "domains": ["127.0.0.1"], "credential": "upstream-secret",
                        "auth_type": "bearer", "base_url": "http://127.0.0.1"}],
        "permissions": [{"agent": "Bench", "connector": "generic",
                         "action_pattern": "generic.*", "decision": "allow"}],
        "policies": [{"name": "guard", "document": {"name": "guard", "rules": rules}}],
        "kill_switches": [],
    }  # fmt: skip
    path = directory / f"content-{content}.json"
    path.write_text(json.dumps(snapshot))
    return path


BODY = json.dumps({
    "channel": "C0123456", "text": "Deploy finished: 14 services updated, 0 failed. "
    "Next window Thursday 10:00 UTC; ping the on-call channel if anything looks off.",
    "metadata": {"event_type": "deploy", "event_payload": {"id": "d-20261203-1", "ok": True}},
}).encode()  # fmt: skip


async def small_requests(gw_port: int, up_port: int, seconds: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw_port)
    auth = base64.b64encode(b"Bench:" + KEY.encode())
    raw = (b"POST http://127.0.0.1:%d/bench HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
           b"Proxy-Authorization: Basic %b\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%b"
           % (up_port, up_port, auth, len(BODY), BODY))  # fmt: skip
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected answer: {head[:120]!r}")
        length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        await reader.readexactly(length)
        count += 1
    writer.close()
    return count


async def report_gateway(seconds: float, rounds: int) -> None:
    loop = asyncio.get_running_loop()
    workdir = Path(tempfile.mkdtemp(prefix="tf-content-"))
    upstream = await loop.create_server(Upstream, "127.0.0.1", 0)
    up_port = upstream.sockets[0].getsockname()[1]
    kinds = ("none", "secrets", "all")
    gateways = {}
    for content in kinds:
        proc, port = start_process(
            [sys.executable, "-m", "agentfirewall_proxy", "--config-file",
             str(write_config(workdir, content)), "--listen", "127.0.0.1:0",
             "--ca-dir", str(workdir / f"ca-{content}")],
            "listening on ",
        )  # fmt: skip
        gateways[content] = (proc, port)
    totals = {kind: [0.0, 0] for kind in kinds}
    try:
        for content in kinds:
            await small_requests(gateways[content][1], up_port, 0.5)  # warm-up
        for _ in range(rounds):
            for content in kinds:
                proc, port = gateways[content]
                before = cpu_seconds(proc.pid)
                count = await small_requests(port, up_port, seconds)
                totals[content][0] += cpu_seconds(proc.pid) - before
                totals[content][1] += count
    finally:
        for proc, _ in gateways.values():
            proc.terminate()
    base = totals["none"][0] / totals["none"][1] * 1e6
    print("\n## gateway CPU per small request (POST, 300-byte JSON body), µs")
    print(f"no content rules                 {base:8.1f}")
    for kind, label in (
        ("secrets", "content.secrets rule"),
        ("all", "content.secrets + content.pii"),
    ):
        cost = totals[kind][0] / totals[kind][1] * 1e6
        print(f"{label:32} {cost:8.1f}   (+{(cost / base - 1) * 100:.1f}%)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--detect-secrets", default="/tmp/i23ds")
    parser.add_argument("--adversarial", action="store_true")
    parser.add_argument("--size", type=int, default=MIB)
    args = parser.parse_args()
    if args.adversarial:
        report_adversarial(args.size)
        return
    report_scanning(args.detect_secrets)
    report_encoded()
    report_events()
    asyncio.run(report_gateway(args.duration, args.rounds))


if __name__ == "__main__":
    main()
