"""Everything the simulator remembers: config, clock, models, usage and faults.

All in memory, all touched from the event loop thread only, so no locks.
"""

from __future__ import annotations

import copy
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from llmops.simulator.textgen import PromptCache
from llmops.simulator.wire import Ids, is_int, is_number

# Who the usage book and the faults know; Azure OpenAI serves OpenAI's models under its own
# deployments, Gemini has a catalogue of its own.
PROVIDERS = ("openai", "anthropic", "azure", "gemini")
# The providers with a model catalogue `add_models` may extend (Azure has deployments instead).
CATALOGUES = ("openai", "anthropic", "gemini")

# Largest max_tokens each model accepts, as the real APIs enforce it.
OPENAI_MODELS: dict[str, int] = {
    "gpt-4o-mini": 16_384,
    "gpt-4o": 16_384,
    "gpt-4.1": 32_768,
    "gpt-4.1-mini": 32_768,
    "gpt-4.1-nano": 32_768,
    "gpt-5": 128_000,
    "gpt-5-mini": 128_000,
    "gpt-5-nano": 128_000,
    "o3": 100_000,
    "o4-mini": 100_000,
}
ANTHROPIC_MODELS: dict[str, int] = {
    "claude-haiku-4-5": 64_000,
    "claude-sonnet-4-5": 64_000,  # retired by Anthropic on 2026-11-30; kept for old databases
    "claude-sonnet-4-6": 64_000,
    "claude-opus-4-1": 32_000,
    "claude-opus-4-5": 64_000,
    "claude-3-5-haiku-latest": 8_192,
}
GEMINI_MODELS: dict[str, int] = {
    "gemini-2.5-flash": 65_536,
    "gemini-2.5-flash-lite": 65_536,
    "gemini-2.5-pro": 65_536,
}
ADDED_MODEL_MAX_TOKENS = 128_000


@dataclass(frozen=True, slots=True)
class EmbeddingModel:
    """An OpenAI embedding model: its native vector length, and whether `dimensions` may
    shorten it (the text-embedding-3 family only; ada-002 refuses the parameter)."""

    dimensions: int
    shortens: bool


# A catalogue of their own, apart from the chat models: chat refuses an embedding model and
# /v1/embeddings a chat model, as OpenAI does.
OPENAI_EMBEDDING_MODELS: dict[str, EmbeddingModel] = {
    "text-embedding-3-small": EmbeddingModel(1536, shortens=True),
    "text-embedding-3-large": EmbeddingModel(3072, shortens=True),
    "text-embedding-ada-002": EmbeddingModel(1536, shortens=False),
}

GEMINI_EMBEDDING_MODELS: dict[str, EmbeddingModel] = {
    "gemini-embedding-001": EmbeddingModel(3072, shortens=True),
}

# The OpenAI models that take `service_tier: "flex"` (OpenAI's flex processing page); the
# `flex_models` config key replaces the list.
FLEX_MODELS = ("gpt-5", "gpt-5-mini", "gpt-5-nano", "o3", "o4-mini")

TIMING_KEYS = (
    "ttft_ms",
    "tokens_per_s",
    "batch_validating_s",
    "batch_turnaround_s",
    "batch_finalizing_s",
    "batch_cancel_s",
    "flex_delay_ms",  # extra wait before the first byte of a flex answer, on top of ttft_ms
)
LENGTH_KEYS = ("output_tokens", "min_output_tokens", "max_output_tokens")
# Share (0-1) of flex calls refused with 429 Resource Unavailable (1 = every one).
RATE_KEYS = ("flex_unavailable_rate",)
# Azure's enqueued-token quota for batches (null = none): global, per model, or per deployment.
QUOTA_KEYS = ("enqueued_token_limit",)
CONFIG_KEYS = TIMING_KEYS + LENGTH_KEYS + RATE_KEYS + QUOTA_KEYS
# Settings of the whole simulator, never per model.
GLOBAL_KEYS = ("flex_models", "azure_deployments")
# Azure OpenAI deployments beyond the implicit ones (every OpenAI model is a deployment of
# itself): deployment name -> OpenAI chat or embedding model.
DEMO_DEPLOYMENTS = {
    "llmops-gpt-4o-mini": "gpt-4o-mini",
    "llmops-gpt-5-mini": "gpt-5-mini",
    "llmops-embed-small": "text-embedding-3-small",
    # The deployments llmops's demo seeds (llmops/demo.py AZURE_MODELS).
    "llmops-gpt-41-mini": "gpt-4.1-mini",
    "llmops-o4-mini": "o4-mini",
}

