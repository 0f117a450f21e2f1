"""The savings calculator: a month of traffic priced with the ledger's own price table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing import selectors
from billing.models import Processing
from billing.pricing import Usage, price_usage, quantize
from routing.models import LlmModel


@dataclass(frozen=True)
class Calculation:
    model: LlmModel
    monthly_requests: int
    input_tokens: int
    output_tokens: int
    batch_share: Decimal
    cache_hit_rate: Decimal
    standard_per_request_usd: Decimal
    batch_per_request_usd: Decimal
    all_realtime_usd: Decimal
    all_batch_usd: Decimal
    hybrid_usd: Decimal
    standard_price_id: int | None
    batch_price_id: int | None
    # None: the model has no flex price (most models: OpenAI sells flex for a few).
    flex_per_request_usd: Decimal | None = None
    all_flex_usd: Decimal | None = None
    flex_price_id: int | None = None

    @property
    def delta_usd(self) -> Decimal:
        """What the hybrid saves against serving everything realtime."""
        return self.all_realtime_usd - self.hybrid_usd

    @property
    def all_batch_delta_usd(self) -> Decimal:
        return self.all_realtime_usd - self.all_batch_usd

    @property
    def all_flex_delta_usd(self) -> Decimal | None:
        """What serving everything now at flex saves against realtime (None: no flex price)."""
        return None if self.all_flex_usd is None else self.all_realtime_usd - self.all_flex_usd


def calculate(
    *,
    model: LlmModel,
    monthly_requests: int,
    input_tokens: int,
    output_tokens: int,
    batch_share: Decimal,
    cache_hit_rate: Decimal,
    at: datetime,
) -> Calculation:
    """A month of traffic priced with the ledger's own price table and pricing function:
    all realtime; all batch; all at flex where the model has a flex price; and the hybrid,
    where cache hits cost nothing and the batch-eligible share of the rest runs at the batch
    price. Raises PricingError."""
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    standard = price_usage(usage, selectors.price_in_force(model, Processing.STANDARD, at))
    batch = price_usage(usage, selectors.price_in_force(model, Processing.BATCH, at))
    flex_version = selectors.price_or_none(model, Processing.FLEX, at)
    flex = price_usage(usage, flex_version) if flex_version else None
    n = Decimal(monthly_requests)
    misses = n * (1 - cache_hit_rate)
    hybrid = misses * (batch_share * batch.total + (1 - batch_share) * standard.total)
    return Calculation(
        model=model,
        monthly_requests=monthly_requests,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        batch_share=batch_share,
        cache_hit_rate=cache_hit_rate,
        standard_per_request_usd=standard.total,
        batch_per_request_usd=batch.total,
        all_realtime_usd=quantize(n * standard.total),
        all_batch_usd=quantize(n * batch.total),
        hybrid_usd=quantize(hybrid),
        standard_price_id=standard.version.id if standard.version else None,
        batch_price_id=batch.version.id if batch.version else None,
        flex_per_request_usd=flex.total if flex else None,
        all_flex_usd=quantize(n * flex.total) if flex else None,
        flex_price_id=flex.version.id if flex and flex.version else None,
    )
