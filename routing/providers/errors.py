from __future__ import annotations


class ProviderError(Exception):
    """A provider call failed.

    `retryable`: the same call may succeed if repeated (429, 5xx, connection).
    `maybe_billed`: the provider may have charged for it, so retrying could pay twice.
    """

    def __init__(
        self, message: str, *, status: int | None = None, retryable: bool, maybe_billed: bool
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.maybe_billed = maybe_billed


RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def from_status(message: str, status: int) -> ProviderError:
    # An error status before any output means no tokens were produced, so nothing was billed.
    return ProviderError(
        message, status=status, retryable=status in RETRYABLE_STATUSES, maybe_billed=False
    )
