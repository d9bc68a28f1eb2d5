"""Commits to the default branch are named with the branch: a git push with the refs its
commands update, a file write (contents API, GraphQL ``createCommitOnBranch``) with its
``branch``, and github-safe-defaults holds those that reach main/master.

The attack: ``git push origin HEAD:main`` (``POST /o/r.git/git-receive-pack``) or ``PUT
/repos/o/r/contents/x`` with no ``branch`` put commits on main, which the pack promised
to hold; ``git push origin :feature`` deleted a branch the pack denies deleting by REST.
Bodies below are built as git builds them: pkt-lines, four hex digits of length first.
"""

from __future__ import annotations

import gzip
import http.server
import json
import os
import shutil
import string
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfirewall.actions import ActionSpec, parse_action_spec
from agentfirewall.connectors import ConnectorError, HttpRequest, ParsedAction, get_connector
from agentfirewall.connectors.gitpush import read_push
from agentfirewall.policy import AccessRule, Engine, EvaluationContext, load_pack
from agentfirewall.policy.unseen import UNSEEN_REASON, unseen_decision

GH = get_connector("github")
PUSH_URL = "https://github.com/acme/api.git/git-receive-pack"
ZERO, A, B = "0" * 40, "a" * 40, "b" * 40
CAPS = "report-status side-band-64k quiet object-format=sha1 agent=git/2.39.5"
PACK = b"PACK\x00\x00\x00\x02\x00\x00\x00\x00" + b"\x9d" * 20  # what follows: never read


def pkt(payload: str | bytes) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return b"%04x" % (len(data) + 4) + data


def body(*commands: tuple[str, str, str], shallow: tuple[str, ...] = (), lf: str = "") -> bytes:
    """A receive-pack request as git's send-pack writes it (no LF after a command)."""
    lines = [pkt(f"shallow {oid}\n") for oid in shallow]
    for i, (old, new, ref) in enumerate(commands):
        caps = f"\0{CAPS}" if i == 0 else ""
        lines.append(pkt(f"{old} {new} {ref}{caps}{lf}"))
    return b"".join(lines) + b"0000" + PACK


def parse(
    data: bytes, *, complete: bool = True, headers: tuple[tuple[str, str], ...] = ()
) -> ParsedAction:
    return GH.parse(
        HttpRequest.from_url("POST", PUSH_URL, body=data, body_complete=complete, headers=headers)
    )


def named(parsed: ParsedAction) -> tuple[list[str] | None, list[str] | None]:
    params = parsed.spec.parameters
    return params.get("refs"), params.get("deleted_refs")  # type: ignore[return-value]


CERT = [
    "certificate version 0.1\n",
    "pusher Ada <ada@example.com> 1700000000 +0000\n",
    "pushee https://github.com/acme/api.git\n",
    "nonce 1700000000-abc\n",
    "\n",
    f"{A} {B} refs/heads/main\n",
    f"{ZERO} {A} refs/tags/v1\n",
    "-----BEGIN PGP SIGNATURE-----\n",
    "iQEzBAABCAAdFiEE\n",
    "-----END PGP SIGNATURE-----\n",
]
SIGNED = pkt(f"push-cert\0{CAPS}") + b"".join(pkt(line) for line in CERT)
SIGNED += pkt("push-cert-end\n")

