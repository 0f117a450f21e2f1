"""/playground/: sign-in required, and a person sees only their teams' workloads and their own
requests. (The page in a browser is tests/live/test_playground_browser.py.)"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User

from routing.models import Request, Team, Workload

pytestmark = pytest.mark.django_db


def member_of(team_slug: str, username: str = "ana") -> User:
    user = User.objects.create_user(username, password="pw-0123456789")
    Team.objects.get(slug=team_slug).members.add(user)
    return user


def page_data(response, element_id: str):
    html = response.content.decode()
    start = html.index(f'id="{element_id}"')
    body = html[html.index(">", start) + 1 : html.index("</script>", start)]
    return json.loads(body)


def test_signed_out_visitors_are_sent_to_the_login_page(client):
    response = client.get("/playground/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/playground/"


def test_a_member_sees_only_their_teams_workloads_with_their_chains(client, demo):
    client.force_login(member_of("globex"))
    response = client.get("/playground/")
    assert response.status_code == 200
    workloads = page_data(response, "workloads-data")
    assert {(w["team"], w["slug"]) for w in workloads} == {
        ("globex", "anomaly-alerts"),
        ("globex", "dashboard-qa"),
        ("globex", "exec-briefings"),
        ("globex", "nightly-reports"),
    }
    qa = next(w for w in workloads if w["slug"] == "dashboard-qa")
    assert qa["models"] == ["gpt-4o", "claude-sonnet-4-6", "gpt-4o-mini"]
    assert qa["deferrable"] is False
    nightly = next(w for w in workloads if w["slug"] == "nightly-reports")
    assert nightly["deferrable"] is True
    # The running cost is priced by the stream's own `started` message, not the page.
    assert 'id="rates-data"' not in response.content.decode()


def test_recent_requests_are_the_users_own(client, demo):
    ana = member_of("acme")
    bob = member_of("acme", username="bob")
    workload = Workload.objects.get(team__slug="acme", slug="product-search")
    mine = Request.objects.create(team=workload.team, workload=workload, user=ana)
    Request.objects.create(team=workload.team, workload=workload, user=bob)
    Request.objects.create(team=workload.team, workload=workload)  # an API key's
    client.force_login(ana)
    recent = page_data(client.get("/playground/"), "recent-data")
    assert [r["id"] for r in recent] == [str(mine.pk)]


def test_someone_without_a_team_is_told_how_to_get_a_workload(client, db):
    client.force_login(User.objects.create_user("loner", password="pw-0123456789"))
    response = client.get("/playground/")
    assert response.status_code == 200
    assert "You have no enabled workload yet" in response.content.decode()
    assert "playground.js" not in response.content.decode()
