"""Pricing as a pure function: usage and a price version give a cost. No database, no network.

Token conventions (the ledger's): `input_tokens` are uncached input tokens, so the
prompt is input + cached_input + cache_write (Anthropic's convention; OpenAI's
prompt_tokens include cached ones and are split by the adapter). `output_tokens`
include reasoning tokens, which are billed as output unless a version prices
them separately.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

MILLION = Decimal(1_000_000)
# The ledger stores 12 decimal places of a dollar; round once, at the end.
MONEY_QUANTUM = Decimal("0.000000000001")
# No single request reads or writes this many tokens; a bigger figure is a bug or an attack.
MAX_TOKENS_PER_RECORD = 100_000_000
BATCH_DISCOUNT = Decimal("0.5")  # OpenAI and Anthropic both document 50% for batch


class PricingError(ValueError):
    """A usage record cannot be priced; the message says why. Never priced as $0."""


@dataclass(frozen=True)
class Rates:
    """USD per million tokens."""

    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    output: Decimal
    reasoning: Decimal | None = None

    def scaled(self, factor: Decimal) -> Rates:
        return Rates(
            input=self.input * factor,
            cached_input=self.cached_input * factor,
            cache_write=self.cache_write * factor,
            output=self.output * factor,
            reasoning=None if self.reasoning is None else self.reasoning * factor,
        )


@dataclass(frozen=True)
class ContextTier:
    """Above this many prompt tokens, every token of the request is billed at these rates."""

    above_input_tokens: int
    rates: Rates


@dataclass(frozen=True)
class PriceVersion:
    id: int | None
    model: str
    processing: str
    effective_from: datetime
    rates: Rates
    tiers: tuple[ContextTier, ...] = ()
    derived: bool = False
    source: str = ""

    def rates_for(self, prompt_tokens: int) -> Rates:
        for tier in sorted(self.tiers, key=lambda t: t.above_input_tokens, reverse=True):
            if prompt_tokens > tier.above_input_tokens:
                return tier.rates
        return self.rates

    def with_batch_rule(self) -> PriceVersion:
        """The provider's documented batch price derived from this standard one."""
        return replace(
            self,
            id=None,
            processing="batch",
            rates=self.rates.scaled(BATCH_DISCOUNT),
            tiers=tuple(
                ContextTier(t.above_input_tokens, t.rates.scaled(BATCH_DISCOUNT))
                for t in self.tiers
            ),
            derived=True,
        )


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("input_tokens", "cached_input_tokens", "cache_write_tokens",
                     "output_tokens", "reasoning_tokens"):  # fmt: skip
            value = getattr(self, name)
            # bool is an int subclass: `True` tokens is a client bug, not 1 token.
            if not isinstance(value, int) or isinstance(value, bool):
                raise PricingError(f"{name} must be a whole number, got {value!r}")
            if value < 0:
                raise PricingError(f"{name} must not be negative, got {value}")
            if value > MAX_TOKENS_PER_RECORD:
                raise PricingError(f"{name} is implausibly large ({value})")
        if self.reasoning_tokens > self.output_tokens:
            raise PricingError("reasoning_tokens cannot exceed output_tokens (they are part of it)")

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cached_input_tokens + self.cache_write_tokens

    def as_dict(self) -> dict[str, int]:
        """As stored on a request (`Request.usage`). By hand: dataclasses.asdict deep-copies
        every value, a cost per request that a batch's ingest pays 50,000 times."""
        return {
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "output_tokens": self.output_tokens,
            "reasoning_tokens": self.reasoning_tokens,
        }


@dataclass(frozen=True)
class Cost:
    total: Decimal  # USD, quantized to the ledger's precision
    breakdown: dict[str, Decimal] = field(default_factory=dict)  # USD per component, unrounded
    version: PriceVersion | None = None


def price_usage(usage: Usage, version: PriceVersion) -> Cost:
    """What `usage` costs under `version` (tiers by total prompt tokens, cliff style)."""
    rates = version.rates_for(usage.prompt_tokens)
    reasoning_rate = rates.output if rates.reasoning is None else rates.reasoning
    breakdown = {
        "input": usage.input_tokens * rates.input / MILLION,
        "cached_input": usage.cached_input_tokens * rates.cached_input / MILLION,
        "cache_write": usage.cache_write_tokens * rates.cache_write / MILLION,
        "output": (usage.output_tokens - usage.reasoning_tokens) * rates.output / MILLION,
        "reasoning": usage.reasoning_tokens * reasoning_rate / MILLION,
    }
    total = sum(breakdown.values(), Decimal(0))
    return Cost(total=quantize(total), breakdown=breakdown, version=version)


def plain(amount: Decimal | int | str) -> str:
    """A money amount as a plain decimal string, never in exponent form: str() of a computed
    zero is '0E-12', which clients and people read as garbage."""
    return format(Decimal(amount), "f")


