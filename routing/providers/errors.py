from __future__ import annotations


class ProviderError(Exception):
    """A provider call failed.

    `retryable`: the same call may succeed if repeated (429, 5xx, connection).
    `maybe_billed`: the provider may have charged for it, so retrying could pay twice.
    `after_first_byte`: a stream had already produced output, so no other model can take over.
    `kind`: a short code (rate_limited, server_error, timeout_first_byte, stream_cut, ...).
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
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.maybe_billed = maybe_billed
        self.after_first_byte = after_first_byte
        self.kind = kind


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


def from_status(message: str, status: int) -> ProviderError:
    # An error status before any output means no tokens were produced, so nothing was billed.
    kind = KIND_BY_STATUS.get(status) or ("server_error" if status >= 500 else "client_error")
    return ProviderError(
        message,
        status=status,
        retryable=status in RETRYABLE_STATUSES,
        maybe_billed=False,
        kind=kind,
    )
