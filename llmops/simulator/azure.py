"""Azure OpenAI: one resource whose v1 API (`{sim}/azure/openai/v1`, as the real
`https://RESOURCE.openai.azure.com/openai/v1/`) serves OpenAI's models under deployments, plus
the Entra ID token endpoint its service principals sign in at.

The handlers are OpenAI's (openai_chat, openai_embeddings, openai_responses, openai_files,
openai_batches) through the AZURE dialect; what differs is here and in azure_batches:

- Auth: an `api-key` header (any non-empty value), or `Authorization: Bearer <token>` with a
  token from `POST {sim}/azure-login/{tenant}/oauth2/v2.0/token` (client credentials; the
  authority is `{sim}/azure-login`). A bearer the simulator did not issue (an OpenAI key sent
  the OpenAI way) is a 401, as on Azure.
- `model` names a deployment: every OpenAI chat or embedding model is a deployment of itself,
  and the `azure_deployments` config key adds more (the start config has llmops-gpt-4o-mini,
  llmops-gpt-5-mini, llmops-embed-small, and the demo's llmops-gpt-41-mini, llmops-o4-mini).
  An unknown one is 404 DeploymentNotFound. Answers, usage rows and timing settings use the
  deployment's model.
- Files, batches and stored responses are the resource's own, apart from OpenAI's. Files
  take `expires_after` (14 to 30 days) and never expire without it; batch files are capped
  at 200 MB, and at 500 per resource without an expiry (10,000 with one).
- Faults name provider `azure` (a model fault may name the deployment or its model); the
  usage book has an `azure` provider, by model, in modes realtime, stream and batch.
- service_tier: Azure has no flex (nor scale) processing; those are refused.

Global Batch rules and the enqueued-token quota are in azure_batches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from aiohttp import web

from llmops.simulator.openai_api import Dialect, OpenAIError
from llmops.simulator.openai_files import OpenAIFiles
from llmops.simulator.state import SimState
from llmops.simulator.wire import api_key, dump_bytes, pause, rfc3339

BASE = "/azure/openai/v1"
LOGIN = "/azure-login/{tenant}/oauth2/v2.0/token"
SCOPES = ("https://cognitiveservices.azure.com/.default", "https://ai.azure.com/.default")
AUDIENCE = "https://cognitiveservices.azure.com"
TOKEN_LIFETIME_S = 3599
# Azure's file rules: expires_after between 14 and 30 days; batch files up to 200 MB; at most
# 500 batch files per resource without an expiry, 10,000 with one.
EXPIRY_BOUNDS = (1_209_600, 2_592_000)
MAX_BATCH_FILE_BYTES = 200 * 1024 * 1024
MAX_BATCH_FILES = 500
MAX_EXPIRING_BATCH_FILES = 10_000
TIERS = ("auto", "default", "priority")

ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
    "a valid key for an active subscription and use a correct regional API endpoint for your "
    "resource."
)
UNAUTHORIZED = (
    "Unauthorized. Access token is missing, invalid, audience is incorrect "
    "(https://cognitiveservices.azure.com), or have expired."
)
NO_DEPLOYMENT = (
    "The API deployment for this resource does not exist. If you created the deployment "
    "within the last 5 minutes, please wait a moment and try again."
)


class AzureError(OpenAIError):
    """An error in Azure's own short shape: {"error": {"code", "message"}}."""

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