def quantize(amount: Decimal) -> Decimal:
    return amount.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)


def live_prices(version: PriceVersion, *, prompt_floor: int) -> tuple[Decimal, Decimal]:
    """(the least the prompt can cost in USD, the least output rate in USD per million
    tokens) under `version`, for a running cost that never passes the ledger's: a prompt of
    at least `prompt_floor` tokens at the cheapest prompt rate (fresh, cached or written to
    the cache, as the provider decides), and of the tiers the real prompt size can select."""
    candidates = [version.rates_for(prompt_floor)] + [
        tier.rates for tier in version.tiers if tier.above_input_tokens >= prompt_floor
    ]
    prompt_rate = min(min(r.input, r.cached_input, r.cache_write) for r in candidates)
    output_rate = min(r.output for r in candidates)
    return prompt_floor * prompt_rate / MILLION, output_rate


# What one referenced image or file may cost in prompt tokens, whatever its bytes: a tile
# count times a per-model multiplier (gpt-4o-mini's high detail reaches ~37,000 for one image;
# Claude's is ~1,600), or a PDF's pages. Data inline is bounded by its bytes instead.
IMAGE_TOKENS_BOUND = 50_000
FILE_TOKENS_BOUND = 200_000
_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})


def prompt_tokens_bound(messages: list[dict], *, extra: tuple = ()) -> int:
    """An upper bound on a prompt's tokens without a tokenizer: byte-level BPE tokens (OpenAI,
    Anthropic) are at least one UTF-8 byte each, plus a few tokens of framing per message; an
    image or a file by reference counts its bound above. `extra`: other request fields the
    provider counts as prompt (tool definitions, a response schema). Admission reserves this,
    so a budget can never be overrun by an undercount."""
    total = 3
    for message in messages:
        content = message.get("content", "")
        rest = {k: v for k, v in message.items() if k not in ("role", "content")}
        total += 4 + (_json_bytes(rest) if rest else 0)
        if not isinstance(content, list):
            total += _json_bytes(content)
            continue
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in _IMAGE_PARTS:
                total += IMAGE_TOKENS_BOUND
            elif kind == "file" and not (part.get("file") or {}).get("file_data"):
                total += FILE_TOKENS_BOUND
            elif kind == "document":  # Anthropic's: a PDF by reference or inline, or text
                total += FILE_TOKENS_BOUND + _json_bytes(part)
            else:
                total += _json_bytes(part)
    return total + sum(_json_bytes(item) for item in extra if item is not None)


# The fields of an OpenAI body besides its messages that cost tokens: tool definitions and a
# response schema are tokenized into the prompt, and a prediction's rejected tokens are billed
# on top of the answer (counted here, the hold still covers them); the rest (limits,
# sampling, stop) are settings, not tokens. An embeddings body's `input` is all prompt (its
# JSON has at least a byte per token of text, and a digit per token of a token array), as are
# a Responses body's `input`, `instructions` and `text` (its format's schema), and an Anthropic
# Messages body's `system` and output schema (its `messages` are counted as messages).
PROMPT_OPTIONS = (
    "tools",
    "functions",
    "response_format",
    "prediction",
    "input",
    "instructions",
    "text",
    "system",
    "output_config",
    "output_format",
)


def request_prompt_bound(params: dict) -> int:
    """prompt_tokens_bound of a request row's params: its messages and the fields of the
    client's body that count as prompt (PROMPT_OPTIONS)."""
    options = params.get("options") or {}
    messages = params["messages"]
    if params.get("kind") == "messages":  # an Anthropic body: its turns are in the options
        messages = options.get("messages") or []
    bound = prompt_tokens_bound(messages, extra=tuple(options.get(k) for k in PROMPT_OPTIONS))
    # A Responses continuation's prompt holds the earlier conversation, as last billed.
    return bound + (params.get("history_tokens") or 0)


def request_output_bound(params: dict) -> int:
    """The most output tokens a request row's params allow: max_tokens for each of n choices."""
    return params["max_tokens"] * (params.get("n") or 1)


def _json_bytes(value) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


_WORD = re.compile(r"\S+")


def prompt_tokens_floor(messages: list[dict]) -> int:
    """A lower bound on a prompt's tokens without a tokenizer: BPE tokenizers (OpenAI's,
    Anthropic's, SentencePiece's) split text at whitespace before merging, so no token spans
    two words and every whitespace-separated word is at least one token. Framing tokens and
    non-text parts are left out: they only add. (prompt_tokens_bound is the upper bound
    admission reserves.)"""
    words = 0
    for message in messages:
        content = message.get("content")
        parts = content if isinstance(content, list) else [content]
        for part in parts:
            text = part.get("text") if isinstance(part, dict) else part
            if isinstance(text, str):
                words += len(_WORD.findall(text))
    return words
