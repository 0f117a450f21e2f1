"""Reading published prices from the genai-prices package (offline: its data ships in the wheel).

No database here: this turns genai-prices' model prices into our PriceVersion
values, deriving a batch price by the provider's rule where the package has none.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from importlib.metadata import version as package_version

from genai_prices import data_snapshot, types

from billing.pricing import ContextTier, PriceVersion, PricingError, Rates

SOURCE = f"genai-prices {package_version('genai-prices')}"

# Our provider kinds → genai-prices provider ids. OpenAI-compatible servers have
# no published price of their own: their models must be priced in the admin.
PROVIDER_IDS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure_openai": "azure",
    "gemini": "google",
}
# Providers whose batch API is documented at 50% of the standard price (Azure's Global Batch
# and Gemini's batch mode too).
BATCH_RULE_PROVIDERS = {"openai", "anthropic", "azure_openai", "gemini"}

# Extra processing kinds a provider sells, as genai-prices price contexts.
CONTEXTS: dict[str, dict[str, str]] = {
    "batch": {"processing": "batch"},
    "flex": {"service_tier": "flex"},
    "priority": {"service_tier": "priority"},
}


def published_versions(
    *, model_id: str, provider_kind: str, at: datetime, embedding: bool = False
) -> list[PriceVersion]:
    """Standard, batch (published or derived) and, where sold, flex and priority prices. An
    embedding model has an input price only (its output costs nothing)."""
    provider_id = PROVIDER_IDS.get(provider_kind)
    if provider_id is None:
        raise PricingError(f"genai-prices has no prices for {provider_kind} providers")
    snapshot = data_snapshot.get_snapshot()
    try:
        provider, info = snapshot.find_provider_model(model_id, None, provider_id, None)
    except LookupError as exc:
        raise PricingError(f"genai-prices does not know {provider_id} model {model_id}") from exc
    # genai-prices answers an Azure model it lists no price for with OpenAI's (Azure sells
    # OpenAI's models at OpenAI's list prices): such rows are marked derived.
    borrowed = info not in provider.models

    standard_prices = info.get_prices(at)
    standard = _version(
        model_id, "standard", at, standard_prices, derived=borrowed, embedding=embedding
    )
    versions = [standard]
    for processing, context in CONTEXTS.items():
        if processing == "flex" and provider_kind != "openai":
            continue  # OpenAI's own tier: Azure lists OpenAI's prices but sells no flex
        prices = info.get_prices(at, context)
        if prices != standard_prices:
            versions.append(
                _version(model_id, processing, at, prices, derived=borrowed, embedding=embedding)
            )
        elif processing == "batch" and provider_kind in BATCH_RULE_PROVIDERS:
            # genai-prices silently falls back to the standard price when a model
            # has no batch variant; the provider's documented rule is 50%.
            versions.append(standard.with_batch_rule())
    return versions


def _version(
    model_id: str,
    processing: str,
    at: datetime,
    prices: types.ModelPrice,
    *,
    derived: bool,
    embedding: bool = False,
) -> PriceVersion:
    fields = {
        "input": getattr(prices, "input_mtok", None),
        # Without a separate rate, cache reads and writes are ordinary input tokens.
        "cached_input": getattr(prices, "cache_read_mtok", None),
        "cache_write": getattr(prices, "cache_write_mtok", None),
        "output": getattr(prices, "output_mtok", None),
    }
    if embedding and fields["output"] is None:
        fields["output"] = Decimal(0)  # an embedding writes no tokens
    if fields["input"] is None or fields["output"] is None:
        raise PricingError(f"genai-prices has no token prices for {model_id}")
    fields["cached_input"] = fields["cached_input"] or fields["input"]
    fields["cache_write"] = fields["cache_write"] or fields["input"]

    starts = sorted(
        {t.start for p in fields.values() if isinstance(p, types.TieredPrices) for t in p.tiers}
    )
    return PriceVersion(
        id=None,
        model=model_id,
        processing=processing,
        effective_from=at,
        rates=Rates(**{k: _rate_at(p, None) for k, p in fields.items()}),
        tiers=tuple(
            ContextTier(start, Rates(**{k: _rate_at(p, start) for k, p in fields.items()}))
            for start in starts
        ),
        derived=derived,
        source=SOURCE,
    )


def _rate_at(price: Decimal | types.TieredPrices, start: int | None) -> Decimal:
    """The rate of one price key above the tier `start` (None: the base rate)."""
    if not isinstance(price, types.TieredPrices):
        return Decimal(price)
    rate = price.base
    for tier in price.tiers:
        if start is not None and tier.start <= start:
            rate = tier.price
    return Decimal(rate)
