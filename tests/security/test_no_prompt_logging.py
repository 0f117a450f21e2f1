"""Prompts, answers and request bodies never reach a log record: with the default
configuration, and at the most verbose level it allows (LLMOPS_LOG_LEVEL=debug, which the
README promises is safe too), with debug mode on (LLMOPS_DEBUG's default, which arms Django's
SQL query log)."""

from __future__ import annotations

import importlib.util
import logging
import logging.config
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.test import AsyncClient
from django.utils import timezone

from batches import services as batches_services
from batches.models import BatchJob
from routing.models import Request
from tests.demo import DEMO_KEY

pytestmark = pytest.mark.django_db

PROMPT_MARKER = "zq-prompt-marker-7f3c9a"
BODY_MARKER = "zq-body-marker-41d2e8"
SETTINGS_FILE = Path(django_settings.BASE_DIR) / "llmops" / "settings.py"


def settings_logging(monkeypatch, level: str) -> dict:
    """LOGGING as llmops/settings.py builds it for LLMOPS_LOG_LEVEL=`level`."""
    monkeypatch.setenv("LLMOPS_LOG_LEVEL", level)
    spec = importlib.util.spec_from_file_location("llmops_settings_for_logging", SETTINGS_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LOGGING


@pytest.fixture(params=["info", "debug"])
def log_level(request) -> str:
    """LLMOPS_LOG_LEVEL: its default, and its most verbose value."""
    return request.param


@pytest.fixture
def records(monkeypatch, settings, log_level) -> list[logging.LogRecord]:
    """Every record any logger emits, whatever its handlers or propagation, under the
    project's logging configuration for `log_level` (applied here, before pytest's capture
    handler joins the root logger for the test's call phase)."""
    settings.DEBUG = True
    logging.config.dictConfig(settings_logging(monkeypatch, log_level))
    seen: list[logging.LogRecord] = []
    call_handlers = logging.Logger.callHandlers

    def capture(logger, record):
        seen.append(record)
        return call_handlers(logger, record)

    monkeypatch.setattr(logging.Logger, "callHandlers", capture)
    yield seen
    monkeypatch.undo()
    logging.config.dictConfig(django_settings.LOGGING)


def record_text(record: logging.LogRecord) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    text = formatter.format(record)  # message, arguments and any traceback
    return f"{text}\n{record.__dict__!r}"


def ask(text: str) -> list[dict]:
    return [
        {"role": "system", "content": f"You answer briefly. {PROMPT_MARKER}-system"},
        {"role": "user", "content": f"{text} {PROMPT_MARKER}"},
    ]


async def drain(response) -> str:
    return b"".join([chunk async for chunk in response.streaming_content]).decode()


async def post_and_drain(path: str, body: dict, *, headers: dict) -> str:
    """A streamed call read to its end on one event loop, as a server runs it: the OpenAI
    endpoint starts the provider call before its response (its status depends on the first
    event), and that call cannot move to another loop."""
    response = await AsyncClient().post(
        path, body, content_type="application/json", headers=headers
    )
    return await drain(response)


def run_batches_until_idle() -> None:
    for _ in range(20):
        due = list(
            BatchJob.objects.exclude(status__in=BatchJob.TERMINAL).values_list("pk", flat=True)
        )
        if not due:
            return
        for job_id in due:
            BatchJob.objects.filter(pk=job_id).update(next_check_at=timezone.now())
            batches_services.job_advance(job_id=job_id)
    raise AssertionError("batch jobs did not finish")


def test_no_prompt_answer_or_body_reaches_any_log_record(api, sim, records, caplog, log_level):
    if log_level == "debug":
        # pytest's own capture at DEBUG on the root logger, which every library logger
        # without a level of its own (the provider SDKs') inherits, as under debug.
        caplog.set_level(logging.DEBUG)
    answers = []

    realtime = api.post(
        "/api/v1/requests",
        {
            "workload": "product-search",
            "messages": ask("Is the kettle in stock?"),
            "max_tokens": 40,
        },
        format="json",
    )
    assert realtime.status_code == 200, realtime.content
    answers.append(realtime.json()["output"])

    streamed = api.post(
        "/api/v1/requests",
        {
            "workload": "product-search",
            "messages": ask("Stream it"),
            "max_tokens": 40,
            "stream": True,
        },
        format="json",
    )
    assert "event: done" in async_to_sync(drain)(streamed)

    chat = api.post(
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": ask("Do you ship to Iceland?"), "max_tokens": 40},
        format="json",
        HTTP_X_WORKLOAD="product-search",
    )
    assert chat.status_code == 200, chat.content
    answers.append(chat.json()["choices"][0]["message"]["content"])

    assert "[DONE]" in async_to_sync(post_and_drain)(
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": ask("Stream via OpenAI"), "stream": True},
        headers={"Authorization": f"Bearer {DEMO_KEY}", "X-Workload": "product-search"},
    )

    deferred = api.post(
        "/api/v1/requests",
        {"workload": "ticket-summaries", "messages": ask("Summarise ticket 7"), "max_tokens": 40},
        format="json",
    )
    assert deferred.status_code == 202, deferred.content
    assert batches_services.batches_flush(force=True).jobs
    run_batches_until_idle()
    batch_answer = Request.objects.get(pk=deferred.json()["id"])
    assert batch_answer.status == Request.Status.COMPLETED
    answers.append(batch_answer.output)

    # Failures are where bodies tend to be dumped: every provider down, and a refused body.
    sim.fault(provider="*", status=500, count=20)
    failed = api.post(
        "/api/v1/requests",
        {"workload": "product-search", "messages": ask("When all fails"), "max_tokens": 40},
        format="json",
    )
    assert failed.status_code == 502
    refused = api.post(
        "/api/v1/requests",
        {"workload": "product-search", "messages": ask(BODY_MARKER), "max_tokens": -1},
        format="json",
    )
    assert refused.status_code == 400

    assert all(len(answer.split()) >= 3 for answer in answers), answers
    texts = [record_text(r) for r in records]
    assert any("/api/v1/requests" in t for t in texts)  # the capture does see this traffic
    assert any(r.name.startswith("django") for r in records)  # including non-propagating ones
    markers = {PROMPT_MARKER: "prompt", BODY_MARKER: "refused body"}
    markers.update((answer, "answer") for answer in answers)
    leaks = sorted(
        {
            (record.name, record.levelname, what)
            for record, text in zip(records, texts, strict=True)
            for marker, what in markers.items()
            if marker in text
        }
    )
    assert leaks == [], f"log records carrying what was asked or answered: {leaks}"
    in_caplog = sorted({what for marker, what in markers.items() if marker in caplog.text})
    assert in_caplog == []
