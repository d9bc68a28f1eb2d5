"""The aws connector's REST services (Lambda, Bedrock, EKS, SageMaker runtime, ...): every
operation botocore sends is named as boto3 names it, and a request the path names is
never renamed by a header or a query parameter.

Also the generator of agentfirewall/connectors/awsrest.py::

    python -m tests.connectors.test_connector_aws_rest > /tmp/awsrest.py
    cp /tmp/awsrest.py agentfirewall/connectors/awsrest.py
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentfirewall.connectors import HttpRequest, awsrest, get_connector
from agentfirewall.connectors.awshosts import service_endpoint
from agentfirewall.connectors.awsroutes import match_route, param_name, parse_routes, routes_of
from agentfirewall.connectors.awstargets import SERVICE_NAMES
from agentfirewall.errors import ConnectorError
from tests.connectors.test_connector_aws import _botocore_models, _protocols, _service_model
from tests.fuzzscale import examples

AWS = get_connector("aws")


def _is_rest(model: dict[str, Any]) -> bool:
    return bool(_protocols(model)[0].startswith("rest"))


def _action_service(prefix: str) -> str | None:
    """The service name the connector gives the hosts of `prefix` (None: it names none)."""
    endpoint = service_endpoint(f"{prefix}.us-east-1.amazonaws.com")
    return None if endpoint is None else endpoint.service


def _rest_models() -> dict[str, tuple[str, dict[str, Any]]]:
    """botocore's REST services that the table holds: model name -> (action service, model).
    Not S3 (``awss3`` reads it), nor a dotted endpoint whose botocore name is another
    service's prefix (``portal.sso``)."""
    found = {}
    for name, model in sorted(_botocore_models().items()):
        prefix = model["metadata"]["endpointPrefix"]
        if not _is_rest(model) or name == "s3":
            continue
        service = _action_service(prefix)
        if service is not None:
            found[name] = (service, model)
    return found


def route_table(service: str, operation: dict[str, Any]) -> str | None:
    """The route table of `service`'s `operation`: the service's, or that of the host form
    its endpoint rules send it to (``awshosts``): ``SERVICE/{Label}`` for a host prefixed
    with a label of the request (``s3control/{AccountId}``: ``ACCOUNT.s3-control``; S3
    Control's operations without the prefix go to ``s3-control`` too, or to
    ``s3-outposts`` for an Outposts bucket), ``s3control/s3express-control`` for S3
    Control's directory-bucket operations."""
    prefix = operation.get("endpoint", {}).get("hostPrefix", "")
    if "{" in prefix:
        return f"{service}/{prefix.rstrip('.')}"
    if service != "s3control":
        return service
    express = operation.get("staticContextParams", {}).get("UseS3ExpressControlEndpoint", {})
    return "s3control/s3express-control" if express.get("value") else "s3control/{AccountId}"


def rest_tables() -> dict[str, Any]:
    """The tables of agentfirewall/connectors/awsrest.py, from botocore's data."""
    routes: dict[str, dict[tuple[str, str], str]] = {}
    for service, model in _rest_models().values():
        for operation, spec in model["operations"].items():
            name = route_table(service, spec)
            if name is None:
                continue
            table = routes.setdefault(name, {})
            key = (spec["http"]["method"], spec["http"]["requestUri"])
            assert table.setdefault(key, operation) == operation, (service, key)
    others = {
        _action_service(model["metadata"]["endpointPrefix"])
        for model in _botocore_models().values()
        if not _is_rest(model)
    }
    return {
        "ROUTES": {
            service: "".join(f"{m} {uri} {op}\n" for (m, uri), op in sorted(table.items()))
            for service, table in sorted(routes.items())
            if table
        },
        "MIXED": frozenset(routes) & others,
    }


