"""boto3 through `tf run` and the real gateway against a fake AWS that verifies every SigV4
signature with botocore's signer and the real secret (tests/fakes/aws.py): the agent
signs with placeholder keys, the gateway names the action, decides it and re-signs."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import Project, wait_for
from tests.fakes import FakeUpstreams

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

KEY_ID = "AKIA" + secrets.token_hex(8).upper()
SECRET = "real/" + secrets.token_urlsafe(30)

AGENT = """\
import json, os, sys
import boto3, requests
from botocore.config import Config
from botocore.exceptions import ClientError

def attempt(fn):
    try:
        fn()
        return "ok"
    except ClientError as exc:
        return str(exc.response["ResponseMetadata"]["HTTPStatusCode"])

region = "us-west-2"
mode = sys.argv[1]
out = {"env": dict(os.environ)}
try:
    out["proc_environ"] = open("/proc/self/environ", "rb").read().decode("latin-1")
except OSError:
    out["proc_environ"] = ""
if mode == "main":
    s3 = boto3.client("s3", region_name=region)
    s3.put_object(Bucket="demo-bucket", Key="notes/a b.txt", Body=b"hello world")
    out["get"] = s3.get_object(Bucket="demo-bucket", Key="notes/a b.txt")["Body"].read().decode()
    path = boto3.client("s3", region_name=region, config=Config(s3={"addressing_style": "path"}))
    path.put_object(Bucket="demo-bucket", Key="path.txt", Body=b"x" * 70000)
    out["path_get"] = len(path.get_object(Bucket="demo-bucket", Key="path.txt")["Body"].read())
    up = s3.create_multipart_upload(Bucket="demo-bucket", Key="big.bin")["UploadId"]
    parts = []
    for n, chunk in enumerate((b"a" * 300000, b"b" * 1000), start=1):
        etag = s3.upload_part(Bucket="demo-bucket", Key="big.bin", UploadId=up, PartNumber=n,
                              Body=chunk)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    s3.complete_multipart_upload(Bucket="demo-bucket", Key="big.bin", UploadId=up,
                                 MultipartUpload={"Parts": parts})
    out["delete"] = attempt(lambda: s3.delete_object(Bucket="demo-bucket", Key="notes/a b.txt"))
    params = {"Bucket": "demo-bucket", "Key": "path.txt"}
    url = s3.generate_presigned_url("get_object", Params=params)
    out["presigned"] = requests.get(url).status_code
    sqs = boto3.client("sqs", region_name=region)
    queue = "https://sqs.us-west-2.amazonaws.com/123456789012/jobs"
    out["sqs"] = bool(sqs.send_message(QueueUrl=queue, MessageBody="hi")["MessageId"])
    ddb = boto3.client("dynamodb", region_name=region)
    out["ddb"] = attempt(lambda: ddb.put_item(TableName="orders", Item={"id": {"S": "1"}}))
else:
    s3 = boto3.client("s3", region_name=region)
    s3.put_object(Bucket="demo-bucket", Key="role.txt", Body=b"hello world")
    out["get"] = s3.get_object(Bucket="demo-bucket", Key="role.txt")["Body"].read().decode()
    import subprocess  # the AWS CLI, unchanged, under the same environment
    cli = subprocess.run(["aws", "s3", "cp", "-", "s3://demo-bucket/cli.txt",
                          "--region", region], input=b"from the cli", capture_output=True)
    out["cli"] = [cli.returncode, cli.stderr.decode()[-500:]]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def aws_project(
    tmp_path_factory: pytest.TempPathFactory, tf_bin: Path, upstreams: FakeUpstreams
) -> Iterator[tuple[Project, str, str]]:
    """One project for the module: `tf up`, an `aws` connector with the real keys, rules."""
    root = tmp_path_factory.mktemp("aws") / "proj"
    root.mkdir()
    project = Project(root, tf_bin, upstreams)
    aws = upstreams["aws"]
    aws.settings["keys"][KEY_ID] = (SECRET, None)
    try:
        project.tf("init")
        up = project.up()
        project.tf(
            "connector", "add", "aws", "--access-key-id", KEY_ID, "--secret-access-key-env",
            "REAL_AWS_SECRET", env={"REAL_AWS_SECRET": SECRET},
        )  # fmt: skip
        project.bash(
            'tf permissions set --gateway Bot --connector aws --action "aws.s3.*" '
            "--decision allow\n"
            'tf permissions set --gateway Bot --connector aws --action "aws.sqs.*" '
            "--decision allow\n"
            "tf permissions set --gateway Bot --connector aws --action aws.s3.object.delete "
            "--decision deny\n"
            "tf permissions set --gateway Bot --connector aws --action aws.dynamodb.put_item "
            "--decision require_approval"
        )
        admin = (project.root / ".tf" / "admin.token").read_text().strip()
        project.agent("agent.py", AGENT)
        yield project, str(up["server_url"]), admin
    finally:
        project.stop_up()


