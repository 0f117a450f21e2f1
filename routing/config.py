"""Routing configuration as every request reads it, memoized per process (llmops.memo)."""

from __future__ import annotations

from llmops import memo
from routing.models import ApiKey, LlmModel, PolicyModel, Workload


def policy_chain(policy_id: int) -> tuple[LlmModel, ...]:
    """A policy's models in chain order with their providers, enabled or not. Shared by every
    thread of the process: read-only."""

    def build() -> tuple[LlmModel, ...]:
        links = PolicyModel.objects.filter(policy_id=policy_id).select_related("model__provider")
        return tuple(link.model for link in links.order_by("position"))

    return memo.memoized(("policy_chain", policy_id), build)


def default_workload(key: ApiKey) -> Workload | None:
    """The workload a key bills when a call names none (as the SDKs send them), with its team
    and policy, as asks.team_workload reads a named one: through the key it cost two queries a
    request (the workload, then its policy), 8% of a stream's CPU. None if the key has none, or
    if it was deleted since the key was read."""
    if key.default_workload_id is None:
        return None
    return memo.memoized(
        ("workload-by-id", key.default_workload_id),
        lambda: (
            Workload.objects.filter(pk=key.default_workload_id)
            .select_related("team", "policy")
            .first()
        ),
        keep=lambda workload: workload is not None,
    )
