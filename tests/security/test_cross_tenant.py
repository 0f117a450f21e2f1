"""T8: no caller of team A reaches team B's data through any URL the project serves.

Every URL pattern (django.urls.get_resolver(), recursively: pages, billing, the admin, the
native and OpenAI-compatible APIs) is filled in with team B's ids and slugs, and requested by
team A's admin-role API key and by a non-staff member of team A signed in, with each method
and with B's slugs and ids in the query and the body. No answer may carry anything of B's that
the caller did not send itself (B's prompt, its workload's description, its request, file and
batch ids...), nothing may answer 5xx, and B's rows must be as they were afterwards.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404
from django.utils import timezone
from rest_framework.test import APIClient

from batches import services as batches_services
from batches.models import BatchItem, BatchJob, ClientBatch, StoredFile
from batches.services.client_batches import client_batch_admit
from billing.models import Budget, LedgerEntry
from routing.keys import api_key_create
from routing.models import (
    ApiKey,
    LatencyClass,
    LlmModel,
    PolicyModel,
    Request,
    RoutingPolicy,
    Team,
    Workload,
)
from tests.demo import DEMO_KEY

pytestmark = pytest.mark.django_db

METRICS_TOKEN = "operators-only-metrics-token"
B_TEAM = "zqteamb-initech"
B_SEARCH = "zqwlb-search"
B_NIGHTLY = "zqwlb-nightly"
B_DESCRIPTION = "zqdescb-payroll-assistant"
B_PROMPT = "zqpromptb-quarterly-salaries"
B_CUSTOM_ID = "zqcustomb-1"
ADMIN_APP_LABELS = ["auth", "django_q", "routing", "billing", "batches"]
ALLOWED_5XX = {("/healthz", 503)}  # no worker cluster runs in tests: healthz says so


@dataclass
class TenantB:
    team: Team
    key: ApiKey
    raw_key: str
    user: User
    requests: list[Request]
    file_id: str
    client_batch_id: str
    job: BatchJob
    # Things of B's that no answer to A may contain, unless A sent them itself.
    secrets: list[str] = field(default_factory=list)
    # Ids by model label ("routing.workload"), to fill in the admin's object URLs.
    ids_by_model: dict[str, list[str]] = field(default_factory=dict)


async def drain(response) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


def body_of(response) -> str:
    if getattr(response, "streaming", False):
        raw = (
            async_to_sync(drain)(response)
            if response.is_async
            else b"".join(response.streaming_content)
        )
    else:
        raw = response.content
    return raw.decode("utf-8", "replace")


def make_tenant_b(sim_client) -> TenantB:
    """Team B, built through its own API against the simulator: realtime, queued and batched
    requests, an OpenAI-compatible file and batch, budgets and ledger entries."""
    team = Team.objects.create(slug=B_TEAM, name="Initech")
    mini = LlmModel.objects.get(model_id="gpt-4o-mini")
    realtime = RoutingPolicy.objects.create(team=team, name="zqpolicyb-now")
    PolicyModel.objects.create(policy=realtime, model=mini, position=0)
    overnight = RoutingPolicy.objects.create(
        team=team, name="zqpolicyb-overnight", tier="economy", allow_batch=True
    )
    PolicyModel.objects.create(policy=overnight, model=mini, position=0)
    search = Workload.objects.create(
        team=team,
        slug=B_SEARCH,
        description=B_DESCRIPTION,
        latency_class=LatencyClass.REALTIME,
        policy=realtime,
    )
    nightly = Workload.objects.create(
        team=team,
        slug=B_NIGHTLY,
        description=B_DESCRIPTION,
        latency_class=LatencyClass.SCHEDULED,
        deadline=timedelta(hours=24),
        policy=overnight,
    )
    team_budget = Budget.objects.create(team=team, limit_usd=Decimal("500"))
    workload_budget = Budget.objects.create(team=team, workload=search, limit_usd=Decimal("50"))
    key, raw = api_key_create(team=team, name="zqkeyb", role=ApiKey.Role.ADMIN)
    key.default_workload = search
    key.save(update_fields=["default_workload"])
    user = User.objects.create_user("zqbob", "bob@initech.example", "pw-for-tests-only")
    team.members.add(user)
    api = sim_client(raw)

    def ask(workload: str, text: str) -> dict:
        return {
            "workload": workload,
            "messages": [{"role": "user", "content": f"{B_PROMPT} {text}"}],
            "max_tokens": 20,
        }

    answered = api.post("/api/v1/requests", ask(B_SEARCH, "now"), format="json")
    assert answered.status_code == 200, answered.content
    batched = api.post("/api/v1/requests", ask(B_NIGHTLY, "batched"), format="json")
    assert batched.status_code == 202, batched.content
    [job] = batches_services.batches_flush(force=True).jobs
    for _ in range(20):
        if BatchJob.objects.get(pk=job.pk).status in BatchJob.TERMINAL:
            break
        BatchJob.objects.filter(pk=job.pk).update(next_check_at=timezone.now())
        batches_services.job_advance(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == BatchJob.Status.COMPLETED
    queued = api.post("/api/v1/requests", ask(B_NIGHTLY, "still queued"), format="json")
    assert queued.status_code == 202, queued.content

    line = {
        "custom_id": B_CUSTOM_ID,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"{B_PROMPT} from a file"}],
            "max_tokens": 20,
        },
    }
    upload = api.post(
        "/v1/files",
        {
            "purpose": "batch",
            "file": SimpleUploadedFile("zqfileb.jsonl", json.dumps(line).encode() + b"\n"),
        },
        format="multipart",
    )
    assert upload.status_code == 200, upload.content
    client_batch = api.post(
        "/v1/batches",
        {
            "input_file_id": upload.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
        format="json",
        HTTP_X_WORKLOAD=B_NIGHTLY,
    )
    assert client_batch.status_code == 200, client_batch.content
    # A worker admits the client's lines (routing.client_batches); here, inline.
    while client_batch_admit(batch_id=client_batch.json()["id"]).more:
        pass

    requests = list(Request.objects.filter(team=team).order_by("created_at"))  # realtime first
    assert len(requests) == 4
    assert LedgerEntry.objects.filter(team=team).count() >= 2
    tenant = TenantB(
        team=team,
        key=key,
        raw_key=raw,
        user=user,
        requests=requests,
        file_id=upload.json()["id"],
        client_batch_id=client_batch.json()["id"],
        job=job,
    )
    tenant.secrets = [
        B_TEAM,
        B_SEARCH,
        B_NIGHTLY,
        B_DESCRIPTION,
        B_PROMPT,
        B_CUSTOM_ID,
        "zqpolicyb",
        "zqkeyb",
        "zqbob",
        "zqfileb",
        key.prefix,
        tenant.file_id,
        tenant.client_batch_id,
        job.provider_batch_id,
        *(str(r.pk) for r in requests),
        *(r.pk.hex for r in requests),
    ]
    tenant.ids_by_model = {
        "routing.team": [str(team.pk)],
        "routing.apikey": [str(key.pk)],
        "routing.routingpolicy": [str(realtime.pk), str(overnight.pk)],
        "routing.workload": [str(search.pk), str(nightly.pk)],
        "routing.request": [str(r.pk) for r in requests],
        "billing.budget": [str(team_budget.pk), str(workload_budget.pk)],
        "billing.ledgerentry": [
            str(pk) for pk in LedgerEntry.objects.filter(team=team).values_list("pk", flat=True)
        ],
        "batches.batchjob": [str(job.pk)],
        "batches.batchitem": [
            str(pk) for pk in BatchItem.objects.filter(job=job).values_list("pk", flat=True)
        ],
        "auth.user": [str(user.pk)],
    }
    return tenant


def snapshot(tenant: TenantB) -> dict:
    """B's rows as they stand, to prove that A changed none of them."""
    team = tenant.team
    return {
        "requests": sorted(
            Request.objects.filter(team=team).values_list("pk", "status", "updated_at")
        ),
        "budgets": sorted(Budget.objects.filter(team=team).values_list("pk", "limit_usd", "hard")),
        "workloads": sorted(
            Workload.objects.filter(team=team).values_list("pk", "slug", "enabled", "policy_id")
        ),
        "keys": sorted(ApiKey.objects.filter(team=team).values_list("pk", "revoked_at", "role")),
        "jobs": sorted(
            BatchJob.objects.filter(team=team).values_list("pk", "status", "cancel_requested_at")
        ),
        "client_batches": sorted(
            ClientBatch.objects.filter(team=team).values_list("pk", "status", "cancelled_at")
        ),
        "files": sorted(StoredFile.objects.filter(team=team).values_list("pk", "bytes")),
        "ledger": LedgerEntry.objects.filter(team=team).count(),
        "members": sorted(team.members.values_list("pk", flat=True)),
    }


