"""Websockets hold their credentials no longer than REST does, and no caller holds too many.

A socket is authenticated at its handshake (routing.consumers) and then lives for hours, so a
revoked key or an ended browser session must close it. Three paths do it, fastest first:

1. In the process that commits the change, a signal (connected in routing.apps) flags the
   sockets of that credential revoked *synchronously*, in the committing thread, before its
   HTTP response leaves: their send path checks the flag, so nothing is sent after the commit.
   Then each is closed on its event loop. Signals: ApiKey saved revoked or deleted, an admin
   log entry about a key (the admin's revoke action writes the key with a queryset update,
   which sends no post_save), `user_logged_out`, a Session row deleted, and a User saved with
   a new password or deactivated (then each of that user's sessions is re-read). The session
   that changed its own password is closed too: Django moves it to a new session key
   (update_session_auth_hash cycles it), and the browser reconnects on its new cookie.
2. The same handler sends a channel-layer group message (a group per credential) that makes
   every other daphne process re-read that credential for its own sockets (Redis layer only:
   the in-memory layer of the embedded mode reaches no other process).
3. A process-wide re-read every LLMOPS_WS_AUTH_RECHECK_SECONDS, one query for all keys and
   one session read per browser session, catches what no signal reports: a revocation by a
   management command or a worker, a session that expired, a queryset update elsewhere.

Every message a socket receives also re-reads its credential before it is handled, so a
`start` or `subscribe` after a revocation is refused whichever process committed it.

Close codes (daphne lets an application send only 1000 and 3000-4999):
- 4401: the credentials ended. Nothing precedes it, not even an error message: the code is
  the reason. A stream in flight is then treated as a client that left (settled and billed
  by routing.consumers' disconnect path).
- 4008: policy: the socket kept sending past its rate, or its caller has
  LLMOPS_WS_MAX_SOCKETS_PER_CALLER sockets open already. An error message says which first.
- 4009: a message over LLMOPS_WS_MAX_MESSAGE_BYTES (after an error message). Under daphne,
  autobahn fails such a frame with 1009 before reading it (llmops.websocket), and a socket
  with too many unread messages with 1008.

The per-caller cap counts sockets per API key and per user across processes: each process
writes its own count per caller into the "throttle" cache (Redis when scaled, this process's
memory on the embedded single daphne) as a lease it renews every re-read and that lapses if the
process dies. Its own count is exact; other processes' are up to one re-read old, so two
processes admitting at once may pass the cap by a socket or two.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from importlib import import_module
from types import SimpleNamespace
from typing import Any, Protocol

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user
from django.core.cache import caches
from django.db import transaction

from llmops.dbthreads import db
from routing.auth import KeyPrincipal
from routing.keys import api_key_active
from routing.models import ApiKey

log = logging.getLogger(__name__)

CLOSE_CREDENTIALS_ENDED = 4401
CLOSE_POLICY = 4008
CLOSE_TOO_LARGE = 4009

EVENT_TYPE = "credentials.changed"  # the consumers' handler is credentials_changed()
# This process in the per-caller counts (pid alone could repeat across machines).
PROCESS = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Credential:
    """What a socket authenticated with: an API key, or a browser session of a user."""

    key_id: int | None = None
    session_key: str | None = None
    user_id: int | None = None

    @property
    def caller(self) -> str:
        """Whom the socket cap counts: the key, or the person across their sessions."""
        return f"key-{self.key_id}" if self.key_id is not None else f"user-{self.user_id}"

    @property
    def registry_keys(self) -> tuple[tuple[str, Any], ...]:
        if self.key_id is not None:
            return (("key", self.key_id),)
        return (("session", self.session_key), ("user", self.user_id))


class Socket(Protocol):
    credential: Credential

    def revoke(self) -> None: ...


def group_name(kind: str, ident: Any) -> str:
    # Session keys are secrets: a group name ends up in Redis and its logs, so only a digest.
    if kind == "session":
        ident = hashlib.sha256(str(ident).encode()).hexdigest()[:32]
    return f"llmops.auth.{kind}.{ident}"


def groups_of(credential: Credential) -> list[str]:
    return [group_name(kind, ident) for kind, ident in credential.registry_keys]


# --- the registry of this process's sockets ---------------------------------------------
# Written on the event loop, read by signal handlers in other threads: hence the lock.

_lock = threading.Lock()
_sockets: dict[tuple[str, Any], set[Socket]] = {}
_rechecks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> task
_counted: set[str] = set()  # callers this process has a count for in the cache


def register(socket: Socket) -> int:
    """Add `socket`; returns how many sockets its caller has open in this process, with it."""
    with _lock:
        for key in socket.credential.registry_keys:
            _sockets.setdefault(key, set()).add(socket)
        count = _local_count(socket.credential)
    loop = asyncio.get_running_loop()
    task = _rechecks.get(loop)
    if task is None or task.done():
        _rechecks[loop] = loop.create_task(_recheck_forever())
    return count


def unregister(socket: Socket) -> None:
    with _lock:
        for key in socket.credential.registry_keys:
            found = _sockets.get(key)
            if found is not None:
                found.discard(socket)
                if not found:
                    del _sockets[key]


def _local_count(credential: Credential) -> int:
    key = (
        ("key", credential.key_id)
        if credential.key_id is not None
        else ("user", credential.user_id)
    )
    return len(_sockets.get(key, ()))


def _sockets_of(kind: str, ident: Any) -> list[Socket]:
    with _lock:
        return list(_sockets.get((kind, ident), ()))


def _all_sockets() -> list[Socket]:
    with _lock:
        return list({s for found in _sockets.values() for s in found})


# --- reading a credential again --------------------------------------------------------


def principal_for(credential: Credential) -> Any | None:
    """The socket's principal read afresh (a KeyPrincipal or a User), or None if its key is
    revoked, or its session is gone, expired, of an inactive user or of an older password."""
    if credential.key_id is not None:
        key = api_key_active(key_id=credential.key_id)
        return None if key is None else KeyPrincipal(key)
    if credential.session_key is None:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(credential.session_key)
    # Django's own check, as for every HTTP request: the session exists and has not expired,
    # its user is active (ModelBackend) and its auth hash matches the password.
    user = get_user(SimpleNamespace(session=store))
    if not user.is_authenticated or user.pk != credential.user_id:
        return None
    return user


def _invalid(sockets: list[Socket]) -> list[Socket]:
    """Those of `sockets` whose credentials ended: one query for every key, one read per
    browser session (a user rarely has more than a few)."""
    key_ids = {s.credential.key_id for s in sockets if s.credential.key_id is not None}
    live_keys = set(
        ApiKey.objects.filter(pk__in=key_ids, revoked_at__isnull=True).values_list("pk", flat=True)
    )
    sessions: dict[Credential, bool] = {}
    invalid = []
    for socket in sockets:
        credential = socket.credential
        if credential.key_id is not None:
            valid = credential.key_id in live_keys
        else:
            if credential not in sessions:
                sessions[credential] = principal_for(credential) is not None
            valid = sessions[credential]
        if not valid:
            invalid.append(socket)
    return invalid


async def _recheck_forever() -> None:
    """Every LLMOPS_WS_AUTH_RECHECK_SECONDS while this loop has sockets: close those whose
    credentials ended, and renew this process's socket counts."""
    while True:
        await asyncio.sleep(settings.LLMOPS_WS_AUTH_RECHECK_SECONDS)
        sockets = _all_sockets()
        try:
            for socket in await db(_invalid, sockets) if sockets else []:
                socket.revoke()
            await db(_publish_counts)
        except Exception:
            # A database or cache outage must not end the re-reads for good.
            log.exception("websocket credential re-read failed")
        if not sockets:
            _rechecks.pop(asyncio.get_running_loop(), None)
            return


