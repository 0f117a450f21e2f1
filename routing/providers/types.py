"""The small dataclasses the provider adapters take and return (no Django, no SDK types)."""

from __future__ import annotations

from dataclasses import dataclass, field

from billing.pricing import Usage


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0  # seconds to establish the connection
    first_byte: float = 60.0  # seconds to the first streamed event (and between events)
    total: float = 600.0  # seconds for the whole call


@dataclass(frozen=True)
class Entra:
    """An Entra ID service principal an Azure OpenAI resource is reached with (no key)."""

    authority: str  # https://login.microsoftonline.com
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)


@dataclass(frozen=True)
class Endpoint:
    kind: str  # openai | anthropic | openai_compatible | azure_openai | gemini
    base_url: str  # the OpenAI-protocol base (Gemini: its OpenAI-compatible API)
    api_key: str = field(repr=False)
    timeouts: Timeouts = field(default_factory=Timeouts)
    native_url: str = ""  # Gemini: the host of its native API (batch mode, files)
    entra: Entra | None = None  # Azure OpenAI reached with Entra ID tokens instead of a key


@dataclass(frozen=True)
class ChatRequest:
    model: str  # the provider's model id
    # OpenAI shape: [{"role": ..., "content": str | [{"type": "text", "text": ...}]}]
    messages: list[dict]
    max_tokens: int
    temperature: float | None = None
    # Every other field of the client's OpenAI body (routing.protocols.openai_chat), as sent:
    # relayed untouched to an OpenAI-protocol provider, translated for another.
    options: dict = field(default_factory=dict)
    # Send max_tokens upstream when `options` set no limit: llmops' own doors always bound an
    # answer; an OpenAI client's body goes up with the limit it set, or none.
    send_max_tokens: bool = True
    # What is asked: "chat"; "embeddings", "responses" or "messages" (an Anthropic Messages
    # body): options then hold the client's whole body but its model; no messages.
    kind: str = "chat"
    # The client's protocol headers relayed with its body (anthropic-version, anthropic-beta).
    headers: dict = field(default_factory=dict)
    # A Responses conversation llmops holds (a translated `previous_response_id`): the
    # earlier turns as Responses items, oldest first.
    history: tuple = ()
    # OpenAI's service_tier llmops asks for on top of the client's body ("flex": the router
    # chose the flex lane); None leaves the body's own.
    service_tier: str | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # OpenAI's vocabulary: stop | length | content_filter | tool_calls
    usage: Usage
    model: str
    provider_request_id: str | None = None
    # The whole answer in OpenAI's chat.completion shape, usage apart (openai_chat answers); a
    # relayed one in its own protocol's (a Response, an embeddings list, an Anthropic Message).
    answer: dict = field(default_factory=dict)
    # The provider's own answer when `answer` is its translation (a Claude batch result): an
    # Anthropic client's batch returns it as the provider sent it.
    native: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Delta:
    """A piece of a streamed answer, as it arrived: choice 0's new text (maybe none: a tool
    call's piece, another choice, the finish reason) and, from a relay, the event's bytes as
    the provider sent them."""

    text: str
    raw: bytes | None = None
    # From a translated stream: choice 0's delta in OpenAI's shape ({"content": ...} or
    # {"tool_calls": [...]}), for an OpenAI client's chunk.
    openai: dict | None = None
    # The stream's closing event (a Responses stream's `response.completed`, which carries the
    # usage): the view sends it only once the answer is billed.
    last: bool = False


# --- provider batches -------------------------------------------------------------------
# Statuses in OpenAI's vocabulary, whichever provider: Anthropic's `ended` becomes completed,
# cancelled or expired from its counts.
BATCH_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True)
class BatchInfo:
    id: str
    status: str  # validating | in_progress | finalizing | cancelling | + BATCH_ENDED
    created_at: float  # unix seconds
    total: int = 0
    completed: int = 0  # answered (2xx / succeeded)
    failed: int = 0  # errored, expired or cancelled so far
    output_file_id: str | None = None  # OpenAI
    error_file_id: str | None = None  # OpenAI
    metadata: dict = field(default_factory=dict)
    errors: tuple[str, ...] = ()  # why the provider refused the whole batch (OpenAI `failed`)
    # Refused whole for a queue quota (token_limit_exceeded: Azure's enqueued tokens per
    # deployment, OpenAI's per organisation): nothing ran; the same file may go again later.
    quota_refused: bool = False

    @property
    def ended(self) -> bool:
        return self.status in BATCH_ENDED


@dataclass(frozen=True)
class BatchOutcome:
    """One line of a batch's results. `outcome`: succeeded | errored | expired | cancelled |
    invalid (a result we cannot trust: no or negative usage, an unreadable body)."""

    custom_id: str
    outcome: str
    completion: Completion | None = None
    error: str = ""


def stored(outcome: BatchOutcome, unstorable: str) -> BatchOutcome:
    """`outcome`, quarantined as invalid if it answered and its line held `unstorable` (a
    NaN or an infinity, see llmops.fastjson.stored_line_loads): its answer can be neither
    kept (PostgreSQL refuses the row, and so the chunk's transaction on every retry) nor
    returned as JSON, and is not silently changed either."""
    if not unstorable or outcome.outcome != "succeeded":
        return outcome
    error = f"unreadable result: {unstorable} is not a number JSON can carry"
    return BatchOutcome(outcome.custom_id, "invalid", error=error)