_DOC = '''\
"""The routes of AWS's REST-protocol services: method, request URI and operation.

Generated from the service models of botocore {version} ({count} REST services); do not
edit by hand. After a botocore upgrade, ``test_the_rest_table_is_botocores`` fails until
it is regenerated::

    python -m tests.connectors.test_connector_aws_rest > /tmp/awsrest.py
    cp /tmp/awsrest.py agentfirewall/connectors/awsrest.py

- :data:`ROUTES`: each service's action name (the connector's: ``lambda``,
  ``sagemaker-runtime`` for ``runtime.sagemaker``, ``ses`` for ``email``) and its
  operations, one per line: the method, the model's ``requestUri`` and the operation.
  S3 is read by ``awss3``; an operation an endpoint trait sends to another host of its
  service (``management.deadline``) is in its service's table, and one sent to a host
  with a label of the request's in a table of that host form's
  (``s3control/{{AccountId}}``: ``ACCOUNT.s3-control.REGION``;
  ``neptune-graph/{{graphIdentifier}}``), as are S3 Control's directory-bucket operations
  (``s3control/s3express-control``; its Outposts ones are left out). ``awsroutes`` reads
  them.
- :data:`MIXED`: the services whose host also serves a query- or JSON-protocol API (SES's
  ``email``: the v1 API's ``Action``, the v2 API's paths).
"""

from __future__ import annotations

__all__ = ["BOTOCORE_VERSION", "MIXED", "ROUTES"]

BOTOCORE_VERSION = "{version}"
'''


def render_awsrest() -> str:
    import botocore

    tables = rest_tables()
    out = [_DOC.format(version=botocore.__version__, count=len(_rest_models()))]
    mixed = ", ".join(f'"{s}"' for s in sorted(tables["MIXED"]))
    out.append(f"MIXED: frozenset[str] = frozenset({{{mixed}}})")
    out.append("ROUTES: dict[str, str] = {")
    for service, text in tables["ROUTES"].items():
        out.append(f'    "{service}": """\\\n{text}""",')
    out.append("}")
    return "\n".join(out) + "\n"


def test_the_rest_table_is_botocores() -> None:
    tables = rest_tables()
    assert tables["MIXED"] == awsrest.MIXED
    wrong = sorted(
        service
        for service in set(awsrest.ROUTES) | set(tables["ROUTES"])
        if awsrest.ROUTES.get(service) != tables["ROUTES"].get(service)
    )
    assert wrong == [], (
        "regenerate: python -m tests.connectors.test_connector_aws_rest > /tmp/awsrest.py; "
        "cp /tmp/awsrest.py agentfirewall/connectors/awsrest.py"
    )


def _fill(shape: Any) -> Any:
    if shape.type_name == "string":
        return "v1"
    if shape.type_name in ("integer", "long"):
        return 7
    if shape.type_name == "boolean":
        return True
    if shape.type_name == "timestamp":
        return 1700000000
    if shape.type_name == "list":
        return [_fill(shape.member)]
    return None


def _uri_input(operation: Any) -> dict[str, Any]:
    """A value for every member the URI carries (a label or a required query member)."""
    shape = operation.input_shape
    if shape is None:
        return {}
    values = {}
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        if location == "uri" or (location == "querystring" and name in shape.required_members):
            value = _fill(member)
            if value is not None:
                values[name] = value
    return values


def _sent(sent: dict[str, Any], prefix: str) -> HttpRequest:
    """The request botocore made, to its host (its operation's own, when it has one)."""
    prefix = sent.get("host_prefix", "") + prefix
    from urllib.parse import urlencode

    path = sent["url_path"]  # (with the URI's own query, when it has one)
    query = urlencode(sent["query_string"], doseq=True)
    if query:
        path += ("&" if "?" in path else "?") + query
    body = sent["body"]
    return HttpRequest.from_url(
        sent["method"],
        f"https://{prefix}.us-west-2.amazonaws.com{path}",
        headers=tuple(sent["headers"].items()),
        body=body.encode() if isinstance(body, str) else body,
    )