# --- every URL, filled in with B's ids ------------------------------------------------------

ROUTE_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
REGEX_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>(?:[^()]|\([^()]*\))*\)")


def url_patterns(patterns=None, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            yield from url_patterns(entry.url_patterns, prefix + str(entry.pattern))
        else:
            yield prefix + str(entry.pattern), entry


def candidates(route: str, name: str, converter: str | None, tenant: TenantB) -> list[str]:
    """Values of B's for one URL parameter."""
    admin_model = re.match(r"admin/(\w+)/(\w+)/", route)
    if name == "object_id" and admin_model:
        label = f"{admin_model[1]}.{admin_model[2]}"
        return tenant.ids_by_model.get(label) or tenant.ids_by_model["routing.team"]
    if name == "id" and route.startswith("admin/auth/user/"):
        return tenant.ids_by_model["auth.user"]
    if name == "content_type_id":
        return [str(ContentType.objects.get_for_model(Request).pk)]
    if name == "object_id":  # the admin's view-on-site
        return tenant.ids_by_model["routing.request"]
    if name == "app_label":
        return ADMIN_APP_LABELS
    if name == "url":
        return ["zq-nowhere/"]
    if converter == "uuid":
        return [str(r.pk) for r in tenant.requests]
    if converter == "int":
        return [str(tenant.job.pk), *tenant.ids_by_model["billing.budget"]]
    if converter == "slug":
        return [B_SEARCH, B_NIGHTLY]
    if name == "file_id":
        return [tenant.file_id]
    if name == "batch_id":
        return [tenant.client_batch_id]
    return [tenant.file_id, tenant.client_batch_id, B_SEARCH]


def concrete_urls(tenant: TenantB) -> list[tuple[str, str]]:
    """(route, path) for every pattern, each parameter filled with each of B's candidates."""
    urls = []
    for route, pattern in url_patterns():
        # Regex groups first: `(?P<name>...)` would otherwise read as a `<name>` converter.
        paths = [route]
        for group in REGEX_GROUP.finditer(route):
            paths = [
                path.replace(group[0], value, 1)
                for path in paths
                for value in candidates(route, group["name"], None, tenant)
            ]
        for param in ROUTE_PARAM.finditer(REGEX_GROUP.sub("", route)):
            paths = [
                path.replace(param[0], value, 1)
                for path in paths
                for value in candidates(route, param["name"], param["converter"], tenant)
            ]
        for path in paths:
            path = "/" + path.replace("^", "").replace("$", "")
            try:
                match = resolve(path)
            except Resolver404:
                continue
            if match.func is pattern.callback:
                urls.append((route, path))
    return urls


def query_variants(tenant: TenantB) -> list[dict]:
    return [
        {"team": B_TEAM},
        {"workload": B_SEARCH},
        {"request": str(tenant.requests[0].pk)},
        {"team": B_TEAM, "workload": B_NIGHTLY, "status": "completed"},
        {"after": tenant.client_batch_id},  # the OpenAI lists' cursor
        {"after": tenant.file_id},
    ]


def write_body(tenant: TenantB) -> dict:
    """A body naming B's objects in every field some endpoint reads."""
    return {
        "workload": B_SEARCH,
        "team": B_TEAM,
        "input_file_id": tenant.file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 5,
        "limit_usd": "0.01",
        "period": "day",
        "request_ids": [str(r.pk) for r in tenant.requests],
        "all": True,
    }


def own_params() -> str:
    """Every request parameter the other teams sent (their own, whatever it names)."""
    rows = Request.objects.exclude(team__slug=B_TEAM).values_list("params", flat=True)
    return json.dumps(list(rows))


@dataclass
class Sweep:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    leaks: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)