# --- Entra ID tokens -------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def issue_token(state: SimState, tenant: str, client_id: str) -> str:
    """A JWT for the Cognitive Services audience, signed with the simulator's secret (HS256,
    where Entra signs RS256: nobody but this simulator needs to check it)."""
    now = int(time.time())
    header = _b64(b'{"alg":"HS256","typ":"JWT"}')
    claims = {
        "aud": AUDIENCE,
        "iss": f"https://sts.windows.net/{tenant}/",
        "iat": now,
        "nbf": now,
        "exp": now + TOKEN_LIFETIME_S,
        "appid": client_id,
        "sub": client_id,
        "tid": tenant,
        "jti": state.ids.make(""),
    }
    payload = _b64(dump_bytes(claims))
    signature = hmac.new(state.token_secret, f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{_b64(signature.digest())}"


def token_issued(state: SimState, token: str) -> bool:
    """Whether this simulator issued the token. Its expiry is not checked: clients cache a
    token by wall time while tests move the simulator's clock by days."""
    header, _, rest = token.partition(".")
    payload, _, signature = rest.partition(".")
    if not (header and payload and signature):
        return False
    expected = hmac.new(state.token_secret, f"{header}.{payload}".encode(), hashlib.sha256)
    return hmac.compare_digest(_b64(expected.digest()), signature)


def _oauth_error(status: int, error: str, code: int, description: str) -> web.Response:
    """Microsoft identity platform's error shape, AADSTS code in the description."""
    trace = "00000000-0000-0000-0000-" + hashlib.sha256(description.encode()).hexdigest()[:12]
    stamp = rfc3339(time.time())
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {trace} "
        f"Correlation ID: {trace} Timestamp: {stamp}",
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": trace,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return web.Response(body=dump_bytes(body), status=status, content_type="application/json")


class EntraLogin:
    """`POST /azure-login/{tenant}/oauth2/v2.0/token`: the client-credentials grant. Any
    non-empty client secret is accepted; faults with provider `azure`, endpoint `auth` make
    it fail (401 as invalid_client, other statuses as temporarily_unavailable)."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    def routes(self) -> list[web.RouteDef]:
        return [web.post(LOGIN, self.token)]

    async def token(self, request: web.Request) -> web.Response:
        state = self.state
        fault = state.fault("azure", "auth", None, ("error", "stall"))
        if fault is not None:
            if fault.kind == "stall":
                await pause(fault.stall_s)
            elif fault.status == 401:
                return _oauth_error(
                    401, "invalid_client", 7000215, "Invalid client secret provided."
                )
            else:
                return _oauth_error(
                    fault.status or 503,
                    "temporarily_unavailable",
                    90033,
                    "A transient error has occurred. Please try again.",
                )
        form = await request.post() if request.content_type.endswith("urlencoded") else {}
        grant = form.get("grant_type")
        client_id = form.get("client_id")
        if not grant:
            return _oauth_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        if grant != "client_credentials":
            return _oauth_error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
            )
        if not client_id:
            return _oauth_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        if not form.get("client_secret"):
            return _oauth_error(
                401,
                "invalid_client",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the "
                "'client_credentials' grant type.",
            )
        scope = form.get("scope")
        if not scope:
            return _oauth_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            )
        if scope not in SCOPES:
            return _oauth_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        token = issue_token(state, request.match_info["tenant"], str(client_id))
        body = {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_S,
            "ext_expires_in": TOKEN_LIFETIME_S,
            "access_token": token,
        }
        return web.Response(body=dump_bytes(body), content_type="application/json")


# --- the resource ----------------------------------------------------------------------------


def authorize(state: SimState, request: web.Request) -> OpenAIError | None:
    if (request.headers.get("api-key") or "").strip():
        return None
    if request.headers.get("Authorization"):
        token = api_key(request)
        if token is not None and token_issued(state, token):
            return None
        return AzureError(401, UNAUTHORIZED, code="401")
    return AzureError(401, ACCESS_DENIED, code="401")


def deployment_model(state: SimState, name: str) -> str:
    model = state.config.deployment(name)
    if model is None:
        raise AzureError(404, NO_DEPLOYMENT, code="DeploymentNotFound")
    return model


def refuse_tier(tier: str) -> OpenAIError:
    return OpenAIError(
        400,
        f"Unsupported value: 'service_tier' does not support {json.dumps(tier)} on this "
        f"deployment. Supported values are: {', '.join(repr(t) for t in TIERS)}.",
        param="service_tier",
        code="unsupported_value",
    )


AZURE = Dialect(
    provider="azure",
    base=BASE,
    authorize=authorize,
    resolve=deployment_model,
    tiers=TIERS,
    refuse_tier=refuse_tier,
)


class AzureFiles(OpenAIFiles):
    """The resource's Files API: OpenAI's, with Azure's expiry bounds and batch-file limits."""

    expiry_bounds = EXPIRY_BOUNDS

    def default_ttl(self, purpose: str) -> int | None:
        return None  # an Azure file without expires_after stays until deleted

    def admit(self, purpose: str, data: bytes, ttl_given: bool) -> None:
        if purpose != "batch":
            return
        if len(data) > MAX_BATCH_FILE_BYTES:
            raise OpenAIError(
                400,
                f"The file is {len(data)} bytes; a batch file may be at most 200 MB "
                f"({MAX_BATCH_FILE_BYTES} bytes).",
                param="file",
                code="file_too_large",
            )
        now = self.state.clock.now()
        kept = [
            f
            for f in self.files.values()
            if f.purpose == "batch" and (f.expires_at is None or f.expires_at > now)
        ]
        expiring = sum(1 for f in kept if f.expires_at is not None)
        if ttl_given and expiring >= MAX_EXPIRING_BATCH_FILES:
            raise OpenAIError(
                400,
                f"This resource already has {expiring} batch files with an expiry; the limit "
                f"is {MAX_EXPIRING_BATCH_FILES}. Delete some files and try again.",
                param="file",
                code="file_limit_exceeded",
            )
        if not ttl_given and len(kept) - expiring >= MAX_BATCH_FILES:
            raise OpenAIError(
                400,
                f"This resource already has {len(kept) - expiring} batch files without an "
                f"expiry; the limit is {MAX_BATCH_FILES} (or {MAX_EXPIRING_BATCH_FILES} with "
                "expires_after). Delete some files or upload with expires_after.",
                param="file",
                code="file_limit_exceeded",
            )
