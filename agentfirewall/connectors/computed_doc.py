"""The "Computed credentials" section of the connector catalogue (docs/connectors.md)."""

from __future__ import annotations

__all__ = ["COMPUTED_CREDENTIALS"]

COMPUTED_CREDENTIALS = """\
## Computed credentials (injectors)

Most connectors carry a static credential: the gateway drops the agent's `Authorization`
(and the connector's other credential headers) and adds the vaulted one. Some APIs take no
static header; for them the connector's `auth_type` names an *injector* and its vaulted
credential is a JSON document (`agentfirewall.credentials.model`), checked when the
connector is added (422 naming the field, never echoing a value). The injector is pure
(`agentfirewall.credentials.injectors`: the request as forwarded in, headers out, the time
and the current token passed in); the gateway's `TokenBroker`
(`agentfirewall_proxy/injection.py`) fetches, caches and refreshes tokens. Concurrent
requests share one token fetch; a failed refresh keeps using the previous token while it
is valid, and past its expiry the request fails closed: 502 `credential_unavailable` with
the reason (`the token endpoint refused: status 400, \\`invalid_grant\\``). Tokens that
travel upstream are scrubbed from responses like static credentials. An action the SDK
asks the control plane to execute (SDK Mode A, `POST /api/v1/actions/{id}/execute`) on
such a connector gets its credential computed there the same way
(`agentfirewall_server/tokens.py`: the same broker, one token for many executions, a
rotated refresh token stored in the vault, audited with actor `server`); a token that
cannot be had is 502 `credential_unavailable` with `retryable: true` (nothing was sent).
The control plane reaches token endpoints over https, trusting
`AGENTFIREWALL_UPSTREAM_CA` besides the system's CAs. At the gateway, token
requests go where upstream requests go: over https only, with `--upstream-ca`, through
`--upstream-proxy` when one is set (a `CONNECT` to the endpoint's own name, which the proxy
resolves), else to the address the `--resolve` map gives; the heartbeat's `token_fetches`
counts them.

### `aws_sigv4`: AWS Signature Version 4

`tf connector add aws --access-key-id AKIA... --secret-access-key-env VAR [--role-arn ARN
--external-id ID --sts-region REGION]` (with no key flags it reads `AWS_ACCESS_KEY_ID` and
`AWS_SECRET_ACCESS_KEY`). `tf run` gives the agent placeholder keys
(`AWS_ACCESS_KEY_ID=AKIATAMEFLAREPLACEHOLDER`, a placeholder secret), removes
`AWS_SESSION_TOKEN`, `AWS_PROFILE` and other credential sources, and points
`AWS_CA_BUNDLE` at the gateway CA: boto3 and the AWS CLI work unchanged. The gateway
verifies nothing of the agent's signature: it names the action (the `aws` connector
above), decides it, drops the agent's `Authorization`, `X-Amz-Date`,
`X-Amz-Security-Token` and `X-Amz-Content-Sha256`, and signs the forwarded request with
the real keys: method, path, query and every forwarded header except hop-by-hop ones,
`User-Agent`, `Accept-Encoding`, `Content-Length` and the `X-TameFlare-*` headers. Region
and service come from the host (the agent's credential scope only for an endpoint the
host does not name). Payload: the body's SHA-256 when the body is at hand (read whole up
to the 16 MiB inspection limit); S3 keeps the agent's `UNSIGNED-PAYLOAD` and
`STREAMING-UNSIGNED-PAYLOAD-TRAILER` (aws-chunked uploads with unsigned chunks, boto3's
default for uploads with checksums), and an S3 body streamed past the limit is signed
`UNSIGNED-PAYLOAD`. An S3 upload whose chunks the client signs
(`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: the AWS SDK for Java, any SDK over plain http; and
its `-TRAILER` form, a checksum sent after the data) is re-signed chunk by chunk as it
streams: the head is signed with the real keys, and each chunk's signature is replaced by
the one the real keys chain from it, and so is the trailer's (only the 64 hex digits
change, so the body keeps its length; a chunk is held until its data is in, up to 16 MiB,
the trailer up to 8 KiB). A malformed chunk or trailer framing, another service's body past
the limit and SigV4a streaming are refused (400 `unsignable_request`). Virtual-host
(`bucket.s3.REGION.amazonaws.com`) and path-style (`s3.REGION.amazonaws.com/bucket`) S3
are both named and signed. **Presigned URLs are refused** (403): one minted by the agent
is signed with the placeholder key, so it is worthless outside the gateway and, through
it, would be an unsigned request; the agent calls the API instead and the gateway signs
each call it allows. With `--role-arn` the gateway calls STS `AssumeRole`
(`sts.REGION.amazonaws.com`, signed with the static keys) and signs with the temporary
keys, refreshed five minutes before they expire; the session token travels and is
scrubbed from responses. The static secret never travels (only signatures do), so
responses are not searched for it. The signer is our own (`agentfirewall/credentials/
sigv4.py`, standard library only, as the core must be); tests check its signatures
against botocore's over generated requests, and the fake AWS verifies every request with
botocore.

### `github_app`: GitHub App installation tokens

`tf connector add github --app-id 123 --private-key app.pem --installation-id 456
[--base-url https://github.example.com/api/v3]`. The gateway signs an app JWT (RS256,
`iss` = app id, `iat` one minute in the past, `exp` nine minutes later), calls `POST
/app/installations/{id}/access_tokens`, and injects the installation token as `Authorization:
token …` (Basic `x-access-token` for git over HTTPS), refreshed five minutes before its
`expires_at`. The private key never leaves the gateway.

### `oauth2`: client credentials and refresh tokens

`tf connector add generic --domains api.example.com --oauth2-token-url
https://auth.example.com/token --client-id ID --client-secret-env VAR [--scope S ...]
[--refresh-token-env VAR] [--client-auth basic|body]`. With a refresh token the grant is
`refresh_token`, otherwise `client_credentials`; the scopes are the connector's own. The
client authenticates with HTTP Basic (default) or form fields. The access token is
injected as `Authorization: Bearer …` and refreshed a minute before `expires_in` runs out
(at most a quarter of its lifetime early). The token URL must be https. An access token
must be RFC 6749's `1*VSCHAR` (printable ASCII, no space), and so must a `refresh_token`
answered with it (else the answer is refused, nothing cached); `expires_in` is a number or a
numeric string (Azure AD v1), finite and positive, and a lifetime is 5 s at least (an
endpoint answering less does not cost a token request per request). A refusal reaches the
agent (502 `credential_unavailable`) naming the endpoint's `error` only when it is a
registered code (RFC 6749's `invalid_grant`, `invalid_client`…, RFC 6750's and RFC 8628's),
never other text, which may echo the client secret or the refresh token as it was sent
(GitHub's `message` and STS's `Message` are never relayed either; STS's `Code` when it is
one of AWS's documented codes); no such message holds a secret of the credential in any
spelling the scrubber finds (a Basic credential's base64, a form's percent-encoding).

**Rotated refresh tokens.** Many token endpoints answer a new refresh token with each access
token and refuse the used one. The gateway stores the new one in the vault (`POST
/api/v1/gateway/connectors/{id}/refresh-token`, in the background, sent again while the
control plane is away, a pause doubling up to 30 s, for as long as the gateway runs, and at
once when it answers again; a newer rotation replaces one still waiting; a stopping gateway
waits up to 5 s for it and logs one it could not store), and the configuration carries it to
every gateway, so a restarted gateway, or another one, refreshes with a token that still
works. The control plane compares before it writes: the vault must still hold the token the
gateway replaced, so an admin's new grant or another gateway's earlier rotation is never
overwritten by a late one (409, logged by the gateway as a warning). Until the vault has it,
the gateway refreshes with the rotated token it holds; once the vault changed, with the
vault's. Audited `connector.credential_rotated` (the connector, never the token). Storing a
rotated token does not cost a new access token (the token cache ignores the refresh token).
A token is cached under its connector's id, and the control plane never gives an id twice:
another grant (an admin removes the connector and adds one with another user's refresh
token, the same client) is a new connector id, so a token minted from the old grant is never
served for the new one, by a gateway or by the control plane.

**One refresh at a time.** Gateways and control-plane replicas that share a grant take turns
at its token endpoint, so none ever sends a refresh token another has just used (an endpoint
with reuse detection would revoke the whole grant). Before refreshing, a gateway takes the
connector's lease from the control plane (`POST /api/v1/gateway/connectors/{id}/
refresh-lease`), which names the refresh token the vault holds now; storing the rotation
ends the lease, and a refresh that rotated nothing, or failed, releases it. Another gateway
due to refresh meanwhile waits for the lease (up to 20 s) and then refreshes with the token
just stored; its requests keep using the token they hold while it is valid (after at most 2
s of waiting). A lease ends by itself after `AGENTFIREWALL_REFRESH_LEASE_SECONDS` (30 s),
should its holder stop half-way; a holder renews it while its token request is in flight,
and gives the request up before the lease could end if it cannot (every token request ends
within 30 s in all). A rotation refreshed under a lease that ended while another holder's
lasts is not stored (409), and ends no lease. When the control plane cannot be reached, a
gateway refreshes without a lease, with its last configuration's token (logged as a
warning): only gateways cut off together and due at the same moment could then still race.
"""