# what the body says -> refs (in order, once each), deleted_refs (absent when none)
NAMED: list[tuple[str, bytes, list[str], list[str] | None]] = [
    ("update main", body((A, B, "refs/heads/main")), ["refs/heads/main"], None),
    ("create a branch", body((ZERO, A, "refs/heads/agent/x")), ["refs/heads/agent/x"], None),
    ("delete a branch", body((A, ZERO, "refs/heads/old")), ["refs/heads/old"],
     ["refs/heads/old"]),
    ("delete a tag among updates",
     body((A, B, "refs/heads/feature"), (B, ZERO, "refs/tags/v1"), (ZERO, A, "refs/heads/x")),
     ["refs/heads/feature", "refs/tags/v1", "refs/heads/x"], ["refs/tags/v1"]),
    ("a ref twice", body((A, B, "refs/heads/x"), (B, ZERO, "refs/heads/x")), ["refs/heads/x"],
     ["refs/heads/x"]),
    ("commands ending in LF", body((A, B, "refs/heads/main"), (A, B, "refs/heads/y"), lf="\n"),
     ["refs/heads/main", "refs/heads/y"], None),
    ("a shallow clone's push", body((A, B, "refs/heads/main"), shallow=(A, B)),
     ["refs/heads/main"], None),
    ("sha-256 oids", body(("c" * 64, "0" * 64, "refs/heads/main")), ["refs/heads/main"],
     ["refs/heads/main"]),
    ("upper-case hex", body((A.upper(), B.upper(), "refs/heads/main")), ["refs/heads/main"],
     None),
    ("a signed push: the certificate's commands", SIGNED + b"0000" + PACK,
     ["refs/heads/main", "refs/tags/v1"], None),
    ("a command after the certificate",
     SIGNED + pkt(f"{A} {ZERO} refs/heads/old") + b"0000" + PACK,
     ["refs/heads/main", "refs/tags/v1", "refs/heads/old"], ["refs/heads/old"]),
    ("a non-ASCII branch name", body((A, B, "refs/heads/café")), ["refs/heads/café"], None),
    ("git's probe before a large push", b"0000", [], None),
]  # fmt: skip


@pytest.mark.parametrize(("what", "data", "refs", "deleted"), NAMED, ids=[n[0] for n in NAMED])
def test_a_push_is_named_with_the_refs_its_commands_update(
    what: str, data: bytes, refs: list[str], deleted: list[str] | None
) -> None:
    parsed = parse(data)
    assert (parsed.action_type, parsed.risk) == ("github.repo.push", "high")
    assert named(parsed) == (refs, deleted)
    assert parsed.spec.resource.target == "acme/api"
    assert parsed.spec.risk_hints == {}
    assert ActionSpec.model_validate(parsed.spec.to_dict()) == parsed.spec


@pytest.mark.parametrize(
    "url",
    [PUSH_URL, "https://github.com/acme/api/git-receive-pack",
     "https://ghe.example.com/acme/api.git/git-receive-pack",
     "https://github.com/acme/api.git/GIT-RECEIVE-PACK"],
)  # fmt: skip
def test_every_spelling_of_the_push_url_reads_the_commands(url: str) -> None:
    data = body((A, B, "refs/heads/main"))
    parsed = GH.parse(HttpRequest.from_url("POST", url, body=data))
    assert (parsed.action_type, named(parsed)) == ("github.repo.push", (["refs/heads/main"], None))


def test_ref_discovery_updates_nothing() -> None:
    for path in ("/acme/api.git/info/refs", "/acme/api/info/refs"):
        url = "https://github.com" + path + "?service=git-receive-pack"
        parsed = GH.parse(HttpRequest.from_url("GET", url))
        assert (parsed.action_type, parsed.spec.parameters) == ("github.repo.push", {"refs": []})


def test_many_refs_all_named_in_order() -> None:
    refs = [f"refs/tags/v{i}" for i in range(3000)]
    parsed = parse(body(*((ZERO, A, ref) for ref in refs), (A, ZERO, "refs/heads/gone")))
    assert named(parsed) == ([*refs, "refs/heads/gone"], ["refs/heads/gone"])


# A body that is only a prefix: the gateway inspects up to its limit.
MIB = 1024 * 1024
_MANY = body(*((ZERO, A, f"refs/tags/release-{i:06d}") for i in range(12_000)))
assert len(_MANY) > MIB


def test_commands_past_the_inspected_prefix_name_no_refs_and_count_as_unseen() -> None:
    parsed = parse(_MANY[:MIB], complete=False)
    assert named(parsed) == (None, None)
    assert parsed.spec.risk_hints == {"body_truncated": True}
    cut_in_a_line = parse(body((A, B, "refs/heads/main"))[:30], complete=False)
    assert named(cut_in_a_line) == (None, None)