def sweep(who: str, client, tenant: TenantB, result: Sweep, relogin=None) -> None:
    body = write_body(tenant)
    for route, path in concrete_urls(tenant):
        admin = route.startswith("admin/")
        calls = [("get", path, {}, {})]
        if not admin:
            calls += [("get", f"{path}?{urlencode(q)}", {}, {}) for q in query_variants(tenant)]
        calls += [("post", path, body, {}), ("post", path, body, {"HTTP_X_WORKLOAD": B_SEARCH})]
        if not admin:
            calls += [("patch", path, body, {}), ("delete", path, body, {})]
        for method, url, data, headers in calls:
            sent = json.dumps(data) if data else None
            extra = {"content_type": "application/json"} if data else {}
            response = getattr(client, method)(url, sent, **extra, **headers)
            result.requests += 1
            result.statuses[response.status_code] += 1
            text = body_of(response)
            asked = f"{url} {sent or ''} {headers}"
            found = [s for s in tenant.secrets if s in text and s not in asked]
            if found:
                # /v1/chat/completions relays unknown fields as sent and keeps them with the
                # request: B's names that A itself put in an earlier body come back in A's own
                # request records. Only what A never sent is a leak.
                found = [s for s in found if s not in own_params()]
            if found:
                result.leaks.append(
                    f"{who} {method.upper()} {url} -> {response.status_code}: {found}"
                )
            if response.status_code >= 500 and (path, response.status_code) not in ALLOWED_5XX:
                result.server_errors.append(
                    f"{who} {method.upper()} {url} -> {response.status_code}: {text[:300]}"
                )
            if relogin is not None and "logout" in route:
                relogin()


