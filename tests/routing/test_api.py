"""The native API authenticates with Bearer keys and scopes every object to the key's team."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from routing.keys import api_key_create, api_key_revoke
from routing.models import ApiKey, LatencyClass, Request, RoutingPolicy, Workload

pytestmark = pytest.mark.django_db


def make_workload(team, slug="search"):
    policy = RoutingPolicy.objects.create(team=team, name=f"{slug}-policy")
    return Workload.objects.create(
        team=team,
        slug=slug,
        latency_class=LatencyClass.SCHEDULED,
        deadline=timedelta(hours=1),
        policy=policy,
    )


def test_missing_key_is_401_with_a_bearer_challenge(client):
    response = client.get("/api/v1/workloads")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_unknown_key_is_401_naming_the_problem(client_for, api_key):
    response = client_for("llm_not-a-real-key-at-all").get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid or revoked API key."


def test_malformed_authorization_header_is_401(client, api_key):
    response = client.get("/api/v1/me", HTTP_AUTHORIZATION="Bearer two parts")
    assert response.status_code == 401
    assert "Malformed Authorization header" in response.json()["detail"]


def test_revoked_key_stops_working(client_for, api_key):
    key, raw = api_key
    assert client_for(raw).get("/api/v1/me").status_code == 200
    assert api_key_revoke(key=key) is True
    assert api_key_revoke(key=key) is False  # already revoked
    assert client_for(raw).get("/api/v1/me").status_code == 401


def test_me_names_the_team_and_key_and_records_use(client_for, api_key):
    key, raw = api_key
    response = client_for(raw).get("/api/v1/me")
    assert response.status_code == 200
    assert response.json() == {
        "team": "acme",
        "teams": ["acme"],
        "key": {"name": "ci", "prefix": raw[:12], "role": "admin"},
    }
    key.refresh_from_db()
    assert key.last_used_at is not None
    assert timezone.now() - key.last_used_at < timedelta(seconds=5)


def test_only_a_hash_of_the_key_is_stored(api_key):
    key, raw = api_key
    stored = ApiKey.objects.values_list("key_hash", "prefix").get(pk=key.pk)
    assert raw not in stored[0]
    assert len(stored[0]) == 64
    assert raw.startswith("llm_") and len(raw) >= 40


def test_workloads_are_scoped_to_the_keys_team(client_for, api_key, team, other_team):
    make_workload(team, "search")
    make_workload(other_team, "reports")
    _, raw = api_key
    client = client_for(raw)

    listed = client.get("/api/v1/workloads").json()
    assert [w["slug"] for w in listed["results"]] == ["search"]
    assert listed["results"][0]["deadline_seconds"] == 3600

    assert client.get("/api/v1/workloads/search").status_code == 200
    # Another team's object answers exactly like a missing one.
    assert client.get("/api/v1/workloads/reports").status_code == 404
    assert client.get("/api/v1/workloads/nothing-here").status_code == 404


def test_another_teams_request_is_404(client_for, api_key, team, other_team):
    mine = Request.objects.create(team=team, workload=make_workload(team), params={"max_tokens": 5})
    theirs = Request.objects.create(
        team=other_team, workload=make_workload(other_team, "x"), params={"max_tokens": 5}
    )
    client = client_for(api_key[1])

    assert client.get(f"/api/v1/requests/{mine.id}").json()["id"] == str(mine.id)
    assert client.get(f"/api/v1/requests/{theirs.id}").status_code == 404
    assert [r["id"] for r in client.get("/api/v1/requests").json()["results"]] == [str(mine.id)]


def test_request_filters_are_validated(client_for, api_key):
    response = client_for(api_key[1]).get("/api/v1/requests?status=exploded")
    assert response.status_code == 400
    assert "status" in response.json()


@pytest.mark.parametrize(
    "query", ["limit=165541341060602703777529593856", "offset=165541341060602703777529593856"]
)
def test_a_page_bound_beyond_any_database_integer_is_served_not_a_500(client_for, team, query):
    # Found by the T6 fuzz: DRF passed ?limit= and ?offset= to SQL however large, and the
    # database refused them (a 500). Limits stop at MAX_LIMIT; an offset past the end is empty.
    make_workload(team)
    _, raw = api_key_create(team=team, name="ci")

    response = client_for(raw).get(f"/api/v1/workloads?{query}")

    assert response.status_code == 200
    expected = [] if query.startswith("offset") else ["search"]
    assert [w["slug"] for w in response.json()["results"]] == expected


def test_member_key_of_one_team_cannot_see_the_other(client_for, team, other_team):
    make_workload(other_team, "reports")
    _, raw = api_key_create(team=team, name="member")
    assert client_for(raw).get("/api/v1/workloads").json()["count"] == 0


def test_openapi_schema_declares_bearer_auth(client):
    response = client.get("/api/schema", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An llmops API key.",
    }
    assert "/api/v1/workloads/{slug}" in schema["paths"]
    # The serving endpoints read JSON and API keys only, and say so.
    serving = schema["paths"]["/api/v1/requests"]["post"]
    assert list(serving["requestBody"]["content"]) == ["application/json"]
    assert serving["security"] == [{"ApiKey": []}]


def test_api_docs_load_their_assets_locally(client):
    html = client.get("/api/docs").content.decode()
    assert "swagger-ui" in html
    for cdn in ("cdn.jsdelivr", "unpkg.com", "cdnjs"):
        assert cdn not in html