def test_every_rest_operation_is_named_as_boto3_names_it() -> None:
    """Each operation of each REST service, serialized as botocore sends it (every URI
    label filled in), is ``aws.<service>.<boto3 method name>`` with its labels as
    parameters, or refused only when that name is longer than an action segment."""
    from botocore import xform_name
    from botocore.serialize import create_serializer

    wrong: list[tuple[str, str, str]] = []
    named = 0
    for name, (service, _) in _rest_models().items():
        if name == "s3control":
            continue  # (its hosts carry the account: the next test, with boto3's client)
        model = _service_model(name)
        serializer = create_serializer(model.protocol, include_validation=False)
        for operation in model.operation_names:
            operation_model = model.operation_model(operation)
            if "{" in (operation_model.endpoint or {}).get("hostPrefix", ""):
                continue  # (the next test)
            values = _uri_input(operation_model)
            sent = serializer.serialize_to_request(values, operation_model)
            # (an operation sent to another service's host is that service's: Signer's
            # GetRevocationStatus on ``data-signer``, Signer Data's host)
            host = _action_service(sent.get("host_prefix", "") + model.endpoint_prefix)
            expected = f"aws.{host or service}.{xform_name(operation)}"
            try:
                parsed = AWS.parse(_sent(sent, model.endpoint_prefix))
            except ConnectorError as exc:
                if len(xform_name(operation)) <= 63:
                    wrong.append((name, operation, str(exc)))
                continue
            named += 1
            if parsed.spec.type != expected:
                wrong.append((name, operation, parsed.spec.type))
                continue
            labels = [
                param_name(m.serialization.get("name", k))
                for k, m in operation_model.input_shape.members.items()
                if m.serialization.get("location") == "uri"
            ] if operation_model.input_shape else []  # fmt: skip
            missing = [p for p in labels if p not in parsed.spec.parameters]
            if missing:
                wrong.append((name, operation, f"no parameter {missing}"))
            if not _renamed_by_nothing(sent, model.endpoint_prefix, service, parsed.spec.type):
                wrong.append((name, operation, "renamed by an Action or a header"))
    assert wrong == []
    assert named > 8500  # every REST service's operations, not a few


_ACCOUNT = "123456789012"
_GRAPH = "g-0123456789"


def _sent_by_boto3(client: Any, operation: Any, values: dict[str, Any]) -> HttpRequest:
    """The request boto3's `client` sends for `operation`, to the host its endpoint rules
    choose (captured before it is sent)."""
    from botocore import xform_name

    captured: list[Any] = []

    def capture(request: Any, **_: Any) -> Any:
        captured.append(request)
        raise _Captured

    client.meta.events.register("before-send", capture)
    try:
        getattr(client, xform_name(operation.name))(**values)
    except _Captured:
        pass
    finally:
        client.meta.events.unregister("before-send", capture)
    request = captured[0]
    body = request.body or b""
    return HttpRequest.from_url(
        request.method, request.url,
        headers=tuple((k, v.decode() if isinstance(v, bytes) else v)
                      for k, v in request.headers.items()),
        body=body.encode() if isinstance(body, str) else body,
    )  # fmt: skip


class _Captured(Exception):
    pass


@pytest.mark.parametrize("service", ["s3control", "neptune-graph"])
def test_the_hosts_that_carry_a_value_are_named_as_boto3_sends_them(service: str) -> None:
    """S3 Control's operations go to ``ACCOUNT.s3-control.REGION`` (or, for directory
    buckets, ``s3express-control.REGION``), Neptune Analytics' data plane to
    ``GRAPH.REGION.neptune-graph``: each operation, sent by boto3's own client to the host
    its endpoint rules choose, is named as boto3 names it, with the host's value as a
    parameter (0.1.0 named none of them: ``aws.unknown.<method>``). S3 Control's Outposts
    operations, sent to ``s3-outposts``, are not named."""
    boto3 = pytest.importorskip("boto3")
    from botocore import xform_name
    from botocore.config import Config

    client = boto3.client(
        service, region_name="us-west-2", aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="x", config=Config(parameter_validation=False),
    )  # fmt: skip
    model = client.meta.service_model
    wrong = []
    for operation in model.operation_names:
        operation_model = model.operation_model(operation)
        values = _uri_input(operation_model)
        members = operation_model.input_shape.members
        for member, value in (("AccountId", _ACCOUNT), ("graphIdentifier", _GRAPH)):
            if member in members:
                values[member] = value
        req = _sent_by_boto3(client, operation_model, values)
        parsed = AWS.parse(req)
        expected = f"aws.{service}.{xform_name(operation)}"
        if parsed.spec.type != expected:
            wrong.append((operation, req.host, parsed.spec.type))
        key, value = ("account", _ACCOUNT) if service == "s3control" else ("graph", _GRAPH)
        carried = "AccountId" in members or "hostPrefix" in (operation_model.endpoint or {})
        if carried and parsed.spec.parameters.get(key) != value:
            wrong.append((operation, req.host, f"{key}: {parsed.spec.parameters}"))
    assert wrong == []
    assert len(model.operation_names) > (90 if service == "s3control" else 30)
    if service == "s3control":  # an Outposts bucket's: to `s3-outposts`, where it is unnamed
        outposts = {"Bucket": "b1", "OutpostId": "op-01234567890123456"}
        req = _sent_by_boto3(client, model.operation_model("CreateBucket"), outposts)
        assert req.host == "s3-outposts.us-west-2.amazonaws.com"
        assert AWS.parse(req).spec.type == "aws.unknown.put"


