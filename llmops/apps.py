from __future__ import annotations

from django.apps import AppConfig


class LlmopsConfig(AppConfig):
    """The project: settings, URLs, the ASGI stack, the demo and the provider simulator, and
    the small infrastructure the apps share (limits, outbound calls, the memo, database
    threads)."""

    name = "llmops"
    verbose_name = "llmops"

    def ready(self) -> None:
        from asgiref.local import Local
        from django.core.cache import caches

        # Django keeps a cache object per async context (asgiref's Local), for memcached
        # clients that must not be shared. Every unit of the serving path runs in a database
        # thread under its request's context, so each built its cache objects anew (their
        # settings parsed) on every lookup of the memo's token, the circuits, the throttle and
        # the response cache: ~4% of a realtime request's CPU on the embedded cache, and with
        # Redis a new connection pool, so a new connection, per unit. One object per thread,
        # as Django had before ASGI: every backend llmops configures (its SQLite file, Redis,
        # local memory) may be used by one thread at a time or shared outright.
        caches._connections = Local(thread_critical=True)
