"""Password guessing on the login pages is locked out (django-axes): the 6th wrong password for
one username from one address is refused even with the right password, until the cool-off."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.utils import timezone

pytestmark = pytest.mark.django_db

PAGES = ["/accounts/login/", "/admin/login/"]
PASSWORD = "correct horse battery staple"


@pytest.fixture
def staff(db) -> User:
    return User.objects.create_superuser("ops", "ops@example.com", PASSWORD)


def sign_in(client, page: str, password: str, address: str = "203.0.113.7"):
    return client.post(
        page, {"username": "ops", "password": password}, REMOTE_ADDR=address, follow=False
    )


def signed_in(response) -> bool:
    return response.status_code == 302 and "login" not in response["Location"]


@pytest.mark.parametrize("page", PAGES)
def test_the_sixth_wrong_password_locks_the_page_even_for_the_right_one(
    client, staff, page, settings, figures
):
    assert settings.AXES_FAILURE_LIMIT == 5
    wrong = [sign_in(client, page, f"guess-{i}") for i in range(5)]
    sixth = sign_in(client, page, PASSWORD)  # the right password, too late
    seventh = sign_in(client, page, "guess-7")
    elsewhere = sign_in(client, page, PASSWORD, address="198.51.100.20")
    figures.record(
        "T8",
        f"password guessing on {page}",
        five_wrong_passwords=[r.status_code for r in wrong],
        right_password_sixth=sixth.status_code,
        wrong_password_seventh=seventh.status_code,
        right_password_from_another_address="signed in" if signed_in(elsewhere) else "refused",
    )

    assert [r.status_code for r in wrong[:4]] == [200] * 4  # the form again, with its error
    # The fifth failure reaches the limit and is answered with the lockout page.
    assert wrong[4].status_code == 429
    assert "Too many failed sign-ins" in wrong[4].content.decode()
    assert sixth.status_code == 429
    assert not signed_in(sixth)
    assert seventh.status_code == 429
    # Per username and address: the owner elsewhere is not locked out by a guesser.
    assert signed_in(elsewhere)


def test_the_lock_lifts_after_the_cool_off(client, staff, settings):
    for i in range(5):
        sign_in(client, "/accounts/login/", f"guess-{i}")
    assert sign_in(client, "/accounts/login/", PASSWORD).status_code == 429

    later = timezone.now() + timedelta(minutes=settings.LLMOPS_LOGIN_COOLOFF_MINUTES, seconds=5)
    with time_machine.travel(later, tick=False):
        response = sign_in(client, "/accounts/login/", PASSWORD)

    assert signed_in(response)


def test_api_keys_are_not_passwords_and_are_never_locked_out(client, staff, api_key, client_for):
    for i in range(10):
        sign_in(client, "/admin/login/", f"guess-{i}", address="127.0.0.1")

    response = client_for(api_key[1]).get("/api/v1/workloads", REMOTE_ADDR="127.0.0.1")

    assert response.status_code == 200
