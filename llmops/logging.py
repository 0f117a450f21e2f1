"""Logging filters."""

from __future__ import annotations

import logging


class HealthzUnavailableIsNotAnError(logging.Filter):
    """Drop django.request's ERROR record for a 503 from /healthz.

    The endpoint answering 503 is it doing its job (a component is down, or the
    stack is still starting), and the report already says which; logging each
    poll of a load balancer as a server error would bury real ones.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        return not (
            getattr(record, "status_code", None) == 503
            and getattr(request, "path", None) == "/healthz"
        )