@pytest.fixture
def tenants(demo, client_for, settings):
    """Team A is the demo's acme, with its admin-role key DEMO_KEY; team B is made here."""
    settings.LLMOPS_API_RATE = "100000000/minute"  # thousands of calls from one key
    # /metrics names every team's workloads: deployed for tenants, it takes a token.
    settings.LLMOPS_METRICS_TOKEN = METRICS_TOKEN
    tenant = make_tenant_b(client_for)
    # A has history of its own, so its lists and pages have rows to render.
    mine = client_for(DEMO_KEY).post(
        "/api/v1/requests",
        {
            "workload": "product-search",
            "messages": [{"role": "user", "content": "a question of team A"}],
            "max_tokens": 10,
        },
        format="json",
    )
    assert mine.status_code == 200, mine.content
    return tenant


def test_no_url_gives_team_a_anything_of_team_b(tenants, client_for, figures):
    tenant = tenants
    member = User.objects.create_user("alice", "alice@acme.example", "pw-for-tests-only")
    Team.objects.get(slug="acme").members.add(member)
    assert not member.is_staff
    before = snapshot(tenant)
    urls = concrete_urls(tenant)
    routes = {route for route, _ in urls}
    # Every pattern was reached with B's ids, the pages and APIs that take ids among them.
    assert routes == {route for route, _ in url_patterns()}
    for route in (
        "requests/<uuid:pk>/",
        "batches/<int:pk>/",
        "api/v1/requests/<uuid:id>",
        "api/v1/workloads/<slug:slug>",
        "api/v1/budgets/<int:pk>",
        "v1/files/<str:file_id>/content",
        "v1/batches/<str:batch_id>/cancel",
        "billing/ledger/",
    ):
        assert route in routes

    result = Sweep()
    key_client = APIClient()
    key_client.credentials(HTTP_AUTHORIZATION=f"Bearer {DEMO_KEY}")
    key_client.raise_request_exception = False
    sweep("key:A", key_client, tenant, result)
    session = Client(raise_request_exception=False)
    session.force_login(member)
    sweep("member:A", session, tenant, result, relogin=lambda: session.force_login(member))
    figures.record(
        "T8",
        "cross-tenant sweep: team A's key and member on every URL, with team B's ids",
        url_patterns=len(routes),
        requests=result.requests,
        statuses=dict(sorted(result.statuses.items())),
        leaks=len(result.leaks),
        server_errors=len(result.server_errors),
        team_b_rows_changed=snapshot(tenant) != before,
    )

    assert result.leaks == []
    assert result.server_errors == []
    assert result.requests > 1000
    assert result.statuses[200] > 50  # A's own pages and lists did answer
    assert snapshot(tenant) == before


def test_the_sweep_would_see_b_s_data_where_b_may_read_it(tenants, client_for, settings):
    """The detector works: B's own key and member read the same markers the sweep looks for."""
    tenant = tenants
    b_api = client_for(tenant.raw_key)
    request_id = str(tenant.requests[0].pk)
    seen = {
        "workloads": body_of(b_api.get("/api/v1/workloads")),
        "request": body_of(b_api.get(f"/api/v1/requests/{request_id}")),
        "file": body_of(b_api.get(f"/v1/files/{tenant.file_id}/content")),
        "batch": body_of(b_api.get(f"/api/v1/batches/{tenant.job.pk}")),
    }
    page = Client()
    page.force_login(tenant.user)
    seen["request page"] = body_of(page.get(f"/requests/{request_id}/"))
    seen["ledger page"] = body_of(page.get("/billing/ledger/"))

    assert B_DESCRIPTION in seen["workloads"]
    assert B_PROMPT in seen["request"]
    assert B_CUSTOM_ID in seen["file"] and B_PROMPT in seen["file"]
    assert B_TEAM in seen["batch"]
    assert B_SEARCH in seen["request page"] and request_id in seen["request page"]
    assert B_SEARCH in seen["ledger page"]


def test_metrics_name_every_teams_workloads_so_they_take_the_token(tenants, client_for, client):
    """/metrics is for operators: it is not scoped to a team, so a tenant's key is not enough."""
    assert client_for(DEMO_KEY).get("/metrics").status_code == 401
    operator = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    assert operator.status_code == 200
    assert B_SEARCH in operator.content.decode()  # what the token protects
