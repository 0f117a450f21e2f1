"""The signed webhook a workload gets when one of its jobs ends (HMAC-SHA256 of the timestamp
and body, as Stripe signs; retried; sent through llmops.outbound's guarded connection)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections import defaultdict

from batches.models import BatchJob
from llmops import outbound
from routing.models import Request

log = logging.getLogger(__name__)


WEBHOOK_TIMEOUT_SECONDS = 10
WEBHOOK_TRIES = 3


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """What X-Llmops-Signature carries: HMAC-SHA256 over `timestamp.body` (the timestamp,
    also sent, lets a receiver refuse replays)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def job_notify(*, job: BatchJob) -> dict[str, str]:
    """POST each workload's signed notice that the job ended (its own requests only: a job is
    one team's, but its workloads may have different receivers). Returns workload → outcome;
    failures are logged, never raised (the ledger and the requests are already final)."""
    outcomes = {}
    requests = Request.objects.filter(batch_items__job=job).select_related("workload")
    by_workload: dict[int, list[Request]] = defaultdict(list)
    for request in requests:
        if request.workload.batch_webhook_url:
            by_workload[request.workload_id].append(request)
    for group in by_workload.values():
        workload = group[0].workload
        body = json.dumps(
            {
                "event": "batch_job.ended",
                "job": {
                    "id": job.pk,
                    "status": job.status,
                    "provider": job.provider.slug,
                    "model": job.model.model_id,
                    "succeeded": job.succeeded_count,
                    "errored": job.errored_count,
                    "unfinished": job.unfinished_count,
                },
                "workload": workload.slug,
                "requests": [{"id": str(r.pk), "status": r.status} for r in group],
            },
            separators=(",", ":"),
        ).encode()
        outcomes[workload.slug] = _deliver(workload, body)
    return outcomes


def _deliver(workload, body: bytes) -> str:
    """POST one notice, at most WEBHOOK_TRIES times. A redirect or a refused target
    (llmops.outbound: private addresses need the operator's allow-list, checked again here
    because DNS and the list may have changed since the URL was saved) fails at once: neither
    changes on a retry, and the signed headers must never go to a second address."""
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "llmops-webhook/1",
        "X-Llmops-Timestamp": timestamp,
        "X-Llmops-Signature": webhook_signature(workload.get_webhook_secret(), timestamp, body),
    }
    error = ""
    for attempt in range(WEBHOOK_TRIES):
        try:
            status = outbound.post(
                workload.batch_webhook_url,
                body=body,
                headers=headers,
                timeout=WEBHOOK_TIMEOUT_SECONDS,
            )
        except (outbound.OutboundRefused, outbound.RedirectRefused) as exc:
            error = str(exc)
            break
        except OSError as exc:
            error = str(exc) or repr(exc)
        else:
            if 200 <= status < 300:
                return f"delivered ({status})"
            error = f"HTTP {status}"
        if attempt + 1 < WEBHOOK_TRIES:
            time.sleep(2**attempt)
    log.warning("batch webhook of %s failed: %s", workload.slug, error)
    return f"failed: {error}"
