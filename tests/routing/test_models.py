from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError

from routing.models import LatencyClass, LlmModel, Provider, RoutingPolicy, Workload

pytestmark = pytest.mark.django_db


def test_scheduled_workload_needs_a_deadline(team):
    policy = RoutingPolicy.objects.create(team=team, name="p")
    workload = Workload(
        team=team, slug="nightly", latency_class=LatencyClass.SCHEDULED, policy=policy
    )
    with pytest.raises(ValidationError) as excinfo:
        workload.full_clean()
    assert "deadline" in excinfo.value.message_dict


def test_workload_cannot_use_another_teams_policy(team, other_team):
    policy = RoutingPolicy.objects.create(team=other_team, name="theirs")
    workload = Workload(
        team=team, slug="w", latency_class=LatencyClass.REALTIME, policy=policy, deadline=None
    )
    with pytest.raises(ValidationError) as excinfo:
        workload.full_clean()
    assert excinfo.value.message_dict["policy"] == ["The policy belongs to another team."]


def test_realtime_workload_needs_no_deadline(team):
    policy = RoutingPolicy.objects.create(team=team, name="p")
    Workload(
        team=team, slug="chat", latency_class=LatencyClass.REALTIME, policy=policy
    ).full_clean()


def test_model_output_cannot_exceed_its_context_window():
    provider = Provider.objects.create(slug="p", name="P", kind="openai", base_url="http://x/v1")
    model = LlmModel(provider=provider, model_id="m", context_window=1000, max_output_tokens=2000)
    with pytest.raises(ValidationError, match="Cannot exceed the context window"):
        model.full_clean()


def test_provider_batch_limits_default_to_the_documented_ones():
    openai = Provider(kind=Provider.Kind.OPENAI)
    anthropic = Provider(kind=Provider.Kind.ANTHROPIC, batch_max_requests=1000)
    assert openai.batch_limits == (50_000, 200 * 1024 * 1024)
    assert anthropic.batch_limits == (1000, 256 * 1024 * 1024)


def test_workload_deadline_must_be_positive(team):
    policy = RoutingPolicy.objects.create(team=team, name="p")
    workload = Workload(
        team=team,
        slug="w",
        latency_class=LatencyClass.SCHEDULED,
        policy=policy,
        deadline=timedelta(0),
    )
    with pytest.raises(ValidationError):
        workload.full_clean()
