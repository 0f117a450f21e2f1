"""Prices: the offline sync from genai-prices, published examples, and versioned overrides."""

from __future__ import annotations

import dataclasses
import io
import socket
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price

from billing.models import Price, Processing
from billing.pricing import PriceVersion, Rates, Usage, quantize
from billing.services import ledger_record_usage, price_create, prices_sync, pricing_estimate
from llmops import memo
from llmops.demo import MODELS
from routing.models import LlmModel, Mode, Provider

pytestmark = pytest.mark.django_db

DEMO_MODEL_IDS = [model_id for _, model_id, *_ in MODELS]
# Our batch prices that genai-prices does not publish: derived by the providers' 50% rule.
DERIVED = {
    ("claude-opus-4-1", Processing.BATCH),
    ("text-embedding-3-small", Processing.BATCH),
    ("text-embedding-3-large", Processing.BATCH),
    # Azure: genai-prices lists its own o4-mini price (its batch price derived by the 50%
    # rule) and none for gpt-4.1-mini, priced at OpenAI's: every row of it is derived.
    ("o4-mini", Processing.BATCH),
    ("gpt-4.1-mini", Processing.STANDARD),
    ("gpt-4.1-mini", Processing.BATCH),
    ("gpt-4.1-mini", Processing.PRIORITY),
}
RATE_FIELDS = ["input_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok", "output_per_mtok"]


def priced_model(demo, model_id: str) -> LlmModel:
    """A demo model, or claude-sonnet-4-5, which the demo no longer has (Anthropic retired it
    on 2026-11-30) but whose published long-context tiers these examples check: added beside
    the demo's models with its published prices."""
    if model_id in demo.models:
        return demo.models[model_id]
    model = LlmModel.objects.create(
        provider=demo.models["claude-haiku-4-5"].provider,
        model_id=model_id,
        tier="standard",
        context_window=200_000,
        max_output_tokens=64_000,
    )
    prices_sync(models=[model], at=demo.synced_at)
    memo.invalidate()  # committed only with the test's transaction: drop this process's now
    return model


@pytest.fixture
def demo_models(db) -> list[LlmModel]:
    """The demo's providers and models, with no price yet."""
    providers = {
        "sim-openai": Provider.objects.create(
            slug="sim-openai",
            name="OpenAI",
            kind=Provider.Kind.OPENAI,
            base_url="http://127.0.0.1:9/openai/v1",
        ),
        "sim-anthropic": Provider.objects.create(
            slug="sim-anthropic",
            name="Anthropic",
            kind=Provider.Kind.ANTHROPIC,
            base_url="http://127.0.0.1:9/anthropic",
        ),
        "sim-gemini": Provider.objects.create(
            slug="sim-gemini",
            name="Gemini",
            kind=Provider.Kind.GEMINI,
            base_url="http://127.0.0.1:9/gemini",
        ),
    }
    return [
        LlmModel.objects.create(
            provider=providers[provider],
            model_id=model_id,
            tier=tier,
            context_window=context,
            max_output_tokens=max_out,
        )
        for provider, model_id, tier, context, max_out in MODELS
    ]


def sync_prices() -> str:
    out = io.StringIO()
    call_command("sync_prices", stdout=out)
    return out.getvalue()


def price(model: LlmModel, processing: str) -> Price:
    return Price.objects.get(model=model, processing=processing)


def test_syncing_twice_creates_nothing_the_second_time(demo_models):
    first = sync_prices()
    rows = list(Price.objects.order_by("pk").values())
    second = sync_prices()

    assert "0 new version(s)" not in first
    assert {(p["model_id"], p["processing"]) for p in rows} >= {
        (model.pk, processing) for model in demo_models for processing in ("standard", "batch")
    }
    assert f"0 new version(s), {len(rows)} unchanged" in second
    assert list(Price.objects.order_by("pk").values()) == rows