DEMO_CONFIG: dict[str, Any] = {
    "ttft_ms": 250,
    "tokens_per_s": 60,
    "batch_validating_s": 2,
    "batch_turnaround_s": 30,
    "batch_finalizing_s": 2,
    "batch_cancel_s": 3,
    "flex_delay_ms": 300,
    "output_tokens": None,
    "min_output_tokens": 16,
    "max_output_tokens": 256,
    "flex_unavailable_rate": 0,
    "enqueued_token_limit": None,
    "flex_models": list(FLEX_MODELS),
    "azure_deployments": dict(DEMO_DEPLOYMENTS),
}
INSTANT_CONFIG: dict[str, Any] = {**DEMO_CONFIG, **dict.fromkeys(TIMING_KEYS, 0)}


class ConfigError(ValueError):
    """A control request the simulator refuses; the message names the bad field."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Effective settings for one model: global values overlaid with its own."""

    ttft_s: float
    tokens_per_s: float
    validating_s: float
    turnaround_s: float
    finalizing_s: float
    cancel_s: float
    output_tokens: int | None
    min_output_tokens: int
    max_output_tokens: int
    flex_delay_s: float
    flex_unavailable_rate: float
    enqueued_token_limit: int | None


def _check_value(key: str, value: Any, where: str) -> None:
    if key in ("output_tokens", "enqueued_token_limit"):
        if value is not None and not (is_int(value) and value >= 1):
            raise ConfigError(f"{where}{key} must be null or an integer >= 1")
    elif key in ("min_output_tokens", "max_output_tokens"):
        if not (is_int(value) and value >= 1):
            raise ConfigError(f"{where}{key} must be an integer >= 1")
    elif key in RATE_KEYS:
        if not (is_number(value) and 0 <= value <= 1):
            raise ConfigError(f"{where}{key} must be a number between 0 and 1")
    elif not (is_number(value) and value >= 0):
        raise ConfigError(f"{where}{key} must be a number >= 0")


def _check_settings(settings: Any, where: str) -> dict[str, Any]:
    if not isinstance(settings, dict):
        raise ConfigError(f"{where or 'config'} must be an object")
    for key, value in settings.items():
        if key in GLOBAL_KEYS:
            raise ConfigError(f"{where}{key}: {key} is a global setting, not a per-model one")
        if key not in CONFIG_KEYS:
            raise ConfigError(f"unknown config key: {where}{key}")
        _check_value(key, value, where)
    return settings