def test_a_prefix_holding_the_flush_names_every_ref() -> None:
    data = body((A, B, "refs/heads/main"), (ZERO, A, "refs/heads/x")) + b"\x00" * MIB
    parsed = parse(data[:MIB], complete=False)  # the packfile is cut, not the commands
    assert named(parsed) == (["refs/heads/main", "refs/heads/x"], None)
    assert parsed.spec.risk_hints == {}


# what a push body must not be: refused, saying why
REFUSED: list[tuple[str, bytes, str]] = [
    ("empty body", b"", "ends before its flush-pkt"),
    ("no flush-pkt", pkt(f"{A} {B} refs/heads/main\0{CAPS}"), "ends before its flush-pkt"),
    ("cut inside a pkt-line", pkt(f"{A} {B} refs/heads/main")[:-3], "ends inside a pkt-line"),
    ("length not hex", b"00zz" + b"x" * 60 + b"0000", "is not hex"),
    ("length 0001 (delim-pkt)", b"0001" + b"0000", "is invalid"),
    ("length 0003", b"0003" + b"0000", "is invalid"),
    ("empty pkt-line 0004", b"0004" + b"0000", "is invalid"),
    ("length over 65520", b"fff1" + b"a" * 65520 + b"0000", "is invalid"),
    ("non-hex old oid", body(("g" * 40, B, "refs/heads/main")), "is not a ref update command"),
    ("non-hex new oid", body((A, "z" * 40, "refs/heads/main")), "is not a ref update command"),
    ("short oid", body((A[:39], B, "refs/heads/main")), "is not a ref update command"),
    ("oids of two lengths", body((A, "b" * 64, "refs/heads/main")), "differ in length"),
    ("no ref name", pkt(f"{A} {B} \0{CAPS}") + b"0000", "is not a ref update command"),
    ("not a command", pkt("hello\n") + b"0000", "is not a ref update command"),
    ("ref with a control character", body((A, B, "refs/heads/ma\x1bin")), "not a valid ref"),
    ("ref with a newline inside",
     pkt(f"{A} {B} refs/heads/x\n{A} {B} refs/heads/main\0{CAPS}") + b"0000",
     "not a valid ref"),
    ("ref with a space", body((A, B, "refs/heads/main x")), "not a valid ref"),
    ("ref with DEL", body((A, B, "refs/heads/main\x7f")), "not a valid ref"),
    ("ref not under refs/", body((A, B, "main")), "not a valid ref"),
    ("ref not UTF-8", pkt(f"{A} {B} refs/heads/".encode() + b"\xff\xfe") + b"0000",
     "is not UTF-8"),
    ("NUL after the first line",
     body((A, B, "refs/heads/x")).replace(b"0000PACK", pkt(f"{A} {B} refs/heads/y\0x") +
                                          b"0000PACK"), "not a valid ref"),
    ("shallow line with a bad oid", pkt("shallow xyz\n") + b"0000", "not a ref update command"),
    ("certificate without its end", SIGNED[: -len(pkt("push-cert-end\n"))] + b"0000",
     "no `push-cert-end`"),
    ("certificate without an empty line",
     pkt(f"push-cert\0{CAPS}") + pkt("certificate version 0.1\n") + pkt("push-cert-end\n")
     + b"0000", "no empty line"),
    ("certificate with a line that is not a command",
     pkt(f"push-cert\0{CAPS}") + pkt("nonce 1\n") + pkt("\n") + pkt("hello\n")
     + pkt("push-cert-end\n") + b"0000", "is not a ref update command"),
    ("certificate with a NUL",
     pkt(f"push-cert\0{CAPS}") + pkt("nonce 1\n\0") + pkt("push-cert-end\n") + b"0000",
     "holds a NUL"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "data", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_malformed_push_is_refused(what: str, data: bytes, message: str) -> None:
    with pytest.raises(ConnectorError, match=message) as refused:
        parse(data)
    assert refused.value.connector == "github"


def test_a_certificate_header_cannot_hide_commands_from_the_reader() -> None:
    """receive-pack joins the certificate's lines and reads commands after the first empty
    line: a header pkt-line holding ``\\n\\n`` starts them early, so they count."""
    cert = pkt(f"push-cert\0{CAPS}") + pkt(f"nonce 1\n\n{A} {B} refs/heads/main\n")
    cert += pkt(f"{ZERO} {A} refs/heads/feature\n") + pkt("push-cert-end\n") + b"0000"
    assert named(parse(cert)) == (["refs/heads/main", "refs/heads/feature"], None)


def test_an_encoded_push_is_refused() -> None:
    with pytest.raises(ConnectorError, match="`gzip`-encoded git push"):
        parse(
            gzip.compress(body((A, B, "refs/heads/main"))), headers=(("Content-Encoding", "gzip"),)
        )


# -- the property: any list of commands reads back as the refs git would update ----------

_REF = st.text(string.ascii_letters + string.digits + "-_./é", min_size=1, max_size=24)
_OID = st.text("0123456789abcdef", min_size=40, max_size=40)
_COMMAND = st.tuples(_OID, st.one_of(_OID, st.just(ZERO)), _REF.map("refs/heads/".__add__))


@given(st.lists(_COMMAND, min_size=1, max_size=30), st.booleans(), st.integers(0, 10_000))
def test_any_commands_round_trip_and_any_prefix_reads_all_or_nothing(
    commands: list[tuple[str, str, str]], lf: bool, cut: int
) -> None:
    data = body(*commands, lf="\n" if lf else "")
    refs = list(dict.fromkeys(ref for _, _, ref in commands))
    deleted = [ref for ref in refs if any(r == ref and n == ZERO for _, n, r in commands)]
    push = read_push(data, complete=True, connector="github")
    assert push is not None
    assert (list(push.refs), list(push.deleted)) == (refs, deleted)
    prefix = read_push(data[:cut], complete=False, connector="github")
    assert prefix is None or prefix == push  # never a part of the commands


# -- a real git push, captured -----------------------------------------------------------


class _Receiver(http.server.BaseHTTPRequestHandler):
    """Advertises ``refs/heads/old`` for receive-pack; records the push and answers 500."""

    protocol_version = "HTTP/1.1"
    pushes: list[tuple[str, dict[str, str], bytes]] = []

    def do_GET(self) -> None:
        refs = pkt("# service=git-receive-pack\n") + b"0000"
        refs += pkt(f"{A} refs/heads/old\0report-status delete-refs ofs-delta\n") + b"0000"
        self._answer(200, refs, "application/x-git-receive-pack-advertisement")

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.pushes.append((self.path, dict(self.headers.items()), data))
        self._answer(500, b"recorded", "text/plain")

    def _answer(self, status: int, data: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.pushes = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/acme/api.git"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_real_git_push_is_read(receiver: str, tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
        "NO_PROXY": "*",
    }

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(tmp_path / "w"), *args], env=env, text=True,
                              capture_output=True, timeout=30)  # fmt: skip

    subprocess.run(["git", "init", "-q", "-b", "main", str(tmp_path / "w")], env=env, check=True)
    (tmp_path / "w" / "a.txt").write_text("a\n")
    git("add", "a.txt")
    git("commit", "-q", "-m", "one")
    git("branch", "feature")
    pushed = git("push", receiver, "main", "feature", ":old")
    assert pushed.returncode != 0  # the receiver answers 500
    assert len(_Receiver.pushes) == 1, pushed.stderr
    path, headers, data = _Receiver.pushes[0]
    assert path == "/acme/api.git/git-receive-pack"
    sent = tuple(headers.items())
    parsed = parse(data, headers=sent)
    refs, deleted = named(parsed)
    assert sorted(refs or ()) == ["refs/heads/feature", "refs/heads/main", "refs/heads/old"]
    assert deleted == ["refs/heads/old"]
    assert data.find(b"PACK") > data.find(b"0000")  # the packfile follows the commands


