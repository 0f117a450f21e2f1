"""`manage.py flush_batches`: what it flushes, and what it tells the operator."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from batches.models import BatchJob

pytestmark = pytest.mark.django_db


def flush(*args: str) -> str:
    out = io.StringIO()
    call_command("flush_batches", *args, stdout=out)
    return out.getvalue()


def test_flushing_names_each_jobs_team_by_its_slug(defer):
    defer("review-moderation", 2)

    out = flush("--workload", "review-moderation", "--team", "acme")

    job = BatchJob.objects.get()
    assert f"job {job.pk}: 2 request(s) for " in out
    assert "(near_realtime, team acme)" in out
    assert f"team {job.team_id})" not in out
    assert "Flushed 2 request(s) into 1 job(s)" in out


def test_an_unknown_workload_is_refused_naming_it(demo):
    with pytest.raises(CommandError, match="No workload 'nope' in team 'acme'"):
        flush("--workload", "nope", "--team", "acme")
