"""Provider adapters: one module per wire protocol, each wrapping the official SDK.

They import nothing of ours but the small types in `errors`, so the router and
tests can use them without a database.
"""

from __future__ import annotations

from routing.providers import anthropic_api, openai_api
from routing.providers.errors import ProviderError

__all__ = ["ProviderError", "probe"]


async def probe(*, kind: str, base_url: str, api_key: str, timeout: float) -> None:
    """Cheap liveness check of a provider (lists its models). Raises ProviderError."""
    module = anthropic_api if kind == "anthropic" else openai_api
    await module.probe(base_url=base_url, api_key=api_key, timeout=timeout)
