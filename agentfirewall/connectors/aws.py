"""Amazon Web Services (``*.amazonaws.com``): S3, every REST service (Lambda, Bedrock, EKS,
...), every JSON-protocol one (DynamoDB, SQS, KMS, SSM, ECS, ...) and every query-protocol one
(SNS, STS, IAM, EC2, ...), re-signed with SigV4.

The service and region come from the host (``agentfirewall.connectors.awshosts``): the
service is the host's endpoint prefix (``monitoring`` is CloudWatch, ``states`` Step
Functions), or botocore's one-segment name where that prefix has more than one label
(``api.ecr.REGION`` is ``ecr``). China hosts (``*.amazonaws.com.cn``) are named alike, but
served only by an aws connector configured with those domains: the partition has its own
accounts and keys, which a connector of the global partition's credential does not hold.
Actions are ``aws.<service>.<operation>``, the operation in snake case as boto3 names its
method (botocore's ``xform_name``: ``PutItem`` → ``put_item``, ``DescribeDBInstances`` →
``describe_db_instances``, ``ListWebACLs`` → ``list_web_acls``):

- **JSON protocol** (DynamoDB, SQS, Secrets Manager, KMS, ...): ``X-Amz-Target``
  (``DynamoDB_20120810.PutItem`` → ``aws.dynamodb.put_item``, ``TrentService.Encrypt`` on
  ``kms.REGION`` → ``aws.kms.encrypt``). The target's prefix is looked up, in any case, in
  the table of every JSON-protocol service of botocore's data
  (``agentfirewall.connectors.awstargets``; the catalogue lists them). A prefix not in it
  (a service newer than the table: regenerate it), one that addresses another service
  than the host's (``DynamoDBStreams_20120810`` on ``dynamodb``), or the header twice, is
  refused.
- **RPCv2-CBOR** (CloudWatch and a few newer services, in SDKs that prefer it to JSON):
  ``POST /service/<Service>/operation/<Operation>`` with ``smithy-protocol: rpc-v2-cbor``
  names the operation as the JSON target ``<Service>.<Operation>`` would (the same table,
  for the services whose model lists the protocol, and the same spelling rules), and the
  parameters from the CBOR body's top-level fields (``agentfirewall.connectors.awscbor``).
  A path with ``/operation/`` or a ``smithy-protocol`` header is read as this protocol
  only: any other path or header value, another method, a query, an ``X-Amz-Target``, a
  body that is not ``application/cbor`` (one ``Content-Type``), invalid CBOR or a field
  twice is refused.
- **Query protocol** (SNS, STS, IAM, EC2, older SQS: the services whose models give it,
  ``awstargets.QUERY``): ``Action`` in the query or the form body
  (``Action=Publish`` → ``aws.sns.publish``, percent-decoded as AWS decodes it); on any
  other host ``Action`` names nothing (``aws.unknown.<method>``);
  ``Action`` with two values, in both the query and the body, or with an
  ``X-Amz-Target``, is refused, and so is any other parameter that could name the
  operation (``action``, ``ACTION``, ``Operation``: an older alias). A field in both the
  query and the body must have one value.
- **Operation spelling.** An operation is named only as the service's model spells it,
  the spelling every SDK sends: ASCII letters and digits, a capital first, at least one
  lower-case letter. ``putItem``, ``putitem``, ``PUTITEM``, ``Put_Item``, ``Put Item``,
  non-ASCII look-alike letters and spaces inside are refused, never named: no snake case
  of them is sure to be the action an upstream that folded case would perform. What
  passes relies on AWS matching operation names as spelled (a JSON target in another
  case is ``UnknownOperationException``): a spelling that passes but is not the model's
  (``PutiTem``) reaches no operation, and its name (``puti_tem``) is boto3's for it.
- **REST services** (Lambda, Bedrock, Bedrock agents, EKS, API Gateway, SageMaker runtime,
  SES v2 and every other service botocore's data gives a REST protocol, S3 apart): named by
  method and path from the table of their models (``agentfirewall.connectors.awsrest``,
  read by ``awsroutes``): ``POST /2015-03-31/functions/{FunctionName}/invocations`` →
  ``aws.lambda.invoke``, ``POST /model/{modelId}/converse`` on ``bedrock-runtime`` →
  ``aws.bedrock-runtime.converse``, ``DELETE /clusters/{name}`` on ``eks`` →
  ``aws.eks.delete_cluster``, ``POST /agents/{agentId}/agentAliases/{agentAliasId}/sessions/
  {sessionId}/text`` on ``bedrock-agent-runtime`` → ``aws.bedrock-agent-runtime.invoke_agent``.
  A URI's query (``?tagging``) must be in the request; where several routes match, the most
  specific names it (the most query keys it requires, then the most literal segments; two
  alike name nothing: ``aws.unknown``). Each label is a parameter, named in snake case
  without its ``Id``/``Identifier``/``Name``/``Arn`` suffix (``FunctionName`` →
  ``function``, ``modelId`` → ``model``, ``agentAliasId`` → ``agent_alias``) and
  percent-decoded; the first is the resource target. The path rules hold, except that a
  ``%2F`` stays inside its label (AWS routes on the path as sent, then decodes the label):
  a model or resource ARN is one value (``model`` =
  ``arn:aws:bedrock:...:inference-profile/us.x``). The path alone names the operation: an
  ``X-Amz-Target`` or ``smithy-protocol`` header is refused, and ``Action`` in the query or
  body names nothing (on SES's ``email`` host, which serves the v1 query API at ``/`` and
  the v2 REST API beside it, ``Action`` with a v2 path is refused). A host that carries a
  value of the request is named by the routes of its operations: S3 Control's
  ``ACCOUNT.s3-control.REGION`` (``aws.s3control.get_public_access_block``, ``account`` a
  parameter) and ``s3express-control.REGION`` (its directory-bucket operations), Neptune
  Analytics' data plane ``GRAPH.REGION.neptune-graph`` (``aws.neptune-graph.execute_query``,
  ``graph``). Where the host names no account (graph), ``x-amz-account-id``
  (``graphIdentifier``) gives it; the header given twice, or naming another account
  (graph) than the host or the path, is refused. S3 Control's Outposts operations
  (``s3-outposts.REGION``, beside the S3 on Outposts API there) are not named.
- **S3** (REST, virtual-host or path style; hosts read from the right as S3 reads them,
  so a bucket named ``s3-logs`` is a bucket: ``s3.REGION``, ``s3.amazonaws.com``,
  ``s3-REGION``, ``s3-external-1``, ``s3.dualstack.REGION``, ``s3-fips[.dualstack].REGION``,
  ``bucket.s3-accelerate[.dualstack]``, access points): ``aws.s3.object.get|put|copy|delete``
  (a copy is a PUT with ``x-amz-copy-source``), ``aws.s3.object.list``,
  ``aws.s3.object.list_versions`` (``GET ?versions``), ``aws.s3.object.delete_many``
  (``POST ?delete``), ``aws.s3.object.restore|select`` (``POST ?restore|?select``),
  ``aws.s3.bucket.create|delete|get|list``, ``aws.s3.multipart.create|upload_part|
  upload_part_copy|complete|abort|list|list_parts`` (a part copy, a part PUT with
  ``x-amz-copy-source``, is decided as ``aws.s3.object.copy`` too, with the same
  parameters: a rule on copies covers it), and ``aws.s3.bucket.<subresource>.<get|put|delete>``
  / ``aws.s3.object.<subresource>.<get|put|delete>`` for configuration subresources
  (``?policy``, ``?acl``, ``?tagging``...). Query names are read as S3 reads them, as
  spelled (``versionId``, ``publicAccessBlock``): one that is a known name only in another
  case (``?Tagging``, which S3 ignores) is refused. Headers that change what S3 does are
  parameters named after the header without ``x-amz-`` (``acl``, ``grant_read``,
  ``grant_write``, ``grant_read_acp``, ``grant_write_acp``, ``grant_full_control``,
  ``copy_source``, ``copy_source_range``, ``metadata_directive``, ``tagging_directive``,
  ``tagging``, ``object_ownership``, ``object_lock_mode``, ``object_lock_retain_until_date``,
  ``object_lock_legal_hold``, ``bucket_object_lock_enabled``, ``bypass_governance_retention``,
  ``server_side_encryption`` and its ``_aws_kms_key_id``, ``_context``,
  ``_bucket_key_enabled`` and ``_customer_algorithm``, ``website_redirect_location``,
  ``confirm_remove_self_bucket_access``); one given twice is refused, and an SSE-C key is
  never read. The object key is the rest of the path,
  percent-decoded, as S3 reads it (empty segments and any character included: a key is a
  name, not a route); a path-style bucket segment with an encoded slash or backslash
  (``%2F``, ``%5C``) is refused. An unknown query parameter names nothing:
  ``aws.unknown.<method>``. Presigned URLs (``X-Amz-Signature`` in the query) are refused:
  one presigned with the agent's placeholder key is worthless, so the agent calls the API
  and the gateway signs. A Transfer Acceleration host (``bucket.s3-accelerate.amazonaws.com``)
  names no region: the request's SigV4 credential scope gives it (the region the gateway
  signs for, which S3 checks against the bucket's); one without a scope, or path style
  (``s3-accelerate.amazonaws.com/bucket``), is refused. An access point host
  (``NAME-ACCOUNT.s3-accesspoint.REGION.amazonaws.com``) names its ARN as ``bucket``
  (``arn:aws:s3:REGION:ACCOUNT:accesspoint/NAME``) and the whole path as ``key``.

The gateway signs a request for the service's signing name, which AWS checks in the SigV4
scope: the host's first label, or the name botocore gives where they differ
(``bedrock-runtime.REGION.amazonaws.com`` is signed as ``bedrock``, ``email`` as ``ses``,
``oidc`` as ``sso-oauth``, S3 Control's hosts as ``s3``, ``s3express-control`` as
``s3express``). A host of more than one label before the region
(``api.ecr.REGION``, ``streams.dynamodb.REGION``) is signed in the scope the agent's SDK
chose, with the region and service it names.

Parameters: ``bucket`` and ``key`` (S3), ``table`` (DynamoDB), ``queue`` (SQS, the queue
name of ``QueueUrl``), ``topic`` (SNS), ``secret`` (Secrets Manager), ``role`` (STS),
``function`` (Lambda's JSON-protocol fields), a REST route's labels, and ``region``; the
most specific one is the resource target.
Risk: reads (``get``, ``list``, ``describe``, ``head``, ``query``, ``scan``, ``receive``)
low, deletes high, ``get_secret_value`` and ``assume_role`` high, the rest medium.

Content rules scan decoded the fields that carry text base64-encoded: a raw e-mail (SES's
``RawMessage.Data``, SES v2's and Pinpoint Email's ``Content.Raw.Data``, the
``MessageConfiguration.EmailMessage.RawEmail.Data`` of Pinpoint's ``send_messages`` and
``send_users_messages``), whose MIME parts are decoded too (a base64 attachment, a
quoted-printable text, an encoded header: ``form.RawMessage.Data(base64).part2``), a stream
record's ``Data`` (Kinesis, Firehose), a document a Bedrock model reads (``converse``'s
``messages[].content[].document.source.bytes``), a binary secret (``SecretBinary``) and
what KMS encrypts (``Plaintext``); a ``redact`` rule re-encodes them. Response content
rules read decoded what comes back the same way: a binary secret (``SecretBinary`` of
``get_secret_value`` and ``batch_get_secret_value``), what KMS decrypts (``Plaintext``) and
a Kinesis stream's records (``Records[].Data`` of ``get_records``).
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping
from urllib.parse import unquote

from pydantic import JsonValue

from agentfirewall.actions import ActionSpec, Risk
from agentfirewall.connectors.awscbor import cbor_fields
from agentfirewall.connectors.awshosts import (
    ACCOUNT_ID,
    AwsEndpoint,
    s3_refusal,
    service_endpoint,
)
from agentfirewall.connectors.awsroutes import (
    RestRoute,
    match_route,
    routes_of,
    serves_query_protocol_too,
    snake_case,
)
from agentfirewall.connectors.awss3 import S3_ALSO, s3_action
from agentfirewall.connectors.awstargets import (
    BOTOCORE_VERSION,
    CBOR,
    QUERY,
    SERVICE_NAMES,
    TARGETS,
)
from agentfirewall.connectors.base import (
    UNBOUND_HEADERS,
    Connector,
    make_spec,
    request_method,
)
from agentfirewall.connectors.bodies import parse_form
from agentfirewall.connectors.model import ActionInfo, HttpRequest, ParsedAction
from agentfirewall.errors import ConnectorError

__all__ = ["CONNECTOR", "AwsConnector", "snake_case"]

_NAME = "aws"
#: service -> (the parameter a header carries, the header, its values' form)
_PARAM_HEADERS = {
    "s3control": ("account", "x-amz-account-id", ACCOUNT_ID),
    "neptune-graph": ("graph", "graphidentifier", re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")),
}
#: The only spelling of an operation named: the model's (``PutItem``, ``DescribeDBInstances``,
#: ``ListWebACLs``), ASCII, a capital first, at least one lower-case letter (module docstring).
_OPERATION = re.compile(r"(?=[A-Z0-9]*[a-z])[A-Z][A-Za-z0-9]{0,63}")
#: Query parameters that would name the operation besides ``Action`` (``Operation`` is an
#: older alias some query services still read), in any case.
_ACTION_KEYS = frozenset({"action", "operation"})
#: ``<prefix>.<Operation>``, split at the last dot (CloudTrail's prefix has dots of its own).
_TARGET = re.compile(r"([A-Za-z][A-Za-z0-9_.]*)\.([^.]*)")
_CBOR_PATH = re.compile(r"/service/([A-Za-z][A-Za-z0-9_.]*)/operation/([^/]*)")
_LOW = ("get", "list", "describe", "head", "query", "scan", "receive", "batch_get", "check")
_HIGH_PREFIXES = ("delete", "remove", "purge", "terminate", "batch_delete")
#: Reads that hand back a secret in the clear are high, like a delete: Secrets Manager's,
#: SSM's parameters (`WithDecryption`) and KMS's decrypt.
_HIGH = frozenset({
    "get_secret_value", "batch_get_secret_value", "assume_role", "update_function_code",
    "get_parameter", "get_parameters", "get_parameters_by_path", "get_parameter_history",
    "decrypt",
})  # fmt: skip
#: Parameter name -> (request field, how to shorten it); first present is the target.
_RESOURCE_FIELDS = (
    ("table", "TableName"),
    ("queue", "QueueUrl"),
    ("queue", "QueueName"),
    ("topic", "TopicArn"),
    ("topic", "TargetArn"),
    ("secret", "SecretId"),
    ("role", "RoleArn"),
    ("function", "FunctionName"),
)
#: The parameters that are the resource target, the first present (an S3 key with its bucket).
_TARGET_PARAMS = ("key", "table", "queue", "topic", "secret", "role", "function", "model",
                  "guardrail", "invocation", "bucket")  # fmt: skip


#: Action -> where its request carries text base64-encoded (``Connector.encoded``; ``:mime``:
#: an e-mail, whose parts are decoded too).
_RAW_EMAIL = "MessageConfiguration.EmailMessage.RawEmail.Data:mime"
_DOCUMENTS = ("body.messages.*.content.*.document.source.bytes",)
_ENCODED: dict[str, tuple[str, ...]] = {
    "aws.ses.send_raw_email": ("form.RawMessage.Data:mime",),  # (a MIME message: its parts)
    "aws.ses.send_email": ("body.Content.Raw.Data:mime",),  # (SES v2, Pinpoint Email)
    "aws.pinpoint.send_messages": (f"body.{_RAW_EMAIL}",),
    "aws.pinpoint.send_users_messages": (f"body.{_RAW_EMAIL}",),
    "aws.kinesis.put_record": ("body.Data",),
    "aws.kinesis.put_records": ("body.Records.*.Data",),
    "aws.firehose.put_record": ("body.Record.Data",),
    "aws.firehose.put_record_batch": ("body.Records.*.Data",),
    "aws.bedrock-runtime.converse": _DOCUMENTS,
    "aws.bedrock-runtime.converse_stream": _DOCUMENTS,
    "aws.secretsmanager.create_secret": ("body.SecretBinary",),
    "aws.secretsmanager.put_secret_value": ("body.SecretBinary",),
    "aws.secretsmanager.update_secret": ("body.SecretBinary",),
    "aws.kms.encrypt": ("body.Plaintext",),
}
#: Action -> where its answer carries text base64-encoded (``Connector.response_encoded``).
_RESPONSE_ENCODED: dict[str, tuple[str, ...]] = {
    "aws.secretsmanager.get_secret_value": ("body.SecretBinary",),
    "aws.secretsmanager.batch_get_secret_value": ("body.SecretValues.*.SecretBinary",),
    "aws.kms.decrypt": ("body.Plaintext",),
    "aws.kinesis.get_records": ("body.Records.*.Data",),
}


def risk_of(operation: str) -> Risk:
    if operation in _HIGH or operation.startswith(_HIGH_PREFIXES):
        return "high"
    return "low" if operation.startswith(_LOW) else "medium"


class AwsConnector(Connector):
    name = _NAME
    description = "Amazon Web Services (SigV4 re-signed)"
    default_domains = ("*.amazonaws.com",)
    #: TLS upstream: a plain ``http://`` request is upgraded, never signed in cleartext.
    base_url = "https://s3.amazonaws.com"
    body_limit = 1024 * 1024
    auth_header_names = ("authorization", "x-amz-security-token", "x-amz-date")
    #: Bound to an approval: every `x-amz-*` header (an object's ACL, grants, metadata,
    #: encryption, tags, lock, copy source; the JSON APIs' target), what S3 stores with an
    #: object and the conditions of a write; not those signed anew per attempt, nor the
    #: one-time code of `x-amz-mfa` (who may, not what is done).
    bound_headers = ("x-amz-*", "cache-control", "content-disposition", "content-language",
                     "expires", "if-match", "if-none-match", "if-modified-since",
                     "if-unmodified-since")  # fmt: skip
    unbound_headers = (*UNBOUND_HEADERS, "x-amz-date", "x-amz-content-sha256",
                       "x-amz-security-token", "x-amz-user-agent", "x-amz-mfa")  # fmt: skip

    def parse(self, req: HttpRequest, *, base_url: str | None = None) -> ParsedAction:
        method = request_method(req, _NAME)
        if "x-amz-signature=" in req.query.lower() or "x-amz-credential=" in req.query.lower():
            raise ConnectorError(
                "presigned urls are refused: call the api and let the gateway sign",
                connector=_NAME,
            )
        endpoint = service_endpoint(req.host, req.header("authorization"))
        if endpoint is None:
            refusal = s3_refusal(req.host)
            if refusal is not None:
                raise ConnectorError(refusal, connector=_NAME)
            return self.fallback(method, req.path)
        if endpoint.service == "s3":
            found = s3_action(req, method, endpoint.bucket)
            if found is None:
                return self.fallback(method, req.path)
            action, risk, params = found
            parsed = self._parsed(f"s3.{action}", risk, endpoint, params, "s3")
            also = S3_ALSO.get(action)
            if also is None:
                return parsed
            copy = self._parsed(f"s3.{also}", risk, endpoint, params, "s3")  # decided too
            return ParsedAction(parsed.spec, risk, _NAME, "s3", also=(copy,))
        routes = routes_of(endpoint.routes or endpoint.service)
        mixed = routes is not None and serves_query_protocol_too(endpoint.service)
        if routes is not None and (req.path != "/" or not mixed):
            return self._routed(req, method, endpoint, routes, mixed=mixed)
        operation, fields = self._operation(req, endpoint)
        if operation is None:
            return self.fallback(method, req.path)
        params = _resource_params(fields)
        if endpoint.service == "sqs" and "queue" not in params and req.path.count("/") == 2:
            params["queue"] = unquote(req.path.rsplit("/", 1)[1])  # query protocol: /acct/queue
        name = snake_case(operation)
        return self._parsed(f"{endpoint.service}.{name}", risk_of(name), endpoint, params, "*")

    def _operation(
        self, req: HttpRequest, endpoint: AwsEndpoint
    ) -> tuple[str | None, dict[str, object]]:
        targets = [value for name, value in req.headers if name.lower() == "x-amz-target"]
        protocols = [value for name, value in req.headers if name.lower() == "smithy-protocol"]
        if protocols or "/operation/" in unquote(req.path).lower():
            return _cbor_operation(req, endpoint, protocols, targets)
        query = parse_form(req.query, connector=_NAME) if req.query else {}
        if targets:
            if len(targets) > 1:
                raise ConnectorError("`X-Amz-Target` given twice", connector=_NAME)
            if _action_keys(query):
                raise ConnectorError("both `X-Amz-Target` and `Action`: refused", connector=_NAME)
            return _target_operation(targets[0], endpoint), _json_fields(req)
        if endpoint.service not in QUERY:  # its host reads no `Action`: it names nothing
            return None, {}
        fields: dict[str, tuple[str, ...]] = dict(query)
        if req.body and (req.method.upper() == "POST" or _is_form(req)):
            if not req.body_complete:
                raise ConnectorError("form body larger than the inspection limit", connector=_NAME)
            form = parse_form(req.body, connector=_NAME)
            if _action_keys(form) and _action_keys(query):
                raise ConnectorError("`Action` in both the query and the body", connector=_NAME)
            for key, values in form.items():  # one field in both: every value, compared
                fields[key] = fields.get(key, ()) + values
        keys = _action_keys(fields)
        if not keys:
            return None, dict(fields)
        if keys != ["Action"]:
            named = ", ".join(f"`{key[:40]}`" for key in keys if key != "Action")
            raise ConnectorError(
                f"refused {named}: only `Action` names the operation", connector=_NAME
            )
        if len(set(fields["Action"])) != 1:
            raise ConnectorError("`Action` given twice", connector=_NAME)
        operation = _checked(fields["Action"][0])
        return operation, {k: _one(v) for k, v in fields.items()}

    def _routed(
        self,
        req: HttpRequest,
        method: str,
        endpoint: AwsEndpoint,
        routes: dict[str, tuple[RestRoute, ...]],
        *,
        mixed: bool,
    ) -> ParsedAction:
        """A REST service's request, named by its method and path alone (``awsroutes``).
        An ``X-Amz-Target`` or ``smithy-protocol`` header is refused. ``Action`` in the
        query or a form body names nothing on a REST host (no REST API reads it), and is
        refused on a host that also serves the query protocol (SES's ``email``)."""
        names = [n for n, _ in req.headers if n.lower() in ("x-amz-target", "smithy-protocol")]
        if names:
            raise ConnectorError(
                f"`{names[0][:40]}` on {endpoint.service}, a REST service named by its path: "
                "refused",
                connector=_NAME,
            )
        if mixed:
            query = parse_form(req.query, connector=_NAME) if req.query else {}
            form = parse_form(req.body, connector=_NAME) if _is_form(req) and req.body else {}
            if _action_keys(query) or _action_keys(form):
                raise ConnectorError(
                    "`Action` beside a REST operation's path: which names the operation?",
                    connector=_NAME,
                )
        found = match_route(routes, method, req.path, req.query, connector=_NAME)
        if found is None:
            return self.fallback(method, req.path)
        route = found.route
        spec_params: dict[str, JsonValue] = dict(found.params)
        for name, value in _host_params(req, endpoint):
            if spec_params.setdefault(name, value) != value:
                raise ConnectorError(
                    f"`{name}` is `{value[:100]}` in the host or a header, another in the path: "
                    "refused",
                    connector=_NAME,
                )
        first = route.params[0] if route.params else None
        if first is None and endpoint.host_param is not None:
            first = endpoint.host_param[0]  # (the host's label, where the path has none)
        action = f"{endpoint.service}.{route.operation}"
        return self._parsed(
            action, risk_of(route.operation), endpoint, spec_params, "/".join(route.segments),
            target_param=first,
        )  # fmt: skip

    def _parsed(
        self,
        action: str,
        risk: Risk,
        endpoint: AwsEndpoint,
        params: dict[str, JsonValue],
        route: str,
        *,
        target_param: str | None = None,
    ) -> ParsedAction:
        """`target_param`: the parameter that is the target (a REST route's first label);
        None: the first of the resource parameters there."""
        target = None
        if target_param is not None:
            value = params.get(target_param)
            target = value[:2048] if isinstance(value, str) and value else None
        for name in () if target_param else _TARGET_PARAMS:
            value = params.get(name)
            if isinstance(value, str) and value:
                target = value[:2048] if name != "key" else f"{params['bucket']}/{value}"[:2048]
                break
        spec = make_spec(
            f"aws.{action}",
            provider=_NAME,
            account=endpoint.region,
            target=target,
            parameters={**params, "region": endpoint.region},
            connector=_NAME,
        )
        return ParsedAction(spec, risk, _NAME, route)

    def encoded(self, parsed: ParsedAction) -> tuple[str, ...]:
        return _ENCODED.get(parsed.action_type, ())

    def response_encoded(self, action: str) -> tuple[str, ...]:
        return _RESPONSE_ENCODED.get(action, ())

    def build_request(self, spec: ActionSpec, *, base_url: str | None = None) -> HttpRequest:
        raise ConnectorError(
            "aws actions are not executed by the server: send them through the gateway",
            connector=_NAME,
        )

    def actions(self) -> list[ActionInfo]:
        rows = [
            ("aws.s3.object.get", "GET", "/{bucket}/{key}", "low", "Get an object"),
            ("aws.s3.object.put", "PUT", "/{bucket}/{key}", "medium", "Put an object"),
            ("aws.s3.object.delete", "DELETE", "/{bucket}/{key}", "high", "Delete an object"),
            ("aws.s3.object.list", "GET", "/{bucket}", "low", "List objects"),
            ("aws.s3.multipart.create", "POST", "/{bucket}/{key}?uploads", "medium",
             "Start a multipart upload"),
            ("aws.sqs.send_message", "POST", "X-Amz-Target: AmazonSQS.SendMessage", "medium",
             "Send a message"),
            ("aws.dynamodb.put_item", "POST", "X-Amz-Target: DynamoDB_20120810.PutItem",
             "medium", "Put an item"),
            ("aws.sns.publish", "POST", "Action=Publish", "medium", "Publish to a topic"),
            ("aws.kms.encrypt", "POST", "X-Amz-Target: TrentService.Encrypt", "medium",
             "Encrypt with a KMS key"),
            ("aws.monitoring.put_metric_data", "POST",
             "X-Amz-Target: GraniteServiceVersion20100801.PutMetricData", "medium",
             "Publish CloudWatch metrics"),
            ("aws.secretsmanager.get_secret_value", "POST",
             "X-Amz-Target: secretsmanager.GetSecretValue", "high", "Read a secret"),
            ("aws.sts.assume_role", "POST", "Action=AssumeRole", "high", "Assume a role"),
            ("aws.lambda.invoke", "POST", "/2015-03-31/functions/{function}/invocations",
             "medium", "Invoke a function"),
            ("aws.bedrock-runtime.converse", "POST", "/model/{model}/converse", "medium",
             "Converse with a Bedrock model"),
        ]  # fmt: skip
        return [ActionInfo(t, m, p, r, d) for t, m, p, r, d in rows]  # type: ignore[arg-type]


def _host_params(req: HttpRequest, endpoint: AwsEndpoint) -> list[tuple[str, str]]:
    """The parameters the host carries (``ACCOUNT.s3-control``: ``account``;
    ``GRAPH.REGION.neptune-graph``: ``graph``) and, where the host names none, the header
    the SDKs send the same value in (``x-amz-account-id``, ``graphIdentifier``). The header
    given twice, not a value of its kind, or naming another than the host is refused:
    which one would the service act on?"""
    found = [endpoint.host_param] if endpoint.host_param is not None else []
    header = _PARAM_HEADERS.get(endpoint.service)
    if header is None:
        return found
    param, name, shape = header
    values = [value.strip() for key, value in req.headers if key.lower() == name]
    if not values:
        return found
    if len(values) > 1 or not shape.fullmatch(values[0]):
        raise ConnectorError(f"`{name}` given twice or not an id: refused", connector=_NAME)
    if found and values[0] != found[0][1]:
        raise ConnectorError(
            f"`{name}` names another {param} than the host `{req.host[:200]}`: refused",
            connector=_NAME,
        )
    return found or [(param, values[0])]


def _target_operation(target: str, endpoint: AwsEndpoint) -> str:
    """The operation of ``X-Amz-Target: <prefix>.<Operation>`` (trimmed of spaces and tabs
    only, as HTTP does), refused when the prefix addresses another service."""
    found = _TARGET.fullmatch(target.strip(" \t"))
    if found is None:
        raise ConnectorError(f"invalid `X-Amz-Target` `{target[:100]}`", connector=_NAME)
    prefix, operation = found.groups()
    _check_service(prefix, endpoint, f"`X-Amz-Target` `{target[:100]}`")
    return _checked(operation)


def _cbor_operation(
    req: HttpRequest, endpoint: AwsEndpoint, protocols: list[str], targets: list[str]
) -> tuple[str, dict[str, object]]:
    """The operation of an RPCv2-CBOR request, ``POST /service/<Service>/operation/<Op>``,
    and its body's top-level fields; anything else that looks like one is refused."""
    if [value.strip(" \t") for value in protocols] != ["rpc-v2-cbor"]:
        raise ConnectorError(
            "an rpc-v2-cbor request takes one `smithy-protocol: rpc-v2-cbor` header",
            connector=_NAME,
        )
    found = _CBOR_PATH.fullmatch(req.path)
    if found is None or req.method.upper() != "POST":
        raise ConnectorError(
            f"invalid rpc-v2-cbor request `{req.method[:10]}`: expected `POST "
            "/service/{service}/operation/{operation}`",
            connector=_NAME,
        )
    if targets or req.query:
        raise ConnectorError(
            "an rpc-v2-cbor request with an `X-Amz-Target` or a query: refused", connector=_NAME
        )
    types = [value for name, value in req.headers if name.lower() == "content-type"]
    content_type = (types[0] if types else "").split(";")[0].strip(" \t").lower()
    if len(types) > 1 or ((req.body or types) and content_type != "application/cbor"):
        raise ConnectorError("an rpc-v2-cbor body is `application/cbor`", connector=_NAME)
    if not req.body_complete:
        raise ConnectorError("cbor body larger than the inspection limit", connector=_NAME)
    service, operation = found.groups()
    shown = f"rpc-v2-cbor service `{service[:100]}`"
    _check_service(service, endpoint, shown)
    if service.lower() not in CBOR:
        raise ConnectorError(f"{shown} does not speak rpc-v2-cbor: refused", connector=_NAME)
    return _checked(operation), dict(cbor_fields(req.body))


def _check_service(prefix: str, endpoint: AwsEndpoint, shown: str) -> None:
    """Refuse a JSON target prefix (or RPCv2-CBOR service) that is not in the table, or that
    addresses another service than the host's."""
    endpoints = TARGETS.get(prefix.lower())
    if endpoints is None:
        raise ConnectorError(
            f"unknown {shown}: no json-protocol service of botocore {BOTOCORE_VERSION}",
            connector=_NAME,
        )
    services = [SERVICE_NAMES.get(name, name) for name in endpoints]
    if endpoint.service not in services:
        raise ConnectorError(
            f"{shown} addresses {' or '.join(services)}, the host {endpoint.service}: refused",
            connector=_NAME,
        )


def _action_keys(fields: Mapping[str, object]) -> list[str]:
    """The parameters that could name a query operation, in any case: as a case-insensitive
    comparison may read them, which folds a dotless or dotted I and a long S into ASCII."""
    return sorted(key for key in fields if _folded(key) in _ACTION_KEYS)


def _folded(key: str) -> str:
    return "".join(c.lower() if c.isascii() else c.upper().lower()[:1] for c in key)


def _is_form(req: HttpRequest) -> bool:
    content_type = req.header("content-type") or ""
    return content_type.strip().lower().startswith("application/x-www-form-urlencoded")


def _checked(operation: str) -> str:
    """`operation` when it is spelled as the service's model spells it, else refused: no
    other case, separator, space or character is named (module docstring)."""
    if not _OPERATION.fullmatch(operation):
        raise ConnectorError(
            f"invalid aws operation `{operation[:100]}`: not the api's CamelCase spelling",
            connector=_NAME,
        )
    return operation


def _one(value: object) -> object:
    if isinstance(value, (list, tuple)):
        if len(set(value)) > 1:
            raise ConnectorError("the same field twice with different values", connector=_NAME)
        return value[0] if value else ""
    return value


def _json_fields(req: HttpRequest) -> dict[str, object]:
    if not req.body:
        return {}
    if not req.body_complete:
        raise ConnectorError("json body larger than the inspection limit", connector=_NAME)

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        keys = [k for k, _ in items]
        if len(keys) != len(set(keys)):
            raise ConnectorError("the same json field twice", connector=_NAME)
        return dict(items)

    try:
        data = json.loads(req.body, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        raise ConnectorError("invalid json body", connector=_NAME) from None
    if not isinstance(data, dict):
        raise ConnectorError("the json body is not an object", connector=_NAME)
    return data


def _resource_params(fields: dict[str, object]) -> dict[str, JsonValue]:
    params: dict[str, JsonValue] = {}
    for name, field in _RESOURCE_FIELDS:
        value = fields.get(field)
        if name in params or not isinstance(value, str) or not value:
            continue
        params[name] = value.rstrip("/").rsplit("/", 1)[-1] if field == "QueueUrl" else value
    return params


def _services_note() -> str:
    """The catalogue's list of the JSON-protocol services named, from the table."""
    names = sorted({SERVICE_NAMES.get(e, e) for endpoints in TARGETS.values() for e in endpoints})
    cbor = sorted({SERVICE_NAMES.get(e, e) for prefix in CBOR for e in TARGETS[prefix]})
    services = sum(len(endpoints) for endpoints in TARGETS.values())
    text = (
        f"JSON-protocol services named, by the ``<service>`` of their actions ({len(names)} "
        f"names for the {services} services of botocore {BOTOCORE_VERSION}'s data: Kinesis "
        "Analytics' two API versions share one): "
        + ", ".join(f"``{name}``" for name in names)
        + ". RPCv2-CBOR is named for "
        + ", ".join(f"``{name}``" for name in cbor)
        + "."
    )
    return "\n\n" + textwrap.fill(text, width=90, break_on_hyphens=False) + "\n"


CONNECTOR = AwsConnector()
CONNECTOR.notes = (__doc__ or "").rstrip("\n") + _services_note()