@pytest.mark.parametrize(
    ("host", "account", "refused"),
    [
        (f"{_ACCOUNT}.s3-control", "999999999999", "another account"),
        ("s3-control", "12", "not an id"),
        ("s3express-control", f"{_ACCOUNT}, {_ACCOUNT}", "not an id"),
    ],
)
def test_an_account_the_host_and_its_header_disagree_on_is_refused(
    host: str, account: str, refused: str
) -> None:
    """S3 Control reads the account from the host and from ``x-amz-account-id``: a policy
    sees one, so a request naming two (or a header that is not an account) is refused."""
    express = host.startswith("s3express")
    path = "/v20180820/accesspoint/ap1" + ("/scope" if express else "")
    url = f"https://{host}.us-west-2.amazonaws.com{path}"
    with pytest.raises(ConnectorError, match=refused):
        AWS.parse(HttpRequest.from_url("DELETE", url, headers=(("x-amz-account-id", account),)))
    twice = (("x-amz-account-id", _ACCOUNT), ("X-Amz-Account-Id", _ACCOUNT))
    with pytest.raises(ConnectorError, match="twice"):
        AWS.parse(HttpRequest.from_url("DELETE", url, headers=twice))
    alone = AWS.parse(HttpRequest.from_url("DELETE", url, headers=(twice[0],)))
    expected = "delete_access_point_scope" if express else "delete_access_point"
    assert alone.spec.type == f"aws.s3control.{expected}"
    assert (alone.spec.parameters["account"], alone.risk) == (_ACCOUNT, "high")


def test_a_graph_the_host_and_the_request_disagree_on_is_refused() -> None:
    data = f"https://{_GRAPH}.us-west-2.neptune-graph.amazonaws.com/queries"
    with pytest.raises(ConnectorError, match="another graph"):
        AWS.parse(HttpRequest.from_url("POST", data, headers=(("graphIdentifier", "g-x"),)))
    control = "https://neptune-graph.us-west-2.amazonaws.com/graphs/g-prod"
    with pytest.raises(ConnectorError, match="another in the path"):
        AWS.parse(HttpRequest.from_url("DELETE", control, headers=(("graphIdentifier", "g-x"),)))
    parsed = AWS.parse(HttpRequest.from_url("DELETE", control))
    assert (parsed.spec.type, parsed.spec.parameters["graph"], parsed.risk) == (
        "aws.neptune-graph.delete_graph", "g-prod", "high")  # fmt: skip
    # the data plane's routes are not the control plane's: a query is no graph operation
    assert AWS.parse(
        HttpRequest.from_url("POST", control.replace("/graphs/g-prod", "/queries"))
    ).spec.type == ("aws.unknown.post")


def _renamed_by_nothing(sent: dict[str, Any], prefix: str, service: str, name: str) -> bool:
    """The request with another operation's name beside its path (``Action`` and
    ``Operation`` in the query) is still its path's action (the query protocol's key on a
    REST host names nothing; on SES's host, which serves both, it is refused); with an
    ``X-Amz-Target``, refused."""
    query = dict(sent["query_string"] or {})
    with_action = {**sent, "query_string": {**query, "Action": "ListThings"}}
    with_target = {**sent, "headers": {**sent["headers"], "X-Amz-Target": "Svc.ListThings"}}
    try:
        if AWS.parse(_sent(with_action, prefix)).spec.type != name:
            return False
    except ConnectorError as exc:
        if service not in awsrest.MIXED or "which names the operation" not in str(exc):
            return False
    try:
        AWS.parse(_sent(with_target, prefix))
    except ConnectorError as exc:
        return "named by its path" in str(exc)
    return False


def _parse(method: str, url: str, body: bytes = b"") -> Any:
    return AWS.parse(HttpRequest.from_url(method, url, body=body))


def test_a_delete_stays_a_delete_whatever_the_query_says() -> None:
    """0.1.0 named a REST request by an ``Action`` in its query: ``DELETE /clusters/prod
    ?Action=DescribeClusters`` on EKS was ``aws.eks.describe_clusters``, a low-risk read."""
    parsed = _parse("DELETE", "https://eks.us-east-1.amazonaws.com/clusters/prod"
                    "?Action=DescribeClusters&Operation=ListClusters")  # fmt: skip
    assert parsed.spec.type == "aws.eks.delete_cluster"
    assert parsed.risk == "high"
    assert parsed.spec.resource.target == "prod"
    assert parsed.spec.parameters["name"] == "prod"  # (EKS's label: `{name}`)
    for method in ("DELETE", "DeLeTe"):  # (methods are upper-cased before naming)
        other = HttpRequest.from_url(method, "https://eks.us-east-1.amazonaws.com/CLUSTERS/prod")
        assert AWS.parse(other).spec.type == "aws.eks.delete_cluster"


