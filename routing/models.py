"""The ground every app stands on: tenants, keys, providers, models, workloads, requests."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from llmops import crypto, outbound
from routing.providers.types import Endpoint, Entra, Timeouts


class Team(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="teams", blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class ApiKey(models.Model):
    """A team's credential for the API. Only a hash of the secret is stored."""

    class Role(models.TextChoices):
        MEMBER = "member"
        ADMIN = "admin"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    # For clients that cannot name one (the OpenAI-compatible API without an X-Workload header).
    default_workload = models.ForeignKey(
        "Workload",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Used by the OpenAI-compatible API when a call has no X-Workload header.",
    )
    # The first characters of the key, so people can tell keys apart in lists.
    prefix = models.CharField(max_length=16, db_index=True, editable=False)
    # sha256 of the whole key. Keys carry >= 128 random bits, so a fast hash is
    # enough (no brute force to slow down), and lookups by hash stay indexable.
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["team__slug", "name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def clean(self) -> None:
        if (
            self.default_workload_id
            and self.team_id
            and self.default_workload.team_id != self.team_id
        ):
            raise ValidationError({"default_workload": "The workload belongs to another team."})

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


def validate_provider_base_url(value: str) -> None:
    """A base URL is where we send prompts and keys (a webhook URL: signed notices): http(s)
    only, no credentials, no query, and not a private address (llmops.outbound)."""
    # urlsplit drops tabs and newlines silently: a URL that holds any is refused, not cleaned.
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValidationError("Base URL must not contain spaces or control characters.")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValidationError("Base URL must start with http:// or https://.")
    if not parts.hostname:
        raise ValidationError("Base URL must name a host.")
    if parts.username or parts.password:
        raise ValidationError("Base URL must not contain credentials; use the API key field.")
    if parts.query or parts.fragment:
        raise ValidationError("Base URL must not have a query string or fragment.")
    # Where it points: no loopback, private or metadata address unless the operator allows it
    # (checked again at every connection, llmops.outbound).
    try:
        outbound.check_url(value)
    except outbound.OutboundRefused as refused:
        raise ValidationError(f"Base URL refused: {refused}.") from None


# Where an Azure OpenAI resource serves the OpenAI v1 API, under its own host.
AZURE_V1_PATH = "/openai/v1"
# Gemini's OpenAI-compatible API (realtime), under the host its native API (batches) uses.
GEMINI_OPENAI_PATH = "/v1beta/openai"
# Entra ID's token service, for Azure resources reached with tenant credentials.
ENTRA_AUTHORITY = "https://login.microsoftonline.com"


class Provider(models.Model):
    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI"
        ANTHROPIC = "anthropic", "Anthropic"
        OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible"
        AZURE_OPENAI = "azure_openai", "Azure OpenAI"
        GEMINI = "gemini", "Google Gemini"

    # Documented per-batch limits: (requests, bytes). Azure's Global Batch takes 100,000 lines
    # in a file uploaded with an expiry (llmops always sets one), 50,000 without; Gemini's
    # batch mode takes a JSONL file of up to 2 GB (it documents no line limit: ours keeps
    # one job's ingest to the size of the others').
    BATCH_LIMITS = {
        Kind.OPENAI: (50_000, 200 * 1024 * 1024),
        Kind.ANTHROPIC: (100_000, 256 * 1024 * 1024),
        Kind.OPENAI_COMPATIBLE: (50_000, 200 * 1024 * 1024),
        Kind.AZURE_OPENAI: (100_000, 200 * 1024 * 1024),
        Kind.GEMINI: (100_000, 2 * 1024 * 1024 * 1024),
    }
    # Kinds answered over OpenAI's wire protocol in realtime (Gemini through its
    # OpenAI-compatible endpoint): an OpenAI client's body is relayed to them as sent.
    OPENAI_PROTOCOL = frozenset(
        {Kind.OPENAI, Kind.OPENAI_COMPATIBLE, Kind.AZURE_OPENAI, Kind.GEMINI}
    )

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    base_url = models.CharField(
        max_length=500,
        validators=[validate_provider_base_url],
        help_text="OpenAI kinds include /v1 (https://api.openai.com/v1); "
        "Anthropic does not (https://api.anthropic.com). "
        "Azure OpenAI: the resource's URL (https://RESOURCE.openai.azure.com; /openai/v1 is "
        "added). Gemini: https://generativelanguage.googleapis.com.",
    )
    # Fernet ciphertext (llmops.crypto); never rendered back to anyone.
    api_key_encrypted = models.TextField(blank=True, editable=False)
    # Azure OpenAI without a key: an Entra ID service principal, whose tokens llmops fetches
    # (routing/providers/entra.py) and sends as a bearer token.
    azure_tenant_id = models.CharField(
        "Entra tenant id",
        max_length=100,
        blank=True,
        help_text="Azure OpenAI with Entra ID instead of a key: the directory (tenant) id.",
    )
    azure_client_id = models.CharField(
        "Entra client id",
        max_length=100,
        blank=True,
        help_text="The application (client) id of the service principal.",
    )
    azure_client_secret_encrypted = models.TextField(blank=True, editable=False)
    azure_authority = models.CharField(
        "Entra authority",
        max_length=300,
        default=ENTRA_AUTHORITY,
        blank=True,
        validators=[validate_provider_base_url],
        help_text="Where tokens are issued (sovereign clouds have their own).",
    )
    supports_batch = models.BooleanField(default=True)
    batch_max_requests = models.PositiveIntegerField(
        null=True, blank=True, help_text="Blank: the provider's documented limit."
    )
    batch_max_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Blank: the provider's documented limit."
    )
    # The router defers only when a batch is expected back before the deadline; until enough
    # batches have been observed it trusts this (real providers promise 24 h).
    expected_batch_turnaround = models.DurationField(
        default=timedelta(hours=24),
        help_text="How long a batch takes until observed turnaround says otherwise (HH:MM:SS).",
    )
    # OpenAI's flex processing (service_tier "flex"): synchronous answers at about the batch
    # price, slower, sometimes refused with a 429. Used only for models with a flex price.
    supports_flex = models.BooleanField(
        default=True,
        help_text="The provider serves OpenAI's flex tier (service_tier: flex); only models "
        "with a flex price use it.",
    )
    # The router serves a deferrable request at flex only when its deadline leaves room for
    # this (the p90 of recent flex calls replaces it once enough were observed).
    expected_flex_latency = models.DurationField(
        default=timedelta(minutes=1),
        help_text="How long a flex call takes until observed latency says otherwise (HH:MM:SS).",
    )
    enabled = models.BooleanField(default=True)
    # The half-open circuit's one probe, claimed with a conditional UPDATE (routing/circuit.py):
    # the file cache of the embedded mode has no atomic add across processes.
    circuit_probe_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        """Base URLs as each kind's users copy them from their portal, kept in one form: an
        Azure resource's URL with the v1 path, Gemini's host without its API paths."""
        url = (self.base_url or "").rstrip("/")
        if self.kind == self.Kind.AZURE_OPENAI and url and not url.endswith(AZURE_V1_PATH):
            # A path before it is kept (a gateway in front of the resource, as API Management
            # puts one); a deployment's path is the mistake of pasting a call's URL.
            if "/deployments" in urlsplit(url).path:
                raise ValidationError(
                    {
                        "base_url": "An Azure OpenAI base URL is the resource's URL "
                        "(https://RESOURCE.openai.azure.com), optionally with /openai/v1; "
                        "deployments are named per model, not in the URL."
                    }
                )
            url = url.removesuffix("/openai") + AZURE_V1_PATH
        if self.kind == self.Kind.GEMINI:
            url = url.removesuffix(GEMINI_OPENAI_PATH).removesuffix("/v1beta")
        self.base_url = url or self.base_url
        if self.kind != self.Kind.AZURE_OPENAI and (self.azure_tenant_id or self.azure_client_id):
            raise ValidationError(
                {"azure_tenant_id": "Entra ID credentials are for Azure OpenAI providers only."}
            )
        if bool(self.azure_tenant_id) != bool(self.azure_client_id):
            raise ValidationError(
                {"azure_client_id": "Entra ID needs both the tenant id and the client id."}
            )

    def set_api_key(self, plaintext: str) -> None:
        self.api_key_encrypted = crypto.encrypt(plaintext) if plaintext else ""

    def get_api_key(self) -> str:
        return crypto.decrypt(self.api_key_encrypted) if self.api_key_encrypted else ""

    def set_azure_client_secret(self, plaintext: str) -> None:
        self.azure_client_secret_encrypted = crypto.encrypt(plaintext) if plaintext else ""

    def endpoint(self) -> Endpoint:
        """Where and how to call this provider: its URL, its decrypted key, the timeouts."""
        base_url, native_url = self.base_url, ""
        if self.kind == self.Kind.GEMINI:
            # Realtime goes to the OpenAI-compatible API; batches to the native one.
            base_url, native_url = self.base_url.rstrip("/") + GEMINI_OPENAI_PATH, self.base_url
        entra = None
        if self.uses_entra:
            entra = Entra(
                authority=(self.azure_authority or ENTRA_AUTHORITY).rstrip("/"),
                tenant_id=self.azure_tenant_id,
                client_id=self.azure_client_id,
                client_secret=crypto.decrypt(self.azure_client_secret_encrypted)
                if self.azure_client_secret_encrypted
                else "",
            )
        return Endpoint(
            kind=self.kind,
            base_url=base_url,
            api_key=self.get_api_key(),
            timeouts=Timeouts(
                connect=settings.LLMOPS_PROVIDER_TIMEOUT_CONNECT,
                first_byte=settings.LLMOPS_PROVIDER_TIMEOUT_FIRST_BYTE,
                total=settings.LLMOPS_PROVIDER_TIMEOUT_TOTAL,
            ),
            native_url=native_url,
            entra=entra,
        )

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key_encrypted)

    @property
    def has_azure_client_secret(self) -> bool:
        return bool(self.azure_client_secret_encrypted)

    @property
    def uses_entra(self) -> bool:
        """An Azure resource reached with an Entra ID service principal (no key)."""
        return self.kind == self.Kind.AZURE_OPENAI and bool(self.azure_tenant_id)

    @property
    def speaks_openai(self) -> bool:
        """Answered over OpenAI's wire protocol in realtime (its bodies relayed as sent)."""
        return self.kind in self.OPENAI_PROTOCOL

    @property
    def has_responses_api(self) -> bool:
        """Serves OpenAI's Responses API itself (Gemini's OpenAI-compatible API has chat and
        embeddings only: a Responses request is translated through its chat form)."""
        return self.kind in self.OPENAI_PROTOCOL and self.kind != self.Kind.GEMINI

    @property
    def serves_flex(self) -> bool:
        """Its flex tier may be asked for: switched on, and a provider of OpenAI's own
        protocol (where `service_tier: flex` means something; Azure and Gemini sell none)."""
        return self.supports_flex and self.kind in (self.Kind.OPENAI, self.Kind.OPENAI_COMPATIBLE)

    @property
    def batch_limits(self) -> tuple[int, int]:
        default_requests, default_bytes = self.BATCH_LIMITS[self.kind]
        return (self.batch_max_requests or default_requests, self.batch_max_bytes or default_bytes)