class Config:
    """Global and per-model settings plus the model catalogues (chat and embedding) and
    Azure's deployments."""

    def __init__(self, start: dict[str, Any]) -> None:
        self.global_settings: dict[str, Any] = copy.deepcopy(DEMO_CONFIG)
        self.model_settings: dict[str, dict[str, Any]] = {}
        self.models: dict[str, dict[str, int]] = {
            "openai": dict(OPENAI_MODELS),
            "anthropic": dict(ANTHROPIC_MODELS),
            "gemini": dict(GEMINI_MODELS),
        }
        self.embedding_models: dict[str, EmbeddingModel] = dict(OPENAI_EMBEDDING_MODELS)
        # Each provider's embedding models; OpenAI's is `embedding_models` itself.
        self.embedding_catalogues: dict[str, dict[str, EmbeddingModel]] = {
            "openai": self.embedding_models,
            "gemini": dict(GEMINI_EMBEDDING_MODELS),
        }
        self._effective: dict[str, ModelConfig] = {}
        self.apply(start)

    def apply(self, update: dict[str, Any]) -> None:
        """Validate a whole update first, then apply it, so a 400 changes nothing."""
        if not isinstance(update, dict):
            raise ConfigError("config must be an object")
        update = copy.deepcopy(update)
        added = update.pop("add_models", None) or {}
        model = update.pop("model", None)
        per_model = update.pop("models", None) or {}
        flex_models = update.pop("flex_models", None)
        deployments = update.pop("azure_deployments", None)
        if not isinstance(added, dict):
            raise ConfigError("add_models must be an object of provider -> [model ids]")
        for provider, ids in added.items():
            if provider not in CATALOGUES:
                raise ConfigError(f"add_models: unknown provider {provider!r}")
            if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
                raise ConfigError(f"add_models.{provider} must be a list of model ids")
        if not isinstance(per_model, dict):
            raise ConfigError("models must be an object of model id -> settings")
        per_model = {
            name: dict(_check_settings(s, f"models.{name}.")) for name, s in per_model.items()
        }
        if model is not None:
            if not isinstance(model, str):
                raise ConfigError("model must be a model id")
            per_model.setdefault(model, {}).update(_check_settings(update, ""))
            update = {}
        _check_settings(update, "")
        known = {name for catalogue in self.models.values() for name in catalogue}
        for embeddings in self.embedding_catalogues.values():
            known.update(embeddings)  # their latency (ttft_ms) is tunable too
        known.update(i for ids in added.values() for i in ids)
        if deployments is not None:
            if model is not None:
                raise ConfigError("azure_deployments is a global setting: send it without model")
            openai_models = {
                *self.models["openai"],
                *self.embedding_models,
                *added.get("openai", ()),
            }
            update["azure_deployments"] = self._check_deployments(deployments, openai_models)
        # A per-model setting may name an Azure deployment (its enqueued_token_limit).
        known.update(update.get("azure_deployments", self.azure_deployments))
        for name in per_model:
            if name not in known:
                raise ConfigError(f"unknown model: {name}")
        if flex_models is not None:
            if model is not None:
                raise ConfigError("flex_models is a global setting: send it without model")
            chat = {*self.models["openai"], *added.get("openai", ())}
            update["flex_models"] = self._check_flex_models(flex_models, chat)
        merged_global = {**self.global_settings, **update}
        self._check_bounds(merged_global, "")
        for name, settings in per_model.items():
            overlay = {**merged_global, **self.model_settings.get(name, {}), **settings}
            self._check_bounds(overlay, f"models.{name}.")

        for provider, ids in added.items():
            for model_id in ids:
                self.models[provider].setdefault(model_id, ADDED_MODEL_MAX_TOKENS)
        self.global_settings = merged_global
        for name, settings in per_model.items():
            self.model_settings.setdefault(name, {}).update(settings)
        self._effective.clear()

    @staticmethod
    def _check_flex_models(value: Any, chat_models: set[str]) -> list[str]:
        """`flex_models`: the OpenAI chat models that take flex processing, the whole list."""
        if not isinstance(value, list) or not all(isinstance(i, str) and i for i in value):
            raise ConfigError("flex_models must be a list of OpenAI chat model ids")
        for name in value:
            if name not in chat_models:
                raise ConfigError(f"flex_models: unknown OpenAI chat model: {name}")
        return list(dict.fromkeys(value))

    def _check_deployments(self, value: Any, openai_models: set[str]) -> dict[str, str]:
        """`azure_deployments`: names added to (or, set to null, removed from) the table."""
        if not isinstance(value, dict):
            raise ConfigError("azure_deployments must be an object of deployment name -> model")
        merged = dict(self.azure_deployments)
        for name, target in value.items():
            if not name:
                raise ConfigError("azure_deployments: a deployment name must not be empty")
            if target is None:
                merged.pop(name, None)
            elif not isinstance(target, str) or target not in openai_models:
                raise ConfigError(
                    f"azure_deployments.{name}: {target!r} is not an OpenAI chat or embedding model"
                )
            else:
                merged[name] = target
        return merged

    @property
    def flex_models(self) -> list[str]:
        return self.global_settings["flex_models"]

    @property
    def azure_deployments(self) -> dict[str, str]:
        return self.global_settings["azure_deployments"]

    def deployment(self, name: str) -> str | None:
        """The model an Azure deployment serves: a configured one, else every OpenAI model is a
        deployment of itself."""
        found = self.azure_deployments.get(name)
        if found is None and (name in self.models["openai"] or name in self.embedding_models):
            return name
        return found

    def enqueued_token_limit(self, deployment: str, model: str) -> int | None:
        """Azure's enqueued-token quota for a deployment: its own setting, else its model's
        (which falls back to the global one)."""
        own = self.model_settings.get(deployment, {})
        if "enqueued_token_limit" in own:
            return own["enqueued_token_limit"]
        return self.for_model(model).enqueued_token_limit

    @staticmethod
    def _check_bounds(settings: dict[str, Any], where: str) -> None:
        if settings["min_output_tokens"] > settings["max_output_tokens"]:
            raise ConfigError(f"{where}min_output_tokens must be <= max_output_tokens")

    def for_model(self, model: str | None) -> ModelConfig:
        key = model or ""
        found = self._effective.get(key)
        if found is None:
            s = {**self.global_settings, **self.model_settings.get(key, {})}
            found = ModelConfig(
                ttft_s=s["ttft_ms"] / 1000,
                tokens_per_s=float(s["tokens_per_s"]),
                validating_s=float(s["batch_validating_s"]),
                turnaround_s=float(s["batch_turnaround_s"]),
                finalizing_s=float(s["batch_finalizing_s"]),
                cancel_s=float(s["batch_cancel_s"]),
                output_tokens=s["output_tokens"],
                min_output_tokens=s["min_output_tokens"],
                max_output_tokens=s["max_output_tokens"],
                flex_delay_s=s["flex_delay_ms"] / 1000,
                flex_unavailable_rate=float(s["flex_unavailable_rate"]),
                enqueued_token_limit=s["enqueued_token_limit"],
            )
            self._effective[key] = found
        return found

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.global_settings,
            "models": copy.deepcopy(self.model_settings),
            "known_models": {
                "openai": sorted([*self.models["openai"], *self.embedding_models]),
                "anthropic": sorted(self.models["anthropic"]),
                "gemini": sorted([*self.models["gemini"], *self.embedding_catalogues["gemini"]]),
                # Every deployment the Azure resource answers to, with its model.
                "azure": {
                    **{m: m for m in [*self.models["openai"], *self.embedding_models]},
                    **self.azure_deployments,
                },
            },
        }


