from __future__ import annotations

from django.apps import AppConfig


class LlmopsConfig(AppConfig):
    """The project: settings, URLs, the ASGI stack, the demo and the provider simulator, and
    the small infrastructure the apps share (limits, outbound calls, the memo, database
    threads)."""

    name = "llmops"
    verbose_name = "llmops"