class Tier(models.TextChoices):
    ECONOMY = "economy"
    STANDARD = "standard"
    PREMIUM = "premium"


class LlmModel(models.Model):
    """One model a provider serves. Prices live in billing, versioned."""

    class Kind(models.TextChoices):
        CHAT = "chat", "Chat (generates text: chat completions, responses, messages)"
        EMBEDDING = "embedding", "Embedding (/v1/embeddings)"

    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="models")
    model_id = models.CharField(max_length=200, help_text="The provider's id, e.g. gpt-4o-mini.")
    kind = models.CharField(
        max_length=10,
        choices=Kind.choices,
        default=Kind.CHAT,
        help_text="Which surfaces may name it: an embedding model is priced per input token only.",
    )
    tier = models.CharField(max_length=10, choices=Tier.choices, default=Tier.STANDARD)
    # Azure OpenAI serves a model under a deployment its customer named; prices, chains and
    # clients keep the model's own id.
    deployment = models.CharField(
        max_length=200,
        blank=True,
        help_text="Azure OpenAI: the deployment that serves this model (blank: the model id).",
    )
    context_window = models.PositiveIntegerField(help_text="Tokens.")
    max_output_tokens = models.PositiveIntegerField(help_text="Tokens.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["provider__slug", "model_id"]
        verbose_name = "model"
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model_id"], name="model_unique_per_provider"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider.slug}/{self.model_id}"

    @property
    def embeds(self) -> bool:
        return self.kind == self.Kind.EMBEDDING

    @property
    def batchable(self) -> bool:
        """Its provider takes batches, and batches of this kind of model: Gemini's batch mode
        runs generateContent requests only, so its embedding models answer in realtime."""
        if not self.provider.supports_batch:
            return False
        return not (self.embeds and self.provider.kind == Provider.Kind.GEMINI)

    @property
    def upstream_id(self) -> str:
        """The name the provider is called with: an Azure deployment, else the model id."""
        return self.deployment or self.model_id

    @property
    def endpoint(self) -> str:
        """The OpenAI url that serves this kind of model (a batch's lines ask it)."""
        return ENDPOINT_OF_KIND[self.kind]

    def clean(self) -> None:
        if (
            self.max_output_tokens
            and self.context_window
            and (self.max_output_tokens > self.context_window)
        ):
            raise ValidationError({"max_output_tokens": "Cannot exceed the context window."})
        if (
            self.deployment
            and self.provider_id
            and self.provider.kind != Provider.Kind.AZURE_OPENAI
        ):
            raise ValidationError(
                {"deployment": "Only Azure OpenAI serves models under deployment names."}
            )


# Which OpenAI url serves each kind of model: a surface refuses a model of another kind, and a
# provider batch's lines ask its model's url.
ENDPOINT_OF_KIND = {
    LlmModel.Kind.CHAT: "/v1/chat/completions",
    LlmModel.Kind.EMBEDDING: "/v1/embeddings",
}
# The url a batch line or a call asks -> the kind of model that answers it (the Responses API
# is another door to chat models).
KIND_OF_ENDPOINT = {
    **{url: kind for kind, url in ENDPOINT_OF_KIND.items()},
    "/v1/responses": LlmModel.Kind.CHAT,
    "/v1/messages": LlmModel.Kind.CHAT,
}


class LatencyClass(models.TextChoices):
    REALTIME = "realtime", "Realtime (a human waits)"
    NEAR_REALTIME = "near_realtime", "Near realtime (minutes)"
    SCHEDULED = "scheduled", "Scheduled (hours)"


# What a model alias may be: the characters of provider model ids.
ALIAS_RE = re.compile(r"[A-Za-z0-9._:/-]{1,100}")


class RoutingPolicy(models.Model):
    """How a workload's requests are served: the model chain, deferral, caching, budget breach."""

    class BreachAction(models.TextChoices):
        DOWNGRADE = "downgrade", "Downgrade to a cheaper tier"
        DEFER = "defer", "Defer to a batch where the deadline allows"
        REFUSE = "refuse", "Refuse the request"

    class CacheKey(models.TextChoices):
        FULL_PROMPT = "full_prompt", "The full prompt"
        # The stored value predates its meaning: every role counts (since cache key v2), the
        # instructions (system and developer messages) hashed apart from the conversation.
        USER_AND_SYSTEM_HASH = (
            "user_and_system_hash",
            "The conversation (every role) + hash of the system and developer messages",
        )

    class Escalation(models.TextChoices):
        REALTIME = "realtime", "Serve the unfinished items realtime"
        REBATCH = "rebatch", "Resubmit them in a new batch"

    class FlexFallback(models.TextChoices):
        STANDARD = "standard", "Retry the same model at the standard tier, then the chain"
        CHAIN = "chain", "Go on down the chain"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="policies")
    name = models.CharField(max_length=100)
    tier = models.CharField(
        max_length=10,
        choices=Tier.choices,
        default=Tier.STANDARD,
        help_text="Models of this tier in the chain are tried first; a soft-budget breach "
        "set to downgrade moves to the chain's models of a cheaper tier.",
    )
    fallback_across_tiers = models.BooleanField(
        default=True, help_text="After this tier's models, fall back to the chain's other models."
    )
    allow_batch = models.BooleanField(
        default=False, help_text="Requests may be deferred to a provider batch at the batch price."
    )
    allow_flex = models.BooleanField(
        default=True,
        help_text="Near-realtime and scheduled requests may be served now at OpenAI's flex "
        "tier (about the batch price, slower) when the model has a flex price and the "
        "deadline leaves room: when a batch would be too slow, or flex costs no more.",
    )
    on_flex_unavailable = models.CharField(
        max_length=10,
        choices=FlexFallback.choices,
        default=FlexFallback.STANDARD,
        help_text="When flex is refused (a 429: no capacity), what serves the request; it "
        "is billed at what served it.",
    )
    max_batch_wait_seconds = models.PositiveIntegerField(
        default=600, help_text="How long a deferred request may wait in the buffer before a flush."
    )
    deadline_margin = models.DurationField(
        default=timedelta(minutes=5),
        help_text="Safety margin kept before a deadline when deferring or escalating (HH:MM:SS).",
    )
    on_deadline_risk = models.CharField(
        max_length=10,
        choices=Escalation.choices,
        default=Escalation.REALTIME,
        help_text="What happens to batch items that would miss their deadline.",
    )
    cache_enabled = models.BooleanField(
        default=False, help_text="Answer a repeated request from the response cache."
    )
    cache_ttl = models.DurationField(default=timedelta(hours=1), help_text="HH:MM:SS.")
    cache_key = models.CharField(
        max_length=24, choices=CacheKey.choices, default=CacheKey.FULL_PROMPT
    )
    soft_breach_action = models.CharField(
        max_length=10,
        choices=BreachAction.choices,
        default=BreachAction.DOWNGRADE,
        help_text="What a request does when a soft budget it touches is over its limit.",
    )
    chain = models.ManyToManyField(LlmModel, through="PolicyModel", related_name="+", blank=True)
    model_aliases = models.CharField(
        max_length=200,
        default="auto",
        blank=True,
        help_text="Comma-separated model names an OpenAI-compatible client may send to mean "
        "“this policy's chain, with its fallbacks” (naming the primary does the same; naming "
        "another model of the chain pins that model).",
    )
    allow_any_model = models.BooleanField(
        default=False,
        help_text="Clients may name any enabled model, not only the chain's (it is served "
        "alone, without fallback).",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["team__slug", "name"]
        verbose_name_plural = "routing policies"
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="policy_name_unique_per_team")
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def max_batch_wait(self) -> timedelta:
        return timedelta(seconds=self.max_batch_wait_seconds)

    @property
    def aliases(self) -> frozenset[str]:
        return frozenset(a.strip() for a in self.model_aliases.split(",") if a.strip())

    def clean(self) -> None:
        if self.cache_ttl is not None and self.cache_ttl.total_seconds() <= 0:
            raise ValidationError({"cache_ttl": "The cache TTL must be positive."})
        bad = [a for a in self.aliases if not ALIAS_RE.fullmatch(a)]
        if bad:
            raise ValidationError(
                {"model_aliases": f"Not a model name: {bad[0]!r} (letters, digits, . _ : / -)."}
            )


