"""OpenAI wire protocol (api.openai.com and OpenAI-compatible servers) via the official SDK."""

from __future__ import annotations

import openai

from routing.providers.errors import ProviderError, from_status


def _client(*, base_url: str, api_key: str, timeout: float) -> openai.AsyncOpenAI:
    # max_retries=0: retries are our decision (only unbilled failures), not the SDK's.
    # The SDK refuses to build without a key; local servers often need none.
    return openai.AsyncOpenAI(
        base_url=base_url, api_key=api_key or "unset", max_retries=0, timeout=timeout
    )


def _translate(exc: openai.OpenAIError) -> ProviderError:
    if isinstance(exc, openai.APIStatusError):
        return from_status(f"OpenAI API error {exc.status_code}: {exc.message}", exc.status_code)
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError("OpenAI API timed out", retryable=True, maybe_billed=True)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError("cannot connect to the OpenAI API", retryable=True, maybe_billed=False)
    return ProviderError(f"OpenAI client error: {exc}", retryable=False, maybe_billed=False)


async def probe(*, base_url: str, api_key: str, timeout: float) -> None:
    async with _client(base_url=base_url, api_key=api_key, timeout=timeout) as client:
        try:
            await client.models.list()
        except openai.OpenAIError as exc:
            raise _translate(exc) from exc
