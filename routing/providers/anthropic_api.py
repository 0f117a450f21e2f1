"""Anthropic wire protocol via the official SDK."""

from __future__ import annotations

import anthropic

from routing.providers.errors import ProviderError, from_status


def _client(*, base_url: str, api_key: str, timeout: float) -> anthropic.AsyncAnthropic:
    # base_url without /v1: the SDK's paths already start with it.
    return anthropic.AsyncAnthropic(
        base_url=base_url, api_key=api_key or "unset", max_retries=0, timeout=timeout
    )


def _translate(exc: anthropic.AnthropicError) -> ProviderError:
    if isinstance(exc, anthropic.APIStatusError):
        return from_status(f"Anthropic API error {exc.status_code}: {exc.message}", exc.status_code)
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderError("Anthropic API timed out", retryable=True, maybe_billed=True)
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderError(
            "cannot connect to the Anthropic API", retryable=True, maybe_billed=False
        )
    return ProviderError(f"Anthropic client error: {exc}", retryable=False, maybe_billed=False)


async def probe(*, base_url: str, api_key: str, timeout: float) -> None:
    async with _client(base_url=base_url, api_key=api_key, timeout=timeout) as client:
        try:
            await client.models.list(limit=1)
        except anthropic.AnthropicError as exc:
            raise _translate(exc) from exc
