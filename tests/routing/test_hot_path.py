"""The serving hot path's cost in SQL statements, and the configuration memo that keeps it low
(llmops/memo.py): a change to a price, a chain or a budget reaches the next request.

These tests commit (transaction=True): the memo keeps nothing read inside a transaction that
changed configuration, so only committed changes show what a server does."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.models import Budget, LedgerEntry, Price, Processing
from billing.pricing import PriceVersion, Rates
from billing.selectors import price_in_force, price_versions
from billing.services import price_create
from llmops import memo
from routing.models import LlmModel, PolicyModel, Request, Workload

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("ledger_emptied_after"),
]
# What one realtime request may cost once the memo is warm: the key; the request row inserted
# in its final state with its hold (the reserve, one UPDATE per budget period, RETURNING what
# a soft budget's breach needs; the hold; its period link) in one transaction; then the
# attempt, the ledger entry (INSERT … ON CONFLICT: no lookup of its key first), the hold
# settled, each period's spent and reserved in one UPDATE, and the request row, in another.
# The native API then reads back what its answer shows that the unit did not hold (the
# request's cost from the ledger, its attempts). The workload and
# the budget periods come from the memo.
NATIVE_STATEMENTS = 16
OPENAI_STATEMENTS = 14


def native(api, text: str, workload: str = "product-search"):
    body = {"workload": workload, "messages": [{"role": "user", "content": text}]}
    return api.post("/api/v1/requests", {**body, "max_tokens": 20}, format="json")


def openai(api, text: str, *, workload_header: bool = True):
    """A chat completion naming its workload in X-Workload or, sent as the OpenAI SDKs send
    one (no such header), billing the key's default workload."""
    return api.post(
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
        format="json",
        headers={"X-Workload": "product-search"} if workload_header else {},
    )


