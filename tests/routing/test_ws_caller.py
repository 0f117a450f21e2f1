"""Who a websocket handshake is: the API key's team, a browser session with an Origin, or
nobody (refused)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, User

from routing.auth import KeyPrincipal
from routing.consumers import caller_from_scope

pytestmark = pytest.mark.django_db


def scope(headers=(), user=None) -> dict:
    return {"headers": list(headers), "user": user or AnonymousUser()}


def test_a_bearer_key_in_the_header_is_its_team(api_key):
    key, raw = api_key
    caller = caller_from_scope(scope([(b"authorization", f"Bearer {raw}".encode())]))
    assert isinstance(caller.principal, KeyPrincipal)
    assert (caller.api_key, caller.user) == (key, None)


@pytest.mark.parametrize(
    "header", [b"Bearer llm_not-a-key-0000000000", b"Basic YWJjOmRlZg==", b"Bearer a b"]
)
def test_a_bad_authorization_header_is_refused_even_with_a_session(header, api_key):
    user = User.objects.create_user("ana")
    headers = [(b"authorization", header), (b"origin", b"http://127.0.0.1")]
    assert caller_from_scope(scope(headers, user)) is None


def test_a_session_counts_only_with_an_origin():
    user = User.objects.create_user("ana")
    assert caller_from_scope(scope([(b"origin", b"http://127.0.0.1")], user)).user == user
    assert caller_from_scope(scope([], user)) is None
    assert caller_from_scope(scope([(b"origin", b"http://127.0.0.1")])) is None
