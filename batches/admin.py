"""Batch jobs in the admin: status, per-item counts, timings and cost; actions to cancel,
recover partial results, retry only the failed items and (after a confirmation page showing
the extra cost) serve a cancelled job's unanswered requests realtime. Jobs and items are made
by the machinery, never by hand, so they are read-only here."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from batches import selectors, services
from batches.models import BatchItem, BatchJob
from billing.admin import LIST_CSS, usd_cell, when_cell
from billing.pricing import plain
from billing.templatetags.money import seconds
from llmops.admin import ReadOnlyAdmin

# What the items a terminal job never ran are called, by how it ended.
NEVER_RAN = {BatchJob.Status.CANCELLED: "cancelled", BatchJob.Status.EXPIRED: "expired"}


def outcome_parts(job: BatchJob) -> tuple[str, list[str]]:
    """The job's status and what it means for its items: ('completed', ['1 succeeded',
    '2 errored']), ('running', ['40/100 answered']), ('cancelled', ['3 succeeded',
    '7 cancelled']). A finished job never reads n/n, which says nothing of how its items
    ended: one whose three items all errored is ('completed', ['3 errored'])."""
    if job.is_terminal:
        counts = [
            (job.succeeded_count, "succeeded"),
            (job.errored_count, "errored"),
            (job.unfinished_count, NEVER_RAN.get(job.status, "not run")),
        ]
        return job.status, [f"{n:,} {word}" for n, word in counts if n] or ["no items"]
    # The status stays what the provider last said until the cancel is confirmed.
    status = "cancelling" if job.cancel_requested_at else job.status
    if job.status in (BatchJob.Status.RUNNING, BatchJob.Status.INGESTING):
        said = [f"{job.answered:,}/{job.item_count:,} answered"]
        if job.provider_failed:
            said.append(f"{job.provider_failed:,} errored")
        return status, said
    return status, [f"{job.item_count:,} item{'' if job.item_count == 1 else 's'}"]


def job_outcome(job: BatchJob) -> str:
    """'completed · 1 succeeded, 2 errored'."""
    status, said = outcome_parts(job)
    return f"{status} · {', '.join(said)}"


@admin.register(BatchJob)
class BatchJobAdmin(ReadOnlyAdmin):
    # Seven columns: at 1400 px the table gets about 750 px between the sidebars. Provider
    # and reason are filters; the counts are in the outcome.
    list_display = ["id", "team", "model_lane", "outcome", "created", "turnaround", "cost"]
    list_filter = ["status", "lane", "provider", "team", "reason"]
    search_fields = ["=id", "provider_batch_id", "input_file_id"]
    list_select_related = ["team", "provider", "model"]
    date_hierarchy = "created_at"
    actions = ["cancel", "recover", "retry_failed", "serve_unfinished"]
    readonly_fields = ["items_link", "job_page", "ledger"]

    class Media:
        css = LIST_CSS

    fieldsets = [
        (
            None,
            {
                "fields": [
                    "team",
                    "provider",
                    "model",
                    "lane",
                    "status",
                    "reason",
                    "client_batch",
                    "job_page",
                ]
            },
        ),
        (
            "Items",
            {
                "fields": [
                    "items_link",
                    "item_count",
                    "succeeded_count",
                    "errored_count",
                    "unfinished_count",
                    "provider_completed",
                    "provider_failed",
                ]
            },
        ),
        (
            "Provider",
            {
                "fields": [
                    "provider_status",
                    "input_file_id",
                    "provider_batch_id",
                    "output_file_id",
                    "error_file_id",
                ]
            },
        ),
        (
            "Timings",
            {
                "fields": [
                    "earliest_deadline_at",
                    "created_at",
                    "submit_started_at",
                    "submitted_at",
                    "ended_at",
                    "ingest_started_at",
                    "finished_at",
                    "next_check_at",
                    "polls",
                ]
            },
        ),
        (
            "Cancellation and errors",
            {
                "fields": [
                    "cancel_requested_at",
                    "cancel_reason",
                    "cancel_sent_at",
                    "attempts",
                    "last_error",
                    "lease_until",
                ]
            },
        ),
        ("Cost", {"fields": ["ledger"]}),
    ]

    def changelist_view(self, request, extra_context=None):
        # Turnaround per model (what the router and the escalation use), above the list.
        extra_context = {**(extra_context or {}), "turnaround": selectors.turnaround_table()}
        return super().changelist_view(request, extra_context)

    @admin.display(description="model · lane", ordering="model__model_id")
    def model_lane(self, job: BatchJob) -> str:
        return format_html('{}<br><span class="quiet">{}</span>', job.model.model_id, job.lane)

    @admin.display(description="outcome", ordering="status")
    def outcome(self, job: BatchJob) -> str:
        # Reads as job_outcome(job); a narrow cell wraps between the counts, not inside one.
        status, said = outcome_parts(job)
        counts = format_html_join(", ", '<span class="nowrap">{}</span>', ((s,) for s in said))
        return format_html("{} · {}", status, counts)

    @admin.display(description="created", ordering="created_at")
    def created(self, job: BatchJob) -> str:
        return when_cell(job.created_at)

    @admin.display(description="turnaround")
    def turnaround(self, job: BatchJob) -> str:
        return seconds(job.turnaround.total_seconds()) if job.turnaround else "—"

    def get_queryset(self, request):
        return selectors.with_cost(super().get_queryset(request))

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, job: BatchJob) -> str:
        # Wherever its items were served; the part spent after it (escalated realtime, a later
        # batch) is named, since that later job's row counts it as its own too.
        if not job.elsewhere_cost_usd:
            return usd_cell(job.cost_usd)
        return format_html(
            '{}<br><span class="quiet">{} after it</span>',
            usd_cell(job.cost_usd),
            usd_cell(job.elsewhere_cost_usd),
        )

    @admin.display(description="items")
    def items_link(self, job: BatchJob) -> str:
        url = reverse("admin:batches_batchitem_changelist") + f"?job__id__exact={job.pk}"
        return format_html('<a href="{}">{} item(s)</a>', url, job.item_count)

    @admin.display(description="live page")
    def job_page(self, job: BatchJob) -> str:
        url = reverse("batch-job", args=[job.pk])
        return format_html('<a href="{}">progress and items</a>', url)

    @admin.display(description="ledger")
    def ledger(self, job: BatchJob) -> str:
        totals = selectors.job_ledger(job)
        return format_html(
            "cost ${} (${} in this batch, ${} where its requests were served after it: "
            "realtime or a later batch) · realtime would have cost ${} · saved ${}",
            *(
                plain(totals[name])
                for name in (
                    "cost_usd",
                    "batch_cost_usd",
                    "elsewhere_cost_usd",
                    "counterfactual_cost_usd",
                    "saved_usd",
                )
            ),
        )

    @admin.action(description="Cancel selected jobs (keep what the provider finished)")
    def cancel(self, request, queryset):
        cancelled = 0
        for job in queryset:
            if services.batch_cancel(job=job):
                services.enqueue("batches.tasks.advance", job.pk)
                self.log_change(request, job, "Cancelled (admin action).")
                cancelled += 1
        self.message_user(
            request,
            f"Cancelling {cancelled} job(s): what their providers finished first is kept and "
            "billed once; every other request ends cancelled (to serve them anyway once the "
            "job ended, use “Serve unfinished now”). "
            f"{queryset.count() - cancelled} had already ended or were being cancelled.",
            messages.SUCCESS if cancelled else messages.WARNING,
        )

    @admin.action(description="Serve unfinished now: a cancelled job's requests, realtime")
    def serve_unfinished(self, request, queryset):
        """Asks first, on a page showing what it would cost at full price: a cancel never
        serves anything elsewhere by itself."""
        estimates = [
            (job, services.job_unfinished_estimate(job=job))
            for job in queryset
            if job.status == BatchJob.Status.CANCELLED
        ]
        estimates = [(job, estimate) for job, estimate in estimates if estimate.requests]
        if not estimates:
            self.message_user(
                request,
                "None of the selected jobs is a cancelled job with unanswered requests.",
                messages.WARNING,
            )
            return None
        if request.POST.get("confirm") != "yes":
            return TemplateResponse(
                request,
                "admin/batches/batchjob/serve_unfinished.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Serve unfinished requests now, at full price?",
                    "estimates": estimates,
                    "requests": sum(e.requests for _, e in estimates),
                    "worst_case_usd": sum(e.worst_case_usd for _, e in estimates),
                    "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                    "opts": self.model._meta,
                },
            )
        served = 0
        for job, _ in estimates:
            ids = services.job_serve_unfinished(job=job)
            if ids:
                self.log_change(
                    request, job, f"{len(ids)} unanswered request(s) served realtime (admin)."
                )
            served += len(ids)
        self.message_user(
            request, f"Serving {served} request(s) realtime now, at full price.", messages.SUCCESS
        )
        return None

    @admin.action(description="Recover partial results now (poll or re-ingest)")
    def recover(self, request, queryset):
        recovered = 0
        for job in queryset:
            if services.job_recover(job=job):
                services.enqueue("batches.tasks.advance", job.pk)
                self.log_change(request, job, "Recovery started (admin action).")
                recovered += 1
        self.message_user(request, f"Recovering {recovered} job(s).", messages.SUCCESS)

    @admin.action(description="Retry only the failed items of selected jobs")
    def retry_failed(self, request, queryset):
        retried, refused = 0, {}
        for job in queryset:
            report = services.job_retry_failed(job=job)
            retried += len(report.retried)
            if report.retried:
                self.log_change(
                    request, job, f"{len(report.retried)} failed item(s) retried (admin action)."
                )
            refused.update(report.refused)
        self.message_user(
            request,
            f"Resubmitting {retried} failed request(s) in the next batch.",
            messages.SUCCESS,
        )
        if refused:
            shown = "; ".join(f"{rid[:8]}: {why}" for rid, why in list(refused.items())[:5])
            self.message_user(request, f"{len(refused)} not retried: {shown}", messages.WARNING)


@admin.register(BatchItem)
class BatchItemAdmin(ReadOnlyAdmin):
    list_display = ["custom_id", "job", "request_link", "status", "next_step", "error", "ended_at"]
    list_filter = ["status", "next_step"]
    search_fields = ["custom_id", "=request__id"]
    list_select_related = ["job"]
    raw_id_fields = ["job", "request"]

    @admin.display(description="request")
    def request_link(self, item: BatchItem) -> str:
        url = reverse("admin:routing_request_change", args=[item.request_id])
        return format_html('<a href="{}">{}</a>', url, str(item.request_id)[:8])
