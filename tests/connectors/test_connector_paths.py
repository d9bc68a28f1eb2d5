"""Path normalisation and the shared matcher: disguises, tricks, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfirewall.connectors import ConnectorError, HttpRequest, get_connector
from agentfirewall.connectors.paths import split_path
from agentfirewall.connectors.routes import Route, RouteTable

GH = get_connector("github")
MERGE = "/repos/a/b/pulls/1/merge"


def gh(method: str, path: str, query: str = "", headers: tuple[tuple[str, str], ...] = ()) -> str:
    request = HttpRequest(method, "https", "api.github.com", None, path, query, headers)
    return GH.parse(request).action_type


# Every disguise of the merge either still names the merge or is refused.
DISGUISES = [
    "/repos/a/b/pulls/1/./merge",
    "/repos/a/b/pulls/1/x/../merge",
    "/repos/a/b/pulls/1%2Fmerge",
    "/repos/a/b/pulls/1%2fmerge",
    "/repos/a/b/pulls/1/merge/",
    "/repos/a/b/pulls/1/MERGE",
    "/REPOS/a/b/PULLS/1/Merge",
    "/repos/a/b/pulls/1/merge.",
    "/repos/a/b/pulls/1/merge..",
    "/repos/a/b/pulls/1/merge%2e",
    "/repos/a/b/pulls/1/merge%2E%2E",
    "/repos/a/b/pulls/1/merge.json",
    "/repos/a/b/pulls/1/merg%65",
    "/repos/a/b/pulls/%31/merge",
    "/repos/a/b/pulls/01/merge",
    "/repos/a/b/pulls/+1/merge",
    "/repos/a/b/pulls/1abc/merge",
    "/repos/a/b/pulls/1/%2e/merge",
    "/repos/a/b/pulls/1/%2e%2e/1/merge",
    "//repos/a/b/pulls/1/merge",
    "/repos//a/b/pulls/1/merge",
    "/repos/a/b/pulls/1/merge;x=1",
    "/repos/a/b/pulls/1;/merge",
    "/repos/a/b/pulls/1\\merge",
    "/repos/a/b/pulls/1/merge%5C",
    "/repos/a/b/pulls/1/merge\x00",
    "/repos/a/b/pulls/1/merge%00",
    "/repos/a/b/pulls/1/merge%0a",
    "/repos/a/b/pulls/1/merge#x",
    "/repos/a/b/pulls/1/merge%",
    "/repos/a/b/pulls/1/merge%zz",
    "/repos/a/b/pulls/1/mérge",
    "/repos/a/b/pulls/1/merge ",
    "/repos/a/b/pulls/1/merge/..",
    "/api/v3/repos/a/b/pulls/1/merge",
    "/API/V3/repos/a/b/pulls/1/merge",
]


@pytest.mark.parametrize("path", DISGUISES)
def test_merge_disguise_is_named_merge_or_refused(path: str) -> None:
    try:
        action = gh("PUT", path)
    except ConnectorError:
        return
    assert action == "github.pr.merge", path


@pytest.mark.parametrize(
    "path",
    [
        "/repos/a/b/pulls/1/./merge",
        "/repos/a/b/pulls/1/x/../merge",
        "/repos/a/b/pulls/1%2Fmerge",
        "//repos/a/b/pulls/1/merge",
        "/repos/a/b/pulls/1/merge;x=1",
        "/repos/a/b/pulls/1\\merge",
        "/repos/a/b/pulls/1/merge%00",
        "/repos/a/b/pulls/1/%2e%2e/1/merge",
        "/repos/a/b/pulls/1/mérge",
    ],
)
def test_tricks_are_refused(path: str) -> None:
    with pytest.raises(ConnectorError, match="refused"):
        gh("PUT", path)


@pytest.mark.parametrize(
    "path",
    [
        "/repos/a/b/pulls/1/merge/",
        "/repos/a/b/pulls/1/MERGE",
        "/repos/a/b/pulls/1/merge.",
        "/repos/a/b/pulls/1/merge%2e",
        "/repos/a/b/pulls/1/merge.json",
        "/repos/a/b/pulls/1/merg%65",
        "/repos/a/b/pulls/+1/merge",
    ],
)
def test_lookalikes_are_named_merge(path: str) -> None:
    assert gh("PUT", path) == "github.pr.merge"


@pytest.mark.parametrize(
    ("header", "query"),
    [
        (("X-HTTP-Method-Override", "PUT"), ""),
        (("x-http-method", "DELETE"), ""),
        (("X-Method-Override", "DELETE"), ""),
        (("Accept", "*/*"), "_method=DELETE"),
    ],
)
def test_method_override_is_refused(header: tuple[str, str], query: str) -> None:
    with pytest.raises(ConnectorError, match="override"):
        gh("POST", "/repos/a/b", query, (header,))


@pytest.mark.parametrize("method", ["G ET", "GET\r\n", "", "M-SEARCH", "A" * 21])
def test_odd_methods_are_refused(method: str) -> None:
    with pytest.raises(ConnectorError, match="method"):
        gh(method, "/repos/a/b")


def test_lowercase_method_is_read_as_its_uppercase() -> None:
    assert gh("delete", "/repos/a/b") == "github.repo.delete"


def test_split_path_basics() -> None:
    assert split_path("/") == ()
    assert split_path("/a/b/") == ("a", "b")
    assert split_path("/a%41/%7e") == ("aA", "~")
    assert split_path("/a%3a%40") == ("a%3A%40",)


def test_encoded_non_ascii_value_is_decoded_in_parameters() -> None:
    request = HttpRequest("GET", "https", "api.github.com", None, "/users/j%C3%BCrgen")
    assert GH.parse(request).spec.parameters == {"username": "jürgen"}
    bad = HttpRequest("GET", "https", "api.github.com", None, "/users/j%C3")
    with pytest.raises(ConnectorError, match="UTF-8"):
        GH.parse(bad)


def test_huge_number_segment_does_not_crash() -> None:
    parsed = GH.parse(
        HttpRequest(
            "PUT", "https", "api.github.com", None, "/repos/a/b/pulls/" + "9" * 5000 + "/merge"
        )
    )
    assert parsed.action_type == "github.pr.merge"
    assert parsed.spec.risk_hints == {"path_relaxed": True}


TABLE = RouteTable(
    (
        Route("GET", "/a/{x}", "t.a.get", "low"),
        Route("GET", "/a/{x:int}", "t.a.int", "low"),
        Route("GET", "/a/{x}.git", "t.a.git", "low"),
        Route("GET", "/a/lit", "t.a.lit", "low"),
        Route("GET", "/a/{x}/b/{rest+}", "t.a.rest", "low"),
        Route("DELETE", "/a/{x:int}/danger", "t.a.danger", "high"),
    )
)


def test_precedence_literal_suffix_int_plain_greedy() -> None:
    def name(path: str) -> str | None:
        found = TABLE.match("GET", split_path(path))
        return found.route.action if found else None

    assert name("/a/lit") == "t.a.lit"
    assert name("/a/LIT") == "t.a.lit"
    assert name("/a/r.git") == "t.a.git"
    assert name("/a/12") == "t.a.int"
    assert name("/a/x") == "t.a.get"
    assert name("/a/x/b/c/d") == "t.a.rest"
    assert name("/a/x/b") is None
    found = TABLE.match("GET", split_path("/a/x/b/c/d"))
    assert found is not None
    assert found.values == {"x": "x", "rest": "c/d"}


def test_route_table_rejects_bad_rows() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        RouteTable((Route("GET", "/a", "t.a.get", "low"), Route("GET", "/a", "t.b.get", "low")))
    with pytest.raises(ValueError, match="greedy"):
        RouteTable((Route("GET", "/a/{r+}/b", "t.a.get", "low"),))
    with pytest.raises(ValueError, match="action type"):
        RouteTable((Route("GET", "/a", "Not A Type", "low"),))


SEGMENT = st.text(alphabet="abcxyz019.-_~%2FfeE", min_size=0, max_size=8)


@given(st.lists(SEGMENT, min_size=0, max_size=8))
def test_split_path_never_crashes_and_never_yields_dot_or_slash(segments: list[str]) -> None:
    raw = "/" + "/".join(segments)
    try:
        parts = split_path(raw)
    except ConnectorError:
        return
    for part in parts:
        assert part not in ("", ".", "..")
        assert "/" not in part
        assert "%2F" not in part.upper()


@given(st.text(max_size=60))
def test_any_text_path_is_an_action_or_a_connector_error(path: str) -> None:
    request = HttpRequest("DELETE", "https", "api.github.com", None, "/" + path)
    try:
        parsed = GH.parse(request)
    except ConnectorError:
        return
    assert parsed.spec.type.startswith("github.")
    assert parsed.risk in ("low", "medium", "high")


@given(
    st.lists(st.sampled_from(["", ".", "..", "x", "%2e", "%2E%2e", "merge", "MERGE"]), max_size=4)
)
def test_suffixes_after_merge_never_make_it_harmless(tail: list[str]) -> None:
    path = MERGE + ("/" + "/".join(tail) if tail else "")
    try:
        action = gh("PUT", path)
    except ConnectorError:
        return
    # only a path that really ends at /merge (one optional slash) is the merge; anything
    # longer must not silently become a harmless named action
    assert action in ("github.pr.merge", "github.unknown.put"), path


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(["", "/"]))
def test_matcher_reads_any_pull_number(number: int, slash: str) -> None:
    request = HttpRequest(
        "PUT", "https", "api.github.com", None, f"/repos/o/r/pulls/{number}/merge{slash}"
    )
    assert GH.parse(request).spec.parameters == {"pull_number": number}


WORDS = st.sampled_from(
    [
        "repos",
        "a",
        "b",
        "pulls",
        "1",
        "merge",
        "git",
        "refs",
        "heads",
        "x.git",
        "info",
        "contents",
        "orgs",
        "teams",
        "issues",
        "comments",
        "branches",
        "protection",
        "latest",
    ]
)


@given(st.sampled_from(["GET", "PUT", "PATCH", "POST", "DELETE"]), st.lists(WORDS, max_size=7))
def test_first_choice_path_agrees_with_the_full_walk(method: str, segments: list[str]) -> None:
    from agentfirewall.connectors.routes import _first_path, _walk

    root = GH.table._tries.get(method)  # type: ignore[attr-defined]
    if root is None:
        return
    parts = tuple(segments)
    lowered = tuple(s.lower() for s in parts)
    fast = _first_path(root, parts)
    if fast is not None:
        assert fast == _walk(root, parts, lowered, 0, [], relaxed=False)