# --- sockets per caller ------------------------------------------------------------------


def _lease_seconds() -> int:
    return 3 * settings.LLMOPS_WS_AUTH_RECHECK_SECONDS + 5


def _count_key(caller: str) -> str:
    return f"llmops:ws:sockets:{caller}"


def claim_slot(credential: Credential, local: int) -> bool:
    """Whether a caller with `local` sockets in this process (the new one included) stays
    within LLMOPS_WS_MAX_SOCKETS_PER_CALLER counting other processes' sockets; if so, this
    process's count is written. Cache only, no database."""
    store, key, now = caches["throttle"], _count_key(credential.caller), time.time()
    counts = {
        process: (n, expires)
        for process, (n, expires) in (store.get(key) or {}).items()
        if expires > now and process != PROCESS
    }
    if local + sum(n for n, _ in counts.values()) > settings.LLMOPS_WS_MAX_SOCKETS_PER_CALLER:
        return False
    counts[PROCESS] = (local, now + _lease_seconds())
    store.set(key, counts, timeout=_lease_seconds())
    _counted.add(credential.caller)
    return True


def _publish_counts() -> None:
    """Renew this process's count of each caller (and drop those now at zero)."""
    store, now = caches["throttle"], time.time()
    with _lock:
        local: dict[str, int] = {}
        for (kind, ident), found in _sockets.items():
            if kind != "session":
                local[f"{kind}-{ident}"] = len(found)
    for caller in _counted | set(local):
        key = _count_key(caller)
        counts = {p: v for p, v in (store.get(key) or {}).items() if v[1] > now and p != PROCESS}
        if local.get(caller):
            counts[PROCESS] = (local[caller], now + _lease_seconds())
        if counts:
            store.set(key, counts, timeout=_lease_seconds())
        else:
            store.delete(key)
    _counted.clear()
    _counted.update(local)