def statements(call) -> tuple[object, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = call()
    return response, [q["sql"] for q in captured.captured_queries]


def test_a_realtime_request_runs_a_bounded_number_of_statements(api):
    assert native(api, "warm the memo").status_code == 200
    assert openai(api, "warm the memo too").status_code == 200

    response, sql = statements(lambda: native(api, "counted, native"))
    assert response.status_code == 200, response.content
    assert len(sql) <= NATIVE_STATEMENTS, "\n".join(sql)
    # The memo answers these: none is read per request.
    for table in ("billing_price", 'billing_budget"', "routing_policymodel"):
        assert not [s for s in sql if f'FROM "{table}' in s], table

    response, sql = statements(lambda: openai(api, "counted, openai"))
    assert response.status_code == 200, response.content
    assert len(sql) <= OPENAI_STATEMENTS, "\n".join(sql)


def test_a_request_billing_the_keys_default_workload_reads_it_from_the_memo(api, demo):
    """What the SDKs send (no X-Workload): the key's default workload and its policy come from
    the memo, as a named one does; loaded through the key they were two reads a request."""
    # Twice, as above: the first request of a budget period creates it (not kept in the memo).
    for text in ("warm the memo", "warm it again"):
        assert openai(api, text, workload_header=False).status_code == 200

    response, sql = statements(lambda: openai(api, "counted, default", workload_header=False))
    assert response.status_code == 200, response.content
    assert len(sql) <= OPENAI_STATEMENTS, "\n".join(sql)
    for table in ("routing_workload", "routing_routingpolicy", "routing_team"):
        assert not [s for s in sql if f'FROM "{table}"' in s], (table, sql)
    request = Request.objects.get(params__messages__0__content="counted, default")
    assert request.workload_id == demo.workloads["product-search"].pk

    # A new default for the key reaches its next request; the old workload is not billed.
    from routing.keys import hash_api_key
    from routing.models import ApiKey

    key = ApiKey.objects.get(key_hash=hash_api_key(demo.key))
    key.default_workload = demo.workloads["support-triage"]
    key.save(update_fields=["default_workload"])
    assert openai(api, "after the change", workload_header=False).status_code == 200
    request = Request.objects.get(params__messages__0__content="after the change")
    assert request.workload_id == demo.workloads["support-triage"].pk


def test_a_default_workload_deleted_since_its_key_was_read_is_no_default(demo):
    """The race between reading a key and reading its default workload: a workload deleted in
    between leaves the key with no default (a 400 naming X-Workload), not a DoesNotExist."""
    from django.test import RequestFactory

    from routing.asks import RequestRejected, openai_workload
    from routing.models import ApiKey

    gone = Workload.objects.order_by("-pk").first().pk + 1000
    key = ApiKey(team=demo.acme, name="stale", default_workload_id=gone)
    with pytest.raises(RequestRejected) as refused:
        openai_workload(RequestFactory().post("/v1/chat/completions"), key)
    assert refused.value.status == 400 and refused.value.field == "X-Workload"


def test_a_new_price_version_prices_the_next_request(api):
    assert native(api, "before").status_code == 200
    model = LlmModel.objects.get(model_id="gpt-4o-mini")
    old = price_in_force(model, Processing.STANDARD, timezone.now())
    doubled = Rates(
        input=old.rates.input * 2,
        cached_input=old.rates.cached_input,
        cache_write=old.rates.cache_write,
        output=old.rates.output * 2,
    )
    new = price_create(
        model=model,
        version=PriceVersion(
            id=None,
            model=str(model.pk),
            processing=Processing.STANDARD,
            effective_from=timezone.now(),
            rates=doubled,
        ),
        effective_from=timezone.now(),
    )

    assert native(api, "after").status_code == 200

    entry = LedgerEntry.objects.get(request__params__messages__0__content="after")
    assert entry.price_id == new.pk
    before = LedgerEntry.objects.get(request__params__messages__0__content="before")
    assert before.price_id == old.id and entry.price_id != before.price_id


def test_a_chain_change_routes_the_next_request(api):
    assert native(api, "first").status_code == 200
    assert Request.objects.get(params__messages__0__content="first").model.model_id == (
        "gpt-4o-mini"
    )
    workload = Workload.objects.get(slug="product-search")
    first = PolicyModel.objects.get(policy=workload.policy, position=0)
    first.model.enabled = False
    first.model.save()

    assert native(api, "second").status_code == 200

    served = Request.objects.get(params__messages__0__content="second").model
    assert served.model_id != "gpt-4o-mini"


def test_a_budget_limit_change_applies_to_the_next_request(api):
    assert native(api, "affordable").status_code == 200
    budget = Budget.objects.get(team__slug="acme", workload=None)
    budget.hard = True
    budget.save()
    from billing.services import budget_update

    budget_update(budget=budget, limit_usd=Decimal("0.000001"))

    response = native(api, "over the limit")

    assert response.status_code == 402, response.content


def test_another_process_changing_the_configuration_drops_this_ones_memo():
    calls = []

    def build():
        calls.append(1)
        return len(calls)

    assert memo.memoized("k", build) == 1
    assert memo.memoized("k", build) == 1  # memoized
    cache.set(memo.VERSION_KEY, "a change committed elsewhere")  # what _publish does there
    assert memo.memoized("k", build) == 2
    assert memo.memoized("k", build) == 2


def test_a_price_row_saved_anywhere_invalidates(admin_client, demo):
    # Saved in the admin, not through the hot path: the memo must still let it through.
    model = LlmModel.objects.get(model_id="gpt-4o-mini")
    before = price_versions(model.pk, Processing.STANDARD)
    _, sql = statements(lambda: price_versions(model.pk, Processing.STANDARD))
    assert not sql  # memoized: without a new price, the old list would be served again
    token = cache.get(memo.VERSION_KEY)

    response = admin_client.post(
        "/admin/billing/price/add/",
        {
            "model": model.pk,
            "processing": "standard",
            "effective_from_0": "2020-01-01",
            "effective_from_1": "00:00:00",
            "input_per_mtok": "0.10",
            "cached_input_per_mtok": "0.05",
            "cache_write_per_mtok": "0.10",
            "output_per_mtok": "0.40",
            "tiers": "[]",
            "note": "negotiated",
        },
    )

    assert response.status_code == 302, response.content
    new = Price.objects.get(model=model, note="negotiated")
    assert new.pk not in [v.id for v in before]
    assert new.pk in [v.id for v in price_versions(model.pk, Processing.STANDARD)]
    # Other processes drop their memo on the version token the save replaced.
    assert cache.get(memo.VERSION_KEY) != token


def test_a_unit_of_work_reads_the_version_token_once():
    calls = []

    def build():
        calls.append(1)
        return len(calls)

    with memo.pinned():
        assert memo.memoized("u", build) == 1
        cache.set(memo.VERSION_KEY, "committed during the unit")
        assert memo.memoized("u", build) == 1  # the unit's token: no cache read per lookup
    assert memo.memoized("u", build) == 2  # the next read sees the change


def test_a_websocket_start_by_a_key_reads_the_key_once_and_the_workload_from_the_memo(api, demo):
    """/ws/stream/'s start re-reads its caller before admitting (a key revoked elsewhere must
    start nothing): one statement for a key, as REST's authentication reads it; the key's
    team's workloads come from the memo, as they do for REST."""
    from routing.consumers import Caller, StreamConsumer
    from routing.keys import hash_api_key
    from routing.models import ApiKey
    from routing.socket_auth import Credential

    key = ApiKey.objects.get(key_hash=hash_api_key(demo.key))
    consumer = StreamConsumer()
    consumer.credential = Credential(key_id=key.pk)
    consumer.caller = None
    message = {
        "type": "start",
        "workload": "product-search",
        "messages": [{"role": "user", "content": "counted, websocket"}],
        "max_tokens": 16,
    }
    assert native(api, "warm the memo").status_code == 200
    consumer._admit({**message, "messages": [{"role": "user", "content": "warm it too"}]})

    _, sql = statements(lambda: consumer._admit(message))

    keys = [s for s in sql if 'FROM "routing_apikey"' in s]
    assert len(keys) == 1, "\n".join(sql)
    for table in ("routing_workload", "routing_team", "routing_policymodel", "billing_price"):
        assert not [s for s in sql if f'FROM "{table}"' in s], (table, sql)
    assert isinstance(consumer.caller, Caller) and consumer.caller.api_key.pk == key.pk
    request = Request.objects.get(params__messages__0__content="counted, websocket")
    assert request.api_key_id == key.pk and request.status == Request.Status.RUNNING