# -- the contents API and GraphQL: the branch a file is committed to ---------------------

CONTENTS = "https://api.github.com/repos/acme/api/contents/docs/a.md"
GRAPHQL = "https://api.github.com/graphql"
COMMIT = "mutation($i: CreateCommitOnBranchInput!) { createCommitOnBranch(input: $i) { x } }"


def _json(method: str, url: str, data: dict[str, Any]) -> ParsedAction:
    return GH.parse(HttpRequest.from_url(method, url, body=json.dumps(data).encode()))


def _commit(branch: dict[str, Any], deletions: bool = False) -> ParsedAction:
    changes = {"deletions": [{"path": "a"}]} if deletions else {"additions": []}
    given = {"branch": branch, "message": {"headline": "m"}, "expectedHeadOid": A,
             "fileChanges": changes}  # fmt: skip
    return _json("POST", GRAPHQL, {"query": COMMIT, "variables": {"i": given}})


def test_file_writes_carry_the_branch_they_commit_to() -> None:
    put = _json("PUT", CONTENTS, {"message": "m", "content": "aGk=", "branch": "main"})
    assert (put.action_type, put.spec.parameters["branch"]) == ("github.file.create", "main")
    delete = _json("DELETE", CONTENTS, {"message": "m", "sha": "s", "branch": "dev"})
    assert (delete.action_type, delete.spec.parameters["branch"]) == ("github.file.delete", "dev")
    default = _json("PUT", CONTENTS, {"message": "m", "content": "aGk=", "sha": "s"})
    assert "branch" not in default.spec.parameters  # GitHub commits to the default branch
    by_name = _commit({"repositoryNameWithOwner": "acme/api", "branchName": "main"})
    assert by_name.action_type == "github.file.update"
    assert by_name.spec.parameters["branch"] == "main"
    assert by_name.spec.parameters["repository_name_with_owner"] == "acme/api"
    removal = _commit({"repositoryNameWithOwner": "acme/api", "branchName": "x"}, True)
    assert (removal.action_type, removal.spec.parameters["branch"]) == ("github.file.delete", "x")
    # a node id is read first by GitHub and names no branch the gateway can read
    by_id = _commit({"id": "BR_1", "branchName": "feature"})
    assert "branch" not in by_id.spec.parameters
    assert by_id.spec.parameters["branch_id"] == "BR_1"


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_a_branch_only_in_the_url_names_no_branch(method: str) -> None:
    """GitHub reads a contents write's `branch` from its JSON body: `?branch=feature` alone
    may be ignored (the commit goes to the default branch), so it counts for nothing; in
    the body as well (the same value) it stands."""
    data = {"message": "m", "content": "aGk=", "sha": "s"}
    alone = _json(method, CONTENTS + "?branch=feature", data)
    assert "branch" not in alone.spec.parameters
    assert _decided(alone) == HELD
    both = _json(method, CONTENTS + "?branch=feature", {**data, "branch": "feature"})
    assert both.spec.parameters["branch"] == "feature"
    assert _decided(both) == PASSED