def _never_leaks(project: Project, result: dict[str, object], secret: str) -> None:
    env = result["env"]
    assert isinstance(env, dict)
    assert env["AWS_ACCESS_KEY_ID"] == "AKIATAMEFLAREPLACEHOLDER"
    assert "AWS_SESSION_TOKEN" not in env
    assert secret not in json.dumps(result)
    for path in (project.root / ".tf" / "run").rglob("*"):  # what the agent can read
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def _approve_when_held(server: str, admin: str) -> threading.Thread:
    headers = {"Authorization": f"Bearer {admin}"}

    def approve() -> None:
        def pending() -> list[dict[str, object]]:
            found = httpx.get(f"{server}/api/v1/approvals", headers=headers).json()
            return list(found.get("approvals", []))

        try:
            item = wait_for(pending, 300, "the held put_item")[0]
        except AssertionError:
            return  # the agent's own assertion on `ddb` then says what happened
        httpx.post(f"{server}/api/v1/approvals/{item['id']}/approve", headers=headers, json={})

    thread = threading.Thread(target=approve, daemon=True)
    thread.start()
    return thread


def test_boto3_is_re_signed_decided_and_never_sees_the_secret(
    aws_project: tuple[Project, str, str], upstreams: FakeUpstreams
) -> None:
    project, server, admin = aws_project
    aws = upstreams["aws"]
    aws.settings["rejected"].clear()
    thread = _approve_when_held(server, admin)
    done = project.tf("run", "--name", "Bot", "python", "agent.py", "main", timeout=400)
    thread.join(10)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert aws.settings["rejected"] == []  # every request reached it correctly re-signed
    assert result["get"] == "hello world"
    assert result["path_get"] == 70000
    assert aws.settings["objects"][("demo-bucket", "big.bin")] == b"a" * 300000 + b"b" * 1000
    assert result["delete"] == "403"  # denied by the rule: never reached the fake
    assert not aws.received("DELETE")
    assert result["presigned"] == 403  # presigned urls are refused (docs/connectors.md)
    assert result["sqs"] is True
    assert aws.settings["messages"][-1]["MessageBody"] == "hi"
    assert result["ddb"] == "ok"  # held, approved, then re-signed
    assert aws.settings["items"][-1]["TableName"] == "orders"
    for request in aws.received():
        assert (request.header("authorization") or "").startswith(
            f"AWS4-HMAC-SHA256 Credential={KEY_ID}/"
        )
    _never_leaks(project, result, SECRET)


def test_assume_role_keys_sign_and_are_cached(
    aws_project: tuple[Project, str, str], upstreams: FakeUpstreams
) -> None:
    project, _, _ = aws_project
    aws = upstreams["aws"]
    role = "arn:aws:iam::123456789012:role/agent"
    aws.settings["roles"] = (role,)
    aws.settings["rejected"].clear()
    aws.clear()
    project.tf(
        "connector", "add", "aws", "--replace", "--access-key-id", KEY_ID,
        "--secret-access-key-env", "REAL_AWS_SECRET", "--role-arn", role,
        env={"REAL_AWS_SECRET": SECRET},
    )  # fmt: skip
    done = project.tf("run", "--name", "Bot", "python", "agent.py", "role", timeout=400)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["get"] == "hello world"
    assert aws.settings["rejected"] == []
    assert len(aws.settings["assumed"]) == 1  # one AssumeRole for every request of the run
    temp = aws.settings["assumed"][0]
    s3_calls = [r for r in aws.received() if "s3" in (r.host or "")]
    assert len(s3_calls) == 3  # boto3's put and get, the AWS CLI's put
    assert result["cli"][0] == 0, result["cli"]
    assert aws.settings["objects"][("demo-bucket", "cli.txt")] == b"from the cli"
    assert all(f"Credential={temp}/" in (r.header("authorization") or "") for r in s3_calls)
    session = aws.settings["keys"][temp][1]
    assert session is not None
    assert session not in json.dumps(result)
    _never_leaks(project, result, SECRET)


def test_tf_connector_add_github_app_and_oauth2(aws_project: tuple[Project, str, str]) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    project, _, _ = aws_project
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (project.root / "app.pem").write_bytes(pem)
    project.tf("connector", "add", "github", "--app-id", "4242", "--private-key", "app.pem",
               "--installation-id", "99")  # fmt: skip
    project.tf(
        "connector", "add", "generic", "--domains", "api.example.com", "--oauth2-token-url",
        "https://auth.example.com/token", "--client-id", "cid", "--client-secret-env", "CS",
        "--scope", "read", env={"CS": "cs-" + SECRET},
    )  # fmt: skip
    missing = project.tf("connector", "add", "github", "--app-id", "1", "--replace", check=False)
    assert missing.returncode != 0
    assert "needs --app-id, --private-key FILE and --installation-id" in missing.stderr
    listed = project.tf_json("connector", "list")["connectors"]
    kinds = {c["type"]: (c["auth_type"], c["has_credential"]) for c in listed}
    assert kinds["github"] == ("github_app", True)
    assert kinds["generic"] == ("oauth2", True)
    assert kinds["aws"][1] is True
    assert SECRET not in json.dumps(listed)
    assert "BEGIN PRIVATE KEY" not in json.dumps(listed)
