from __future__ import annotations

from django.apps import AppConfig


class RoutingConfig(AppConfig):
    """Teams, keys, workloads and policies, and the front door that routes each request."""

    name = "routing"

    def ready(self) -> None:
        # Websockets re-read their credentials when a key, a session or a user changes
        # (routing.socket_auth): the one use of signals here, because the writers (the admin,
        # Django's auth views, any save of a User) are not ours to call a service from.
        from django.contrib.admin.models import LogEntry
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_out
        from django.contrib.sessions.models import Session
        from django.db.models.signals import post_delete, post_save

        from llmops import memo
        from routing import keys, socket_auth
        from routing.models import (
            ApiKey,
            LlmModel,
            PolicyModel,
            Provider,
            RoutingPolicy,
            Team,
            Workload,
        )

        # The configuration every request reads is memoized per process (llmops.memo); a team
        # too (its API keys name it).
        memo.watch(Provider, LlmModel, RoutingPolicy, PolicyModel, Workload, Team)

        uid = "routing.socket_auth."
        post_save.connect(socket_auth.api_key_saved, sender=ApiKey, dispatch_uid=uid + "key")
        post_delete.connect(
            socket_auth.api_key_deleted, sender=ApiKey, dispatch_uid=uid + "key-deleted"
        )
        post_save.connect(socket_auth.admin_logged, sender=LogEntry, dispatch_uid=uid + "admin")
        post_save.connect(
            socket_auth.user_saved, sender=get_user_model(), dispatch_uid=uid + "user"
        )
        post_delete.connect(
            socket_auth.session_deleted, sender=Session, dispatch_uid=uid + "session"
        )
        user_logged_out.connect(socket_auth.user_logged_out, dispatch_uid=uid + "logout")
        keys.key_revoked.connect(socket_auth.api_key_revoked, dispatch_uid=uid + "key-revoked")
