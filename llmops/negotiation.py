"""Content negotiation for the provider-compatible APIs."""

from __future__ import annotations

from rest_framework.negotiation import DefaultContentNegotiation


class AnswerJsonWhateverAccept(DefaultContentNegotiation):
    # The SDKs ask for file content and batch results with `Accept: application/binary` and
    # take any bytes; the JSON routes must not 406 on it either.
    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type