def test_syncing_never_opens_a_socket(demo_models, monkeypatch):
    attempts = []

    def no_network(sock, address):
        attempts.append(address)
        raise OSError("this test has no network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    out = sync_prices()
    monkeypatch.undo()

    assert attempts == []
    assert "skipped" not in out
    for model in demo_models:
        assert price(model, "standard").input_per_mtok > 0


def test_opus_batch_is_derived_at_exactly_half_the_standard_price(demo):
    opus = demo.models["claude-opus-4-1"]
    standard, batch = price(opus, "standard"), price(opus, "batch")

    assert (standard.derived, batch.derived) == (False, True)
    for field in RATE_FIELDS:
        assert getattr(batch, field) == getattr(standard, field) / 2, field
    assert batch.input_per_mtok == Decimal("7.5")
    assert batch.effective_from == standard.effective_from


@pytest.mark.parametrize(
    ("model_id", "input_rate", "output_rate"),
    [("gpt-4o", "1.25", "5"), ("claude-sonnet-4-5", "1.5", "7.5")],
)
def test_a_published_batch_price_is_copied_not_derived(demo, model_id, input_rate, output_rate):
    batch = price(priced_model(demo, model_id), "batch")

    assert not batch.derived
    assert (batch.input_per_mtok, batch.output_per_mtok) == (
        Decimal(input_rate),
        Decimal(output_rate),
    )
    assert batch.source.startswith("genai-prices")


def test_only_opus_the_embedding_models_and_azure_borrowed_prices_are_derived(demo):
    derived = set(Price.objects.filter(derived=True).values_list("model__model_id", "processing"))
    assert derived == DERIVED


@pytest.mark.parametrize(
    ("model_id", "mode", "usage", "cost"),
    [
        # 1000 prompt tokens of which 500 cached, 200 output: 500 x $2.5 + 500 x $1.25 + 200 x $10
        (
            "gpt-4o",
            Mode.REALTIME,
            Usage(input_tokens=500, cached_input_tokens=500, output_tokens=200),
            "0.003875",
        ),
        (
            "claude-sonnet-4-5",
            Mode.BATCH,
            Usage(input_tokens=10_000, output_tokens=1_000),
            "0.0225",
        ),
        # Up to 200k prompt tokens: $3 / $15.
        (
            "claude-sonnet-4-5",
            Mode.STREAM,
            Usage(input_tokens=200_000, output_tokens=1_000),
            "0.615",
        ),
        # Above it, every token at the long-context tier: $6 / $22.5.
        (
            "claude-sonnet-4-5",
            Mode.STREAM,
            Usage(input_tokens=200_001, output_tokens=1_000),
            "1.222506",
        ),
        # Cache reads and writes count toward the tier's threshold: $6 / $0.6 / $7.5 / $22.5.
        (
            "claude-sonnet-4-5",
            Mode.REALTIME,
            Usage(
                input_tokens=145_000,
                cached_input_tokens=60_000,
                cache_write_tokens=5_000,
                output_tokens=1_000,
            ),
            "0.966",
        ),
    ],
    ids=[
        "gpt-4o-cached",
        "sonnet-batch",
        "sonnet-200k",
        "sonnet-long-context",
        "sonnet-tier-cache",
    ],
)
def test_published_examples_cost_what_the_providers_say(demo, model_id, mode, usage, cost):
    model = priced_model(demo, model_id)
    estimate, _ = pricing_estimate(model=model, usage=usage, mode=mode, at=demo.at)
    assert estimate.total == Decimal(cost)


USAGES = [
    Usage(input_tokens=1_000, output_tokens=200),
    Usage(input_tokens=500, cached_input_tokens=500, output_tokens=200),
    Usage(
        input_tokens=700, cached_input_tokens=2_000, cache_write_tokens=3_000, output_tokens=1_500
    ),
    Usage(input_tokens=3, output_tokens=1),
    Usage(
        input_tokens=250_000,
        cached_input_tokens=10_000,
        cache_write_tokens=5_000,
        output_tokens=3_000,
    ),
]


def genai_total(model: LlmModel, usage: Usage, processing: str, at) -> Decimal:
    return calc_price(
        GenaiUsage(
            input_tokens=usage.prompt_tokens,  # genai-prices counts cached tokens as input too
            cache_read_tokens=usage.cached_input_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            output_tokens=usage.output_tokens,
        ),
        model.model_id,
        provider_id=model.provider.kind,
        genai_request_timestamp=at,
        price_context={"processing": "batch"} if processing == Processing.BATCH else None,
    ).total_price


@pytest.mark.parametrize("processing", [Processing.STANDARD, Processing.BATCH])
@pytest.mark.parametrize("model_id", DEMO_MODEL_IDS)
def test_our_estimate_equals_genai_prices_for_every_demo_model(demo, model_id, processing):
    model = demo.models[model_id]
    synced_at = price(model, processing).effective_from
    mode = Mode.BATCH if processing == Processing.BATCH else Mode.REALTIME

    for usage in USAGES:
        ours, _ = pricing_estimate(model=model, usage=usage, mode=mode, at=demo.at)
        if (model_id, processing) in DERIVED:
            # genai-prices falls back to the standard price; the provider's rule is half.
            expected = genai_total(model, usage, Processing.STANDARD, synced_at) / 2
        else:
            expected = genai_total(model, usage, processing, synced_at)
        assert ours.total == quantize(Decimal(expected)), usage
        assert ours.total > 0


def test_an_admin_override_prices_later_usage_and_leaves_history_alone(demo, admin_user):
    gpt4o = demo.models["gpt-4o"]
    published = price(gpt4o, "standard")
    published_row = Price.objects.filter(pk=published.pk).values().get()
    negotiated = Rates(
        input=Decimal("2"), cached_input=Decimal("1"), cache_write=Decimal("2"), output=Decimal("8")
    )
    override = price_create(
        model=gpt4o,
        version=PriceVersion(
            id=None,
            model="gpt-4o",
            processing=Processing.STANDARD,
            effective_from=demo.at,
            rates=negotiated,
        ),
        effective_from=demo.at,
        created_by=admin_user,
        note="negotiated rate",
    )
    qa = demo.workloads["dashboard-qa"]  # interactive: gpt-4o first

    def charge(key: str, at):
        return ledger_record_usage(
            key=key,
            team=demo.globex,
            workload=qa,
            model=gpt4o,
            mode=Mode.REALTIME,
            usage=Usage(input_tokens=10_000, output_tokens=1_000),
            at=at,
        )[0]

    earlier = charge("qa-1", demo.at - timedelta(hours=1))
    later = charge("qa-2", demo.at)

    assert (earlier.cost_usd, earlier.price_id) == (Decimal("0.035"), published.pk)
    assert (later.cost_usd, later.price_id) == (Decimal("0.028"), override.pk)
    assert later.counterfactual_cost_usd == Decimal("0.028")  # gpt-4o is also the primary
    override.refresh_from_db()
    assert (override.source, override.derived, override.created_by) == ("admin", False, admin_user)
    assert Price.objects.filter(pk=published.pk).values().get() == published_row
    assert Price.objects.filter(model=gpt4o, processing="standard").count() == 2


@pytest.mark.parametrize(
    "model_id, per_mtok", [("text-embedding-3-small", "0.02"), ("text-embedding-3-large", "0.13")]
)
def test_an_embedding_model_is_priced_per_input_token_with_a_half_price_batch(
    demo_models, model_id, per_mtok
):
    model = LlmModel.objects.create(
        provider=demo_models[0].provider,
        model_id=model_id,
        kind=LlmModel.Kind.EMBEDDING,
        context_window=8192,
        max_output_tokens=0,
    )
    sync_prices()

    standard, batch = price(model, Processing.STANDARD), price(model, Processing.BATCH)
    assert standard.input_per_mtok == Decimal(per_mtok) and standard.output_per_mtok == 0
    assert batch.input_per_mtok == Decimal(per_mtok) / 2 and batch.output_per_mtok == 0


def test_a_chat_model_without_an_output_price_is_not_priced_as_free(demo_models):
    # Only a model marked embedding may have no output price: a chat model without one is a
    # gap in the published data, priced in the admin, never silently at zero.
    model = LlmModel.objects.create(
        provider=demo_models[0].provider,
        model_id="text-embedding-3-small",
        context_window=8192,
        max_output_tokens=1,
    )
    report = sync_prices()
    assert not Price.objects.filter(model=model).exists()
    assert "text-embedding-3-small" in report


def test_a_usage_as_stored_names_every_count_it_has():
    # as_dict is written out by hand (for speed): a count added to Usage must be added there.
    usage = Usage(
        input_tokens=1, cached_input_tokens=2, cache_write_tokens=3, output_tokens=5,
        reasoning_tokens=4,
    )  # fmt: skip
    assert usage.as_dict() == dataclasses.asdict(usage)
    assert Usage(**usage.as_dict()) == usage