class PolicyModel(models.Model):
    """One link of a policy's model chain: position 0 is the primary, the rest fall back."""

    policy = models.ForeignKey(RoutingPolicy, on_delete=models.CASCADE, related_name="links")
    model = models.ForeignKey(LlmModel, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["policy", "position"]
        verbose_name = "model in chain"
        verbose_name_plural = "model chain"
        constraints = [
            models.UniqueConstraint(fields=["policy", "model"], name="chain_model_once"),
        ]

    def __str__(self) -> str:
        return f"#{self.position} {self.model_id}"

    def clean(self) -> None:
        if self.model_id and not self.model.enabled:
            raise ValidationError({"model": f"{self.model} is disabled."})
        if self.model_id and not self.model.provider.enabled:
            raise ValidationError({"model": f"{self.model}'s provider is disabled."})


class Workload(models.Model):
    """A named AI feature of a team, with the latency it can tolerate."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="workloads")
    slug = models.SlugField()
    description = models.TextField(blank=True)
    latency_class = models.CharField(max_length=16, choices=LatencyClass.choices)
    deadline = models.DurationField(
        null=True,
        blank=True,
        help_text="How long after arrival the answer must exist (HH:MM:SS). "
        "Required for near-realtime and scheduled workloads.",
    )
    policy = models.ForeignKey(RoutingPolicy, on_delete=models.PROTECT, related_name="workloads")
    # Told when a batch job with this workload's requests ends: a POST signed with the secret.
    batch_webhook_url = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_provider_base_url],
        help_text="Optional: POSTed a signed JSON notice when a batch job with this workload's "
        "requests ends (X-Llmops-Signature: sha256=HMAC of timestamp.body).",
    )
    # Fernet ciphertext of the signing secret (llmops.crypto), like a provider key.
    batch_webhook_secret_encrypted = models.TextField(blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["team__slug", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["team", "slug"], name="workload_slug_unique_per_team")
        ]

    def __str__(self) -> str:
        return self.slug

    def set_webhook_secret(self, plaintext: str) -> None:
        self.batch_webhook_secret_encrypted = crypto.encrypt(plaintext) if plaintext else ""

    def get_webhook_secret(self) -> str:
        if not self.batch_webhook_secret_encrypted:
            return ""
        return crypto.decrypt(self.batch_webhook_secret_encrypted)

    def clean(self) -> None:
        errors = {}
        if self.policy_id and self.team_id and self.policy.team_id != self.team_id:
            errors["policy"] = "The policy belongs to another team."
        if self.latency_class != LatencyClass.REALTIME and not self.deadline:
            errors["deadline"] = "Near-realtime and scheduled workloads need a deadline."
        if self.deadline is not None and self.deadline.total_seconds() <= 0:
            errors["deadline"] = "The deadline must be positive."
        elif "policy" not in errors and (why := self._deadline_too_short_to_defer()):
            errors["deadline"] = why
        if errors:
            raise ValidationError(errors)

    def _deadline_too_short_to_defer(self) -> str:
        """Why a deferrable workload's deadline can never be met by a batch, or ''."""
        if (
            self.latency_class == LatencyClass.REALTIME
            or not self.deadline
            or not self.policy_id
            or not self.policy.allow_batch
        ):
            return ""
        quickest = min(
            (
                link.model.provider.expected_batch_turnaround
                for link in self.policy.links.select_related("model__provider")
                if link.model.batchable
            ),
            default=None,
        )
        if quickest is None:
            return "The policy allows batch but no model in its chain has a batch-capable provider."
        needed = self.policy.max_batch_wait + quickest + self.policy.deadline_margin
        if self.deadline < needed:
            return (
                f"Too short to defer: a batch needs up to {needed} (buffer wait "
                f"{self.policy.max_batch_wait} + turnaround {quickest} + margin "
                f"{self.policy.deadline_margin}). Lengthen the deadline or disallow batch."
            )
        return ""


class Mode(models.TextChoices):
    """How a request was served, and so which price its ledger entries bear."""

    REALTIME = "realtime"
    STREAM = "stream"
    BATCH = "batch"
    CACHE = "cache"
    FLEX = "flex"  # served now at OpenAI's flex tier, at its own price


class Request(models.Model):
    """One unit of work sent by a client: what it asked, how it was routed, what it cost."""

    class Status(models.TextChoices):
        RECEIVED = "received"
        QUEUED = "queued"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Source(models.TextChoices):
        NATIVE = "native", "Native API"
        OPENAI = "openai", "OpenAI-compatible API"
        WEBSOCKET = "websocket", "Websocket"
        ANTHROPIC = "anthropic", "Anthropic-compatible API"
        BATCH_API = "batch_api", "Client batch API (OpenAI or Anthropic)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="requests")
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="requests"
    )
    # The person behind a browser session (the playground); requests from keys have none.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="llm_requests",
    )
    workload = models.ForeignKey(Workload, on_delete=models.PROTECT, related_name="requests")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.NATIVE)
    # What the client asked for: messages, max_tokens, temperature, model override, stream.
    params = models.JSONField(default=dict)
    metadata = models.JSONField(default=dict, blank=True)
    # A retried POST with the same key and body is the same request (answered again).
    # NULL, not "": the unique constraint must ignore requests sent without a key.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    body_hash = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    mode = models.CharField(max_length=10, choices=Mode.choices, blank=True)
    decision_reason = models.TextField(blank=True)
    # Deferrable (latency class and policy allow a batch) but served now at full price.
    missed_saving = models.BooleanField(default=False)
    # What was asked, whatever the cache setting (routing.response_cache.prompt_fingerprint):
    # the workload audit counts repeats by it, to say what a cache would save.
    prompt_fingerprint = models.CharField(max_length=64, blank=True)
    # The policy's response cache was consulted (hit or miss): the hit rate's denominator.
    cache_lookup = models.BooleanField(default=False)
    model = models.ForeignKey(
        LlmModel, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )  # the model that answered
    output = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=20, blank=True)
    # The whole answer in OpenAI's chat.completion shape without its usage (which has its
    # own column): every choice with its tool calls, refusal and logprobs, and the
    # provider's id, model and system_fingerprint. `output` is choice 0's text.
    answer = models.JSONField(default=dict, blank=True)
    # Token counts as billed: input (uncached), cached_input, cache_write, output, reasoning.
    usage = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)  # received
    started_at = models.DateTimeField(null=True, blank=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # When the client first read the result: the workload audit compares it with the deadline.
    first_read_at = models.DateTimeField(null=True, blank=True)
    # Every status change bumps it (see routing.events): websocket subscribers that missed a
    # push (another process without a shared channel layer) catch up by it.
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["team", "-created_at"], name="request_team_recent"),
            models.Index(fields=["team", "updated_at"], name="request_team_changed"),
            models.Index(fields=["status", "created_at"], name="request_status_age"),
            models.Index(
                fields=["workload", "prompt_fingerprint", "created_at"],
                name="request_repeats",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="request_idempotency_key_per_team",
            )
        ]

    def __str__(self) -> str:
        return f"req_{self.id.hex}"

    @staticmethod
    def hash_body(body: dict) -> str:
        """A stable fingerprint of what was asked, to tell a retry from a different request."""
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


