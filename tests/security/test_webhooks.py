"""Batch webhooks reach only what the operator allows (llmops.outbound): no redirect is followed
(the signed headers go nowhere else), and loopback, private, link-local and metadata targets are
refused when saved and again when called, unless LLMOPS_OUTBOUND_ALLOW_PRIVATE lists them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from batches import services, tasks
from llmops import outbound
from routing.models import LatencyClass, RoutingPolicy, Workload
from tests.batches.conftest import defer  # noqa: F401 - a fixture
from tests.batches.test_lifecycle import run_until_idle

pytestmark = pytest.mark.django_db

SECRET = "s3cret-signing-key"


class Receiver:
    """A real HTTP server on loopback that records what reaches it and answers `status`."""

    def __init__(self, status: int = 204, location: str = "") -> None:
        self.received: list[tuple[str, str, dict]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                owner.received.append((self.command, self.path, dict(self.headers)))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/hook"


@contextmanager
def receiving(*receivers: Receiver) -> Iterator[None]:
    for receiver in receivers:
        threading.Thread(target=receiver.server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        for receiver in receivers:
            receiver.server.shutdown()
            receiver.server.server_close()


@pytest.fixture(autouse=True)
def _fresh_lookups():
    outbound.reset()
    yield
    outbound.reset()


def ended_job(defer, url: str):  # noqa: F811 - the fixture, passed in
    """A batch job of review-moderation, ended, whose workload's webhook is `url`."""
    workload = Workload.objects.get(slug="review-moderation")
    workload.batch_webhook_url = url
    workload.set_webhook_secret(SECRET)
    workload.save()
    defer("review-moderation", 2)
    job = services.batches_flush(force=True).jobs[0]
    run_until_idle()
    job.refresh_from_db()
    return job


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failed_delivery_and_is_never_followed(defer, status, figures):  # noqa: F811
    elsewhere = Receiver()
    redirecting = Receiver(status=status, location=f"http://127.0.0.1:{elsewhere.port}/admin/")
    with receiving(redirecting, elsewhere):
        job = ended_job(defer, redirecting.url)
        outcome = tasks.notify(job.pk)  # what the django-q2 task records as its result
    figures.record(
        "T8",
        f"webhook answered {status} to another local port",
        requests_to_the_webhook=len(redirecting.received),
        requests_to_the_redirect_target=len(elsewhere.received),
        outcome=outcome["review-moderation"][:60],
    )

    assert outcome["review-moderation"].startswith(f"failed: redirect ({status})")
    assert elsewhere.received == []
    [(method, path, headers)] = redirecting.received  # one try: a redirect stays a redirect
    assert (method, path) == ("POST", "/hook")
    assert headers["X-Llmops-Signature"].startswith("sha256=")


def test_a_name_resolving_to_loopback_is_refused_at_send_once_the_operator_drops_it(
    defer,  # noqa: F811
    settings,
    figures,
):
    receiver = Receiver()
    with receiving(receiver):
        # Saved while debug mode's default trusted loopback ...
        job = ended_job(defer, f"http://localhost:{receiver.port}/hook")
        # ... then the operator's list no longer does: the send checks again.
        settings.LLMOPS_OUTBOUND_ALLOW_PRIVATE = []
        refused = tasks.notify(job.pk)["review-moderation"]
        settings.LLMOPS_OUTBOUND_ALLOW_PRIVATE = [f"localhost:{receiver.port}"]
        by_name = tasks.notify(job.pk)["review-moderation"]
        settings.LLMOPS_OUTBOUND_ALLOW_PRIVATE = ["127.0.0.1"]
        by_address = tasks.notify(job.pk)["review-moderation"]
    figures.record(
        "T8",
        "webhook to localhost, allow-list emptied after saving",
        refused_at_send=refused.startswith("failed"),
        delivered_once_listed=by_name == by_address == "delivered (204)",
    )

    assert refused == (
        "failed: localhost resolves to 127.0.0.1, which is loopback; the operator must allow "
        "it in LLMOPS_OUTBOUND_ALLOW_PRIVATE"
    )
    assert by_name == "delivered (204)"
    assert by_address == "delivered (204)"
    assert len(receiver.received) == 2  # the two allowed sends only


TARGETS = [
    ("http://127.0.0.1:8000/admin/", "127.0.0.1 is loopback"),
    ("http://localhost:8000/hook", "localhost resolves to 127.0.0.1, which is loopback"),
    ("http://[::1]/hook", "::1 is loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "::ffff:127.0.0.1 is loopback"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is link-local (the cloud"),
    ("http://[fe80::1]/hook", "fe80::1 is link-local"),
    ("http://10.0.0.5/hook", "10.0.0.5 is private"),
    ("https://192.168.1.10/hook", "192.168.1.10 is private"),
    ("http://172.16.0.1/hook", "172.16.0.1 is private"),
    ("http://0.0.0.0:8000/hook", "0.0.0.0 is unspecified"),
    ("http://224.0.0.1/hook", "224.0.0.1 is multicast"),
    ("http://240.0.0.1/hook", "240.0.0.1 is"),
    ("http://100.64.0.1/hook", "100.64.0.1 is not publicly routable"),
]


def workload(team, url: str) -> Workload:
    return Workload(
        team=team,
        slug="nightly",
        latency_class=LatencyClass.REALTIME,
        policy=RoutingPolicy.objects.get_or_create(team=team, name="overnight")[0],
        batch_webhook_url=url,
    )


@pytest.mark.parametrize(("url", "reason"), TARGETS)
def test_a_private_webhook_target_is_refused_at_save_naming_why(team, settings, url, reason):
    settings.LLMOPS_OUTBOUND_ALLOW_PRIVATE = []

    with pytest.raises(ValidationError) as refused:
        workload(team, url).full_clean()

    message = " ".join(refused.value.message_dict["batch_webhook_url"])
    assert reason in message
    assert "LLMOPS_OUTBOUND_ALLOW_PRIVATE" in message


def test_the_admin_refuses_a_metadata_webhook_and_accepts_it_once_allowed(
    client, team, settings, figures
):
    settings.LLMOPS_OUTBOUND_ALLOW_PRIVATE = []
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    policy = RoutingPolicy.objects.create(team=team, name="overnight")

    def add(url: str):
        return client.post(
            "/admin/routing/workload/add/",
            {
                "team": team.pk,
                "slug": "nightly",
                "latency_class": LatencyClass.REALTIME,
                "policy": policy.pk,
                "batch_webhook_url": url,
                "new_webhook_secret": SECRET,
                "enabled": "on",
            },
        )

    refused = add("http://169.254.169.254/latest/meta-data/")
    assert not Workload.objects.exists()
    settings.LLMOPS_OUTBOUND_ALLOW_PRIVATE = ["169.254.169.254:80"]
    allowed = add("http://169.254.169.254/latest/meta-data/")
    figures.record(
        "T8",
        "admin saves a webhook at 169.254.169.254",
        without_the_switch=f"{refused.status_code} refused",
        listed_by_the_operator=f"{allowed.status_code} saved",
    )

    assert refused.status_code == 200
    assert "169.254.169.254 is link-local" in refused.content.decode()
    assert allowed.status_code == 302
    assert Workload.objects.get().batch_webhook_url == "http://169.254.169.254/latest/meta-data/"


def test_a_public_webhook_target_passes_and_an_unresolvable_name_waits_for_the_send(team):
    workload(team, "https://93.184.215.14/hook").full_clean()
    # Names this machine cannot resolve (production-only DNS) are checked at each send.
    workload(team, "https://hooks.example.invalid/batch").full_clean()