# -- github-safe-defaults ------------------------------------------------------------------

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
ENGINE = Engine(
    access_rules=[AccessRule("Bot", "github", "github.*", "allow")],
    policies=[load_pack("github-safe-defaults")],
)


def _decided(parsed: ParsedAction) -> tuple[str, str | None]:
    decision = ENGINE.decide(parsed.spec, agent="Bot", mode="proxy", now=NOW, connector="github")
    rule = next((r for r in decision.matched_rules if r.startswith("github-safe")), None)
    return decision.outcome, rule


HELD = ("require_approval", "github-safe-defaults/commits-to-default-branch")
DENIED = ("deny", "github-safe-defaults/deny-destructive-deletes")
PASSED = ("allow", None)
TEN = [(ZERO, A, f"refs/tags/v{i}") for i in range(10)]
ELEVEN = [*TEN, (A, B, "refs/heads/x")]
# request -> what the pack does with it
PACK_CASES: list[tuple[str, Any, tuple[str, str | None]]] = [
    ("push main", body((A, B, "refs/heads/main")), HELD),
    ("push master among others", body((A, B, "refs/heads/x"), (A, B, "refs/heads/master")), HELD),
    ("push Main (any case)", body((A, B, "refs/heads/Main")), HELD),
    ("push main as the tenth ref", body(*TEN[:9], (A, B, "refs/heads/main")), HELD),
    ("push twelve refs, main last", body(*ELEVEN, (A, B, "refs/heads/main")), HELD),
    ("push twelve refs, master last", body(*ELEVEN, (A, B, "refs/heads/MASTER")), HELD),
    ("push twelve refs, none main", body(*ELEVEN, (A, B, "refs/heads/y")), PASSED),
    ("push a feature branch", body((A, B, "refs/heads/feature")), PASSED),
    ("push ten tags", body(*TEN), PASSED),
    ("push refs/heads/main-old", body((A, B, "refs/heads/main-old")), PASSED),
    ("git's probe", b"0000", PASSED),
    ("delete a branch by push", body((A, ZERO, "refs/heads/feature")), DENIED),
    ("delete main by push", body((A, ZERO, "refs/heads/main")), DENIED),
    ("file to main", {"message": "m", "content": "aGk=", "branch": "main"}, HELD),
    ("file to refs/heads/MASTER", {"message": "m", "content": "x", "branch": "refs/heads/MASTER"},
     HELD),
    ("file to the default branch", {"message": "m", "content": "aGk=", "sha": "s"}, HELD),
    ("file to an empty branch name", {"message": "m", "content": "aGk=", "branch": ""}, HELD),
    ("file to a branch that is not a string", {"message": "m", "content": "aGk=", "branch": 1},
     HELD),
    ("file to a feature branch", {"message": "m", "content": "aGk=", "branch": "feature"}, PASSED),
]  # fmt: skip


