"""Status changes reach the channel layer after the commit, and a broken layer never turns a
committed change into an error."""

from __future__ import annotations

import logging

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from batches.services import request_cancel
from routing import events
from routing.models import Request, Workload

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(demo):
    workload = Workload.objects.get(team__slug="acme", slug="ticket-summaries")
    return Request.objects.create(
        team=workload.team, workload=workload, status=Request.Status.QUEUED
    )


def test_a_status_change_is_told_to_the_request_and_team_groups_after_commit(
    queued, django_capture_on_commit_callbacks
):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.request_group(queued.pk), channel)
    team_channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.team_group(queued.team_id), team_channel)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert request_cancel(request=queued)
    assert len(callbacks) == 1  # nothing sent before the commit
    callbacks[0]()

    expected = {
        "type": "request.changed",
        "id": str(queued.pk),
        "team": queued.team_id,
        "status": "cancelled",
    }
    assert async_to_sync(layer.receive)(channel) == expected
    assert async_to_sync(layer.receive)(team_channel) == expected
    queued.refresh_from_db()
    assert queued.updated_at == queued.completed_at


def test_a_failing_channel_layer_is_logged_not_raised(
    queued, django_capture_on_commit_callbacks, monkeypatch, caplog
):
    layer = get_channel_layer()
    async_to_sync(layer.group_add)(events.team_group(queued.team_id), "watcher")  # someone hears

    async def down(group, message):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(layer, "group_send", down)
    with (
        caplog.at_level(logging.WARNING, logger="routing.events"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert request_cancel(request=queued)
    queued.refresh_from_db()
    assert queued.status == Request.Status.CANCELLED
    assert "could not publish cancelled" in caplog.text