def test_an_arn_in_a_label_is_one_value() -> None:
    """botocore sends an ARN in a label with its ``/`` as ``%2F``; AWS routes on the path as
    sent, then decodes the label: one parameter, decoded (0.1.0 refused it)."""
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude"
    encoded = arn.replace(":", "%3A").replace("/", "%2F")
    parsed = _parse("POST", f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{encoded}/converse",
                    b"{}")  # fmt: skip
    assert parsed.spec.type == "aws.bedrock-runtime.converse"
    assert parsed.spec.parameters["model"] == arn
    assert parsed.spec.resource.target == arn
    agent = "arn:aws:bedrock:us-east-1:123456789012:agent/ABCDEFGHIJ"
    tags = _parse("POST", "https://bedrock-agent-runtime.us-east-1.amazonaws.com/tags/"
                  + agent.replace(":", "%3A").replace("/", "%2F"), b"{}")  # fmt: skip
    assert (tags.spec.type, tags.spec.parameters["resource"]) == (
        "aws.bedrock-agent-runtime.tag_resource", agent)  # fmt: skip
    greedy = _parse("PUT", "https://workspaces-web.us-east-1.amazonaws.com/portals/"
                    "arn:aws:workspaces-web:us-east-1:1:portal/p1/browserSettings")  # fmt: skip
    assert greedy.spec.type == "aws.workspaces-web.associate_browser_settings"
    assert greedy.spec.parameters["portal"] == "arn:aws:workspaces-web:us-east-1:1:portal/p1"


@pytest.mark.parametrize(
    "path",
    ["/clusters/..", "/clusters/%2e%2e", "/clusters//prod", "/clusters/prod;x=1",
     "/clusters/pr%00od", "/clusters/pr od"],
)  # fmt: skip
def test_the_path_rules_hold_on_rest_services(path: str) -> None:
    with pytest.raises(ConnectorError, match="refused path"):
        AWS.parse(HttpRequest("DELETE", "https", "eks.us-east-1.amazonaws.com", None, path))


def test_the_most_specific_route_names_a_request_and_a_tie_names_nothing() -> None:
    routes = parse_routes(
        "GET /things/{thingId} GetThing\n"
        "GET /things/search SearchThings\n"
        "GET /things/{thingId}?tagging GetThingTagging\n"
        "GET /a/{x}/b GetAb\n"
        "GET /a/c/{y} GetAc\n"
        "GET /files/{key+} GetFile\n"
        "GET /files/{dir}/meta GetMeta\n"
    )

    def named(path: str, query: str = "") -> str | None:
        found = match_route(routes, "GET", path, query, connector="aws")
        return None if found is None else found.route.operation

    assert named("/things/t1") == "get_thing"
    assert named("/things/search") == "search_things"  # a literal before a label
    assert named("/things/SEARCH") == "search_things"
    assert named("/things/t1", "tagging") == "get_thing_tagging"
    assert named("/things/t1", "other=1") == "get_thing"
    assert named("/things/t1", "tagging&tagging") is None  # which one would it read?
    assert named("/a/x1/b") == "get_ab"
    assert named("/a/c/b") is None  # two routes alike: no name rather than a guess
    assert named("/files/d1/meta") == "get_meta"  # no `+` label before one
    assert named("/files/d1/d2/f") == "get_file"
    found = match_route(routes, "GET", "/files/d%201/f%2Fg", "", connector="aws")
    assert found is not None
    assert found.params == {"key": "d 1/f/g"}


if __name__ == "__main__":
    sys.stdout.write(render_awsrest())


_SERVICES = sorted(awsrest.ROUTES)


def _encoded(segment: str, data: Any) -> str:
    """`segment` with some of its unreserved characters percent-encoded, in either case."""
    out = []
    for char in segment:
        if char.isalnum() and data.draw(st.booleans()):
            escape = f"%{ord(char):02X}"
            out.append(escape.lower() if data.draw(st.booleans()) else escape)
        else:
            out.append(char)
    return "".join(out)