# --- reacting to a change ----------------------------------------------------------------


def credentials_changed(kind: str, ident: Any, *, ended: bool) -> None:
    """Close this process's sockets of credential (`kind`, `ident`) that no longer hold
    (all of them if `ended`), then tell the other processes to re-read theirs. Runs in the
    thread that committed the change: the flags are set before it goes on."""
    sockets = _sockets_of(kind, ident)
    if sockets:
        invalid = sockets if ended else _invalid(sockets)
        for socket in invalid:
            socket.revoke()
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group_name(kind, ident), {"type": EVENT_TYPE})
    except Exception:
        # The re-read every few seconds still closes the other processes' sockets.
        log.warning("could not announce a credential change to other processes")


def on_commit_changed(kind: str, ident: Any, *, ended: bool) -> None:
    transaction.on_commit(lambda: credentials_changed(kind, ident, ended=ended))


# Signal receivers (connected in routing.apps.RoutingConfig.ready). They only decide which
# credential to re-read; the re-read itself decides.


def api_key_saved(sender, instance: ApiKey, created: bool, **kwargs) -> None:
    if not created and instance.revoked_at is not None:
        on_commit_changed("key", instance.pk, ended=True)


def api_key_revoked(sender, key: ApiKey, **kwargs) -> None:
    """routing.keys.api_key_revoke, after its commit (sent from on_commit)."""
    credentials_changed("key", key.pk, ended=True)


def api_key_deleted(sender, instance: ApiKey, **kwargs) -> None:
    on_commit_changed("key", instance.pk, ended=True)


def admin_logged(sender, instance, created: bool, **kwargs) -> None:
    """The admin's revoke action updates keys with a queryset update (no post_save) and then
    writes a log entry per key: re-read the keys it names."""
    if not created or instance.content_type is None:
        return
    if instance.content_type.model_class() is ApiKey and instance.object_id:
        on_commit_changed("key", int(instance.object_id), ended=False)


def user_logged_out(sender, request, user, **kwargs) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        # Before the session is flushed, in the request's thread: the sockets are flagged
        # before the logout's response is sent.
        credentials_changed("session", session_key, ended=True)


def session_deleted(sender, instance, **kwargs) -> None:
    on_commit_changed("session", instance.session_key, ended=True)


def user_saved(sender, instance, created: bool, update_fields=None, **kwargs) -> None:
    # Every login saves last_login: only a save that may change the password or is_active.
    if created or (update_fields is not None and not {"password", "is_active"} & update_fields):
        return
    on_commit_changed("user", instance.pk, ended=False)
