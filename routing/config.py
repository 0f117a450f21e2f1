"""Routing configuration as every request reads it, memoized per process (llmops.memo)."""

from __future__ import annotations

from llmops import memo
from routing.models import LlmModel, PolicyModel


def policy_chain(policy_id: int) -> tuple[LlmModel, ...]:
    """A policy's models in chain order with their providers, enabled or not. Shared by every
    thread of the process: read-only."""

    def build() -> tuple[LlmModel, ...]:
        links = PolicyModel.objects.filter(policy_id=policy_id).select_related("model__provider")
        return tuple(link.model for link in links.order_by("position"))

    return memo.memoized(("policy_chain", policy_id), build)