class RequestAttempt(models.Model):
    """One call to a provider on behalf of a request (the primary, then each fallback)."""

    class Outcome(models.TextChoices):
        OK = "ok"
        ERROR = "error"
        SKIPPED = "skipped"  # circuit open: not called

    request = models.ForeignKey(Request, on_delete=models.CASCADE, related_name="attempts")
    position = models.PositiveSmallIntegerField()
    model = models.ForeignKey(LlmModel, on_delete=models.PROTECT, related_name="+")
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    error_kind = models.CharField(max_length=30, blank=True)
    error = models.CharField(max_length=500, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # The provider's service tier asked for ("flex"), blank for its default: the router plans
    # flex with the p90 latency of recent flex attempts.
    service_tier = models.CharField(max_length=10, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    first_byte_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["request", "position"]
        constraints = [
            models.UniqueConstraint(fields=["request", "position"], name="attempt_position_once")
        ]
        indexes = [
            # The recent flex calls of a model (routing.selectors.expected_flex_latency).
            models.Index(fields=["model", "service_tier", "started_at"], name="attempt_tier_recent")
        ]

    def __str__(self) -> str:
        return f"#{self.position} {self.model} {self.outcome}"


class StoredResponse(models.Model):
    """A Responses API answer a client may name again: read it (GET /v1/responses/{id}),
    delete it, or continue from it (`previous_response_id`). A response relayed from an
    OpenAI-protocol provider keeps the provider's id, and its provider holds the conversation;
    one a Claude model answered has an id of llmops' own, and llmops rebuilds the
    conversation from `previous` when it is continued. Either way a continuation must be
    served by the same provider."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    response_id = models.CharField(max_length=200)  # resp_…, as the client saw it
    request = models.ForeignKey(Request, on_delete=models.CASCADE, related_name="+")
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="+")
    previous = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "response_id"], name="response_id_per_team")
        ]

    def __str__(self) -> str:
        return self.response_id