class Clock:
    """Wall time plus an offset tests can push forward; batches and faults live on it."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def now(self) -> float:
        return time.time() + self.offset_s

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds


USAGE_FIELDS = (
    "requests",
    "input_tokens",
    "cached_input_tokens",
    "cache_creation_tokens",
    "output_tokens",
)


class UsageBook:
    """What the simulator would bill, per provider, model and mode.

    Modes: realtime (a plain answer), stream, batch, and flex (an OpenAI answer served on the
    flex tier, plain or streamed alike: it is priced apart, at flex rates).
    """

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str, str], list[int]] = {}

    def clear(self) -> None:
        self._rows.clear()

    def add(
        self,
        provider: str,
        model: str,
        mode: str,
        *,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        cache_creation_tokens: int = 0,
        requests: int = 1,
    ) -> None:
        """Record usage; `input_tokens` is the whole prompt, cached and cache writes included."""
        row = self._rows.get((provider, model, mode))
        if row is None:
            row = self._rows[(provider, model, mode)] = [0, 0, 0, 0, 0]
        row[0] += requests
        row[1] += input_tokens
        row[2] += cached_input_tokens
        row[3] += cache_creation_tokens
        row[4] += output_tokens

    def snapshot(self) -> dict[str, Any]:
        by_provider: dict[str, Any] = {provider: {} for provider in PROVIDERS}
        totals = dict.fromkeys(USAGE_FIELDS, 0)
        for (provider, model, mode), row in sorted(self._rows.items()):
            by_provider[provider].setdefault(model, {})[mode] = dict(
                zip(USAGE_FIELDS, row, strict=True)
            )
            for name, value in zip(USAGE_FIELDS, row, strict=True):
                totals[name] += value
        return {**by_provider, "totals": totals}


# `auth` is Azure's Entra ID token endpoint.
ENDPOINTS = (
    "chat",
    "messages",
    "embeddings",
    "responses",
    "files",
    "batches",
    "models",
    "auth",
    "*",
)
FAULT_KINDS = (
    "error",
    "stream_cut",
    "stream_error",
    "stall",
    "batch_fail",
    "batch_expire",
    "batch_item_error",
    "token_limit_exceeded",
)
STREAM_KINDS = ("stream_cut", "stream_error")
QUOTA_CODE = "token_limit_exceeded"
NAMED_ONLY = ("auth",)
_COMPLETIONS = ("chat", "messages")
BATCH_KINDS = ("batch_fail", "batch_expire", "batch_item_error", "token_limit_exceeded")
FAULT_KEYS = {
    "provider",
    "model",
    "endpoint",
    "kind",
    "rate",
    "seed",
    "seconds",
    "count",
    "status",
    "retry_after",
    "retry_after_ms",
    "should_retry",
    "message",
    "code",
    "error_type",
    "after_tokens",
    "stall_s",
    "after_fraction",
}


@dataclass(slots=True)
class Fault:
    id: str
    kind: str
    provider: str = "*"
    model: str = "*"
    endpoint: str = "*"
    rate: float = 1.0
    seed: int | None = None
    created_at: float = 0.0
    expires_at: float | None = None
    remaining: int | None = None
    status: int | None = None
    retry_after: float | None = None
    retry_after_ms: int | None = None
    should_retry: bool | None = None
    message: str | None = None
    code: str | None = None
    error_type: str | None = None
    after_tokens: int = 0
    stall_s: float = 1.0
    after_fraction: float = 0.5
    fired: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def active(self, now: float) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        return self.expires_at is None or now < self.expires_at

    def headers(self) -> dict[str, str]:
        """Retry hints an injected error carries (the SDKs obey them)."""
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            value = self.retry_after
            headers["retry-after"] = str(int(value)) if value == int(value) else str(value)
        if self.retry_after_ms is not None:
            headers["retry-after-ms"] = str(self.retry_after_ms)
        if self.should_retry is not None:
            headers["x-should-retry"] = "true" if self.should_retry else "false"
        return headers

    def as_json(self, now: float) -> dict[str, Any]:
        data = {
            name: getattr(self, name)
            for name in (
                "id",
                "kind",
                "provider",
                "model",
                "endpoint",
                "rate",
                "seed",
                "status",
                "retry_after",
                "retry_after_ms",
                "should_retry",
                "message",
                "code",
                "error_type",
                "after_tokens",
                "stall_s",
                "after_fraction",
                "fired",
                "remaining",
                "expires_at",
            )
        }
        data["active"] = self.active(now)
        return data


def _fault_number(body: dict[str, Any], key: str, low: float, high: float | None) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not is_number(value) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{key} must be a number {bound}")
    return float(value)


def _fault_int(body: dict[str, Any], key: str, low: int, high: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not is_int(value) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{key} must be an integer {bound}")
    return value


def parse_fault(body: Any, fault_id: str, now: float) -> Fault:
    """A validated fault from a control request body.

    Matching: provider (openai|anthropic|azure|gemini|*), model (* or an id the request
    names; for Azure its deployment or that deployment's model), endpoint
    (chat|messages|embeddings|responses|files|batches|models|auth|*; chat and messages are one,
    and Gemini's native generateContent is chat; responses apart from them), rate (0-1,
    drawn from an RNG seeded by `seed`), seconds (active for that long on the sim clock),
    count (fires that many times).
    Kinds: error (status, retry_after, retry_after_ms, should_retry, message,
    code, error_type), stream_cut / stream_error (after_tokens), stall
    (after_tokens, stall_s; delays a whole non-stream answer), batch_fail,
    batch_expire (after_fraction), batch_item_error (rate = share of items),
    token_limit_exceeded (Azure batches: the create fails validation as Azure's enqueued-token
    quota makes it, `errors.data[0].code` "token_limit_exceeded"; also what a fault with
    `code: "token_limit_exceeded"` and no kind, or kind batch_fail, is).
    """
    if not isinstance(body, dict):
        raise ConfigError("fault must be a JSON object")
    unknown = sorted(set(body) - FAULT_KEYS)
    if unknown:
        raise ConfigError(f"unknown fault field: {', '.join(unknown)}")
    status = _fault_int(body, "status", 400, 599)
    kind = body.get("kind") or ("error" if status is not None else None)
    # Azure's quota refusal by its code alone, or as a batch_fail with that code.
    if body.get("code") == QUOTA_CODE and kind in (None, "batch_fail"):
        kind = QUOTA_CODE
    if kind not in FAULT_KINDS:
        raise ConfigError(f"kind must be one of {', '.join(FAULT_KINDS)} (or give a status)")
    if kind == "error" and status is None:
        raise ConfigError("status is required for an error fault (400-599)")
    provider = body.get("provider", "*")
    if provider not in (*PROVIDERS, "*"):
        raise ConfigError("provider must be openai, anthropic, azure, gemini or *")
    model = body.get("model", "*")
    if not isinstance(model, str) or not model:
        raise ConfigError("model must be a model id or *")
    endpoint = body.get("endpoint", "*")
    if endpoint not in ENDPOINTS:
        raise ConfigError(f"endpoint must be one of {', '.join(ENDPOINTS)}")
    seed = body.get("seed")
    if seed is not None and not is_int(seed):
        raise ConfigError("seed must be an integer")
    for key in ("message", "code", "error_type"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise ConfigError(f"{key} must be a string")
    should_retry = body.get("should_retry")
    if should_retry is not None and not isinstance(should_retry, bool):
        raise ConfigError("should_retry must be true or false")
    rate = _fault_number(body, "rate", 0, 1)
    seconds = _fault_number(body, "seconds", 0, None)
    stall_s = _fault_number(body, "stall_s", 0, None)
    fraction = _fault_number(body, "after_fraction", 0, 1)
    return Fault(
        id=fault_id,
        kind=kind,
        provider=provider,
        model=model,
        endpoint=endpoint,
        rate=1.0 if rate is None else rate,
        seed=seed,
        created_at=now,
        expires_at=None if seconds is None else now + seconds,
        remaining=_fault_int(body, "count", 1),
        status=status,
        retry_after=_fault_number(body, "retry_after", 0, None),
        retry_after_ms=_fault_int(body, "retry_after_ms", 0),
        should_retry=should_retry,
        message=body.get("message"),
        code=body.get("code"),
        error_type=body.get("error_type"),
        after_tokens=_fault_int(body, "after_tokens", 0) or 0,
        stall_s=1.0 if stall_s is None else stall_s,
        after_fraction=0.5 if fraction is None else fraction,
        rng=random.Random(seed),
    )


class FaultBook:
    """Injected faults, tried in the order they were added."""

    def __init__(self) -> None:
        self.faults: dict[str, Fault] = {}

    def clear(self) -> None:
        self.faults.clear()

    def match(
        self,
        provider: str,
        endpoint: str,
        models: tuple[str, ...],
        kinds: tuple[str, ...],
        now: float,
    ) -> Fault | None:
        """The first applicable fault that fires now; firing uses up one of its `count`.

        `models` is what the request names (empty when it names none: then only
        `model: "*"` faults apply). `chat` and `messages` are the same endpoint
        for matching, so one fault can hit both dialects. A NAMED_ONLY endpoint (Entra ID
        sign-in, another service than the Azure resource) is hit only by faults naming it.
        """
        for fault in self.faults.values():
            if fault.kind not in kinds or not fault.active(now):
                continue
            if fault.provider != "*" and fault.provider != provider:
                continue
            wanted = fault.endpoint
            if endpoint in NAMED_ONLY and wanted != endpoint:
                continue
            if wanted not in ("*", endpoint) and not (
                wanted in _COMPLETIONS and endpoint in _COMPLETIONS
            ):
                continue
            if fault.model != "*" and fault.model not in models:
                continue
            # batch_item_error's rate is the share of items, decided per item later.
            if (
                fault.kind != "batch_item_error"
                and fault.rate < 1.0
                and fault.rng.random() >= fault.rate
            ):
                continue
            fault.fired += 1
            if fault.remaining is not None:
                fault.remaining -= 1
            return fault
        return None


@dataclass(slots=True)
class SimFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int
    expires_at: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": self.expires_at,
        }


FLEX_SEED = 0


class SimState:
    """The whole simulator: one per app."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.start_config: dict[str, Any] = copy.deepcopy(config) if config else dict(DEMO_CONFIG)
        self.config = Config(self.start_config)
        self.clock = Clock()
        # Draws for flex_unavailable_rate: seeded, so a run's refusals repeat after a reset.
        self.flex_rng = random.Random(FLEX_SEED)
        self.ids = Ids()
        self.usage = UsageBook()
        self.faults = FaultBook()
        self.cache = PromptCache()
        self.files: dict[str, SimFile] = {}
        self.openai_batches: dict[str, Any] = {}
        self.anthropic_batches: dict[str, Any] = {}
        # Stored OpenAI responses by id (openai_responses.StoredResponse), oldest first.
        self.responses: dict[str, Any] = {}
        # An Azure OpenAI resource keeps files, batches and responses apart from OpenAI's.
        self.azure_files: dict[str, SimFile] = {}
        self.azure_batches: dict[str, Any] = {}
        self.azure_responses: dict[str, Any] = {}
        # Gemini's File API (gemini_files.GeminiFile), unfinished resumable uploads, batches.
        self.gemini_files: dict[str, Any] = {}
        self.gemini_uploads: dict[str, Any] = {}
        self.gemini_batches: dict[str, Any] = {}
        # Signs the Entra ID tokens the simulator issues; kept across resets, so a client's
        # cached token stays good for as long as this simulator runs.
        self.token_secret = os.urandom(32)

    def reset(self) -> None:
        self.config = Config(self.start_config)
        self.clock = Clock()
        self.flex_rng = random.Random(FLEX_SEED)
        self.usage.clear()
        self.faults.clear()
        self.cache.clear()
        self.files.clear()
        self.openai_batches.clear()
        self.anthropic_batches.clear()
        self.responses.clear()
        for kept in (
            self.azure_files,
            self.azure_batches,
            self.azure_responses,
            self.gemini_files,
            self.gemini_uploads,
            self.gemini_batches,
        ):
            kept.clear()

    def fault(
        self,
        provider: str,
        endpoint: str,
        model: str | None,
        kinds: tuple[str, ...],
        *,
        also: str | None = None,
    ) -> Fault | None:
        """The fault that fires now, if any; `also` is a second name the request goes by (an
        Azure deployment's model), so a fault may name either."""
        if not self.faults.faults:
            return None
        models = tuple(name for name in (model, also) if name)
        return self.faults.match(provider, endpoint, models, kinds, self.clock.now())

    def inference_fault(
        self, provider: str, endpoint: str, body: Any, *, also: str | None = None
    ) -> Fault | None:
        """The fault, if any, for a chat, messages, embeddings or responses request: stream
        faults only hit streams."""
        if not self.faults.faults or not isinstance(body, dict):
            return None
        model = body.get("model")
        kinds = (
            ("error", "stall", *STREAM_KINDS) if body.get("stream") is True else ("error", "stall")
        )
        name = model if isinstance(model, str) else None
        return self.fault(provider, endpoint, name, kinds, also=also)

    def file(self, file_id: str, files: dict[str, SimFile] | None = None) -> SimFile | None:
        """A file of `files` (OpenAI's by default) that has not expired."""
        files = self.files if files is None else files
        found = files.get(file_id)
        if (
            found is not None
            and found.expires_at is not None
            and found.expires_at <= self.clock.now()
        ):
            del files[file_id]
            return None
        return found