@pytest.mark.parametrize(("what", "request_", "expected"), PACK_CASES,
                         ids=[c[0] for c in PACK_CASES])  # fmt: skip
def test_the_pack_holds_commits_to_main_and_denies_deletes_by_push(
    what: str, request_: Any, expected: tuple[str, str | None]
) -> None:
    parsed = parse(request_) if isinstance(request_, bytes) else _json("PUT", CONTENTS, request_)
    assert _decided(parsed) == expected


def test_the_pack_holds_graphql_commits_to_main_or_to_a_branch_named_by_id() -> None:
    assert _decided(_commit({"repositoryNameWithOwner": "a/b", "branchName": "master"})) == HELD
    assert _decided(_commit({"id": "BR_1"})) == HELD
    assert _decided(_commit({"id": "BR_1", "branchName": "feature"})) == HELD
    assert _decided(_commit({"repositoryNameWithOwner": "a/b", "branchName": "feature"})) == PASSED


def test_the_pack_holds_a_push_without_refs() -> None:
    """An SDK action that does not say which refs it pushes is held, like a merge without
    a base."""
    spec = parse_action_spec({"type": "github.repo.push", "resource": {"target": "acme/api"}})
    decision = ENGINE.decide(spec, agent="Bot", mode="sdk", now=NOW)
    assert (decision.outcome, decision.matched_rules[0]) == HELD


def test_a_push_whose_commands_were_not_all_seen_is_denied_by_the_gateway() -> None:
    """The gateway decides a body it did not see whole as the strictest rule reading
    parameters could (pipeline.decide): unread commands might delete a branch."""
    parsed = parse(_MANY[:MIB], complete=False)
    seen = ENGINE.decide(parsed.spec, agent="Bot", mode="proxy", now=NOW, connector="github")
    assert seen.outcome == "require_approval"  # no refs: held
    ctx = EvaluationContext(agent="Bot", mode="proxy", now=NOW, connector="github")
    decision = unseen_decision(ENGINE, parsed.spec, ctx, seen)
    assert decision.outcome == "deny"
    assert UNSEEN_REASON in decision.reason
    assert "deny-destructive-deletes" in decision.reason