@settings(max_examples=examples(400), deadline=None)
@given(data=st.data())
def test_a_route_is_named_alike_in_every_spelling(data: Any) -> None:
    """Any route of any REST service, its labels filled with any value and its literals
    spelled in any case or with escaped letters, is named as plainly spelled, or refused
    alike; nothing else escapes (no crash, no other name)."""
    table = data.draw(st.sampled_from(_SERVICES))
    service = table.split("/")[0]
    routes = routes_of(table)
    assert routes is not None
    method = data.draw(st.sampled_from(sorted(routes)))
    route = data.draw(st.sampled_from(routes[method]))
    value = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
                    max_size=12)  # fmt: skip
    plain, spelled = [], []
    for segment in route.segments:
        if segment.startswith("{"):
            part = quote("~" + data.draw(value), safe="")  # (never a literal of another route)
            plain.append(part)
            spelled.append(part)
        else:
            plain.append(segment)
            case = data.draw(st.sampled_from([str.lower, str.upper, str.title]))
            spelled.append(_encoded(case(segment), data))
    query = "&".join(k if v is None else f"{k}={v}" for k, v in route.query)
    host = service_host(table)
    results = []
    for path in ("/" + "/".join(plain), "/" + "/".join(spelled)):
        url = f"https://{host}{path}" + (f"?{query}" if query else "")
        try:
            results.append(AWS.parse(HttpRequest.from_url(method, url)).spec.type)
        except ConnectorError:  # (a control character in a label: refused as anywhere)
            results.append("refused")
    assert results[0] == results[1]
    assert results[0] in (f"aws.{service}.{route.operation}", "refused")


#: route table -> a host of it (``awshosts._SPECIAL_FORMS``)
_TABLE_HOSTS = {
    "s3control/{AccountId}": f"{_ACCOUNT}.s3-control",
    "s3control/s3express-control": "s3express-control",
    "s3outposts": "s3-outposts",
}


def service_host(table: str) -> str:
    """A host the connector names with `table`'s routes (``ses`` is ``email``; dotted
    prefixes; the hosts of S3 Control and Neptune Analytics' data plane)."""
    if table == "neptune-graph/{graphIdentifier}":
        return f"{_GRAPH}.us-east-1.neptune-graph.amazonaws.com"
    for prefix, name in SERVICE_NAMES.items():
        if name == table:
            return f"{prefix}.us-east-1.amazonaws.com"
    prefix = _TABLE_HOSTS.get(table, "email" if table == "ses" else table)
    return f"{prefix}.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    "url",
    [
        # a host no query-protocol service reads: a service botocore does not know, a REST
        # path no route has, a JSON-protocol service
        "https://nothing-known.us-east-1.amazonaws.com/datastore/d1?Action=GetThing",
        "https://eks.us-east-1.amazonaws.com/no/such/route?Action=DescribeClusters",
        "https://dynamodb.us-east-1.amazonaws.com/?Action=ListTables",
    ],
)
def test_action_names_nothing_where_no_query_service_reads_it(url: str) -> None:
    """``Action`` names an operation only on the hosts of the query-protocol services
    (``awstargets.QUERY``): anywhere else the upstream reads something else."""
    parsed = _parse("DELETE", url)
    assert parsed.spec.type == "aws.unknown.delete"
    assert parsed.risk == "high"
    assert _parse("POST", "https://sns.us-east-1.amazonaws.com/?Action=Publish").spec.type == (
        "aws.sns.publish"
    )


def test_ses_host_serves_the_v1_query_api_at_the_root_and_v2_by_path() -> None:
    form = (("Content-Type", "application/x-www-form-urlencoded"),)
    v1 = HttpRequest.from_url("POST", "https://email.us-east-1.amazonaws.com/", headers=form,
                              body=b"Action=SendEmail&Version=2010-12-01")  # fmt: skip
    assert AWS.parse(v1).spec.type == "aws.ses.send_email"
    v2 = _parse("POST", "https://email.us-east-1.amazonaws.com/v2/email/outbound-emails", b"{}")
    assert v2.spec.type == "aws.ses.send_email"  # one name for sending, whichever API
    identity = _parse("DELETE", "https://email.us-east-1.amazonaws.com/v2/email/identities/a.com")
    assert (identity.spec.type, identity.risk) == ("aws.ses.delete_email_identity", "high")
    assert _parse("GET", "https://email.us-east-1.amazonaws.com/").spec.type == "aws.unknown.get"
