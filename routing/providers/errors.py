from __future__ import annotations


class ProviderError(Exception):
    """A provider call failed.

    `retryable`: the same call may succeed if repeated (429, 5xx, connection).
    `maybe_billed`: the provider may have charged for it, so retrying could pay twice.
    `after_first_byte`: a stream had already produced output, so no other model can take over.
    `kind`: a short code (rate_limited, server_error, timeout_first_byte, stream_cut, ...).
    `definitive`: the provider refused the request itself (a 4xx on its content): another
    model would refuse it alike, so the client gets this answer, not a fallback's.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool,
        maybe_billed: bool,
        after_first_byte: bool = False,
        kind: str = "error",
        body: dict | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        # The provider's own error object (its protocol's envelope), passed on to a client of
        # the same protocol; and how long it asked us to wait (seconds), if it said.
        self.body = body
        self.retry_after = retry_after
        self.retryable = retryable
        self.maybe_billed = maybe_billed
        self.after_first_byte = after_first_byte
        self.kind = kind

    @property
    def definitive(self) -> bool:
        return self.status in DEFINITIVE_STATUSES and not self.after_first_byte


def stream_cut(message: str, *, after_first_byte: bool) -> ProviderError:
    """A stream that broke off before its usage arrived: the provider may have billed what it
    produced, so it is never retried."""
    return ProviderError(
        message,
        retryable=True,
        maybe_billed=True,
        after_first_byte=after_first_byte,
        kind="stream_cut",
    )


RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
KIND_BY_STATUS = {
    400: "bad_request",
    401: "auth",
    403: "auth",
    404: "not_found",
    408: "timeout",
    413: "too_large",
    422: "bad_request",
    429: "rate_limited",
    529: "overloaded",
}


# Refusals of the request's content: the client's to see (auth errors are llmops' own
# credentials, so another provider may still serve; 404 is a model the provider lacks).
DEFINITIVE_STATUSES = frozenset({400, 413, 422})
# A provider busy rather than broken: the chain may answer 429/503 with Retry-After.
BUSY_KINDS = frozenset({"rate_limited", "overloaded"})


def from_status(
    message: str,
    status: int,
    *,
    body: dict | None = None,
    headers=None,
) -> ProviderError:
    # An error status before any output means no tokens were produced, so nothing was billed.
    kind = KIND_BY_STATUS.get(status) or ("server_error" if status >= 500 else "client_error")
    if status == 503:
        kind = "overloaded"
    return ProviderError(
        message,
        status=status,
        retryable=status in RETRYABLE_STATUSES,
        maybe_billed=False,
        kind=kind,
        body=body if isinstance(body, dict) else None,
        retry_after=retry_after_of(headers),
    )


def retry_after_of(headers) -> float | None:
    """Seconds a response asked to wait: `retry-after-ms`, else `retry-after` in seconds (the
    HTTP-date form is rare from these APIs and is ignored)."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return None
