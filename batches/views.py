"""Batch job pages: the caller's jobs, and one job with a live progress bar and its items."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import render

from batches import selectors
from batches.models import BatchItem, BatchJob
from routing.selectors import teams_for

ITEMS_PER_PAGE = 100
JOBS_PER_PAGE = 50


@login_required
def job_list(request):
    jobs = selectors.jobs_for(teams=teams_for(request.user))
    status = request.GET.get("status", "")
    if status in BatchJob.Status.values:
        jobs = jobs.filter(status=status)
    page = Paginator(jobs, JOBS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "batches/job_list.html",
        {"page": page, "status": status, "statuses": BatchJob.Status.choices},
    )


@login_required
def job_detail(request, pk: int):
    """The page reads /api/v1/batches/<pk> every few seconds while the job runs
    (static/batches/job.js) to move the progress bar and the counts."""
    job = selectors.jobs_for(teams=teams_for(request.user)).filter(pk=pk).first()
    if job is None:
        raise Http404("No such batch job.")
    items = BatchItem.objects.filter(job=job).order_by("id")
    status = request.GET.get("status", "")
    if status in BatchItem.Status.values:
        items = items.filter(status=status)
    page = Paginator(items, ITEMS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "batches/job.html",
        {
            "job": job,
            "page": page,
            "status": status,
            "item_statuses": selectors.item_counts(job),
            "ledger": selectors.job_ledger(job),
        },
    )
