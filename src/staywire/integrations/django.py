"""The five proxy endpoints as Django views: ``pip install staywire[django]``.

::

    # myapp/staywire_proxy.py
    from staywire.integrations.answers import Allow, Deny
    from staywire.integrations.django import StaywireProxy

    proxy = StaywireProxy()  # connect: the session's user, or close 4503

    @proxy.on_subscribe
    def subscribe(call, user):
        return Allow() if call.channel == f"user:{user.pk}" else Deny("forbidden")

    # urls.py
    urlpatterns = [path("staywire/", include(proxy.urls))]

and Staywire runs with ``connect_proxy_url = "http://127.0.0.1:8000/staywire/connect"``
(docs/django.md). Each handler gets the ``ProxyCall`` and the Django user of the
forwarded session cookie (``AnonymousUser`` when there is none, it expired or was
logged out), resolved by Django's own session engine and ``django.contrib.auth``,
and returns an answer of ``staywire.integrations.answers``.

The views are sync: the session and user lookups are Django's sync ORM, and
``runserver`` or any WSGI server gives each request its own thread; under ASGI
Django runs a sync view in its thread pool. Handlers are sync functions too. A batch
of subscribes (``proxy_subscribe_batch``) calls the handler once per item, each with
its own session's user.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import import_module
from typing import Any

import msgspec
from django.conf import settings
from django.contrib.auth import get_user
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from staywire.integrations.answers import (
    Disconnect,
    Identify,
    ProxyCall,
    Refresh,
    decode_calls,
    encode,
    encode_batch,
)
from staywire.integrations.handlers import EVENTS, Handlers, item_answer

__all__ = ["StaywireProxy", "session_store", "session_user"]

class _ReadOnlySession:
    """The session as ``get_user`` sees it, with its writes dropped.

    ``get_user`` may ``flush()`` a session whose password hash no longer matches, or
    ``cycle_key()`` one signed with a fallback secret. In a proxy call either would
    change the session behind the browser's back: Staywire cannot hand a new cookie to
    the browser, so a cycled key would log the user out of the site itself."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getitem__(self, key: str) -> Any:
        return self._store[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._store.get(key, default)

    def flush(self) -> None:
        pass

    def cycle_key(self) -> None:
        pass

    def __setitem__(self, key: str, value: Any) -> None:
        pass


def session_store(call: ProxyCall) -> Any:
    """The Django session named by the forwarded cookie (``SESSION_COOKIE_NAME``), loaded by
    ``SESSION_ENGINE``; an empty session when there is no cookie or it is unknown or expired."""
    engine = import_module(settings.SESSION_ENGINE)
    return engine.SessionStore(call.cookies.get(settings.SESSION_COOKIE_NAME) or None)


def session_user(call: ProxyCall) -> Any:
    """The user of ``call``'s session cookie, as Django would see it on a request of the site:
    ``AnonymousUser`` unless the session is live, logged in, and its password hash checks."""
    request = HttpRequest()
    request.session = _ReadOnlySession(session_store(call))
    return get_user(request)


class StaywireProxy(Handlers):
    """``check_every``: seconds an identity of the default handlers lasts before Staywire
    asks ``refresh`` again; a logout ends an open socket at most that late."""

    def __init__(self, *, check_every: float = 60.0) -> None:
        if not check_every > 0:
            raise ValueError(f"check_every must be > 0, got {check_every}")
        super().__init__()
        self.check_every = check_every
        self._handlers.update(connect=self._connect, refresh=self._refresh)

    @property
    def urls(self) -> tuple[list[Any], str]:
        """For ``include()``: the five views, named ``staywire:connect`` ... ``staywire:rpc``."""
        return [path(f"{event}", self._view(event), name=event) for event in EVENTS], "staywire"

    def expire_at(self) -> float:
        """When an identity given now is to be checked again: ``check_every`` from now."""
        return time.time() + self.check_every

    # The defaults: who the session says, for as long as it says so.
    def _connect(self, call: ProxyCall, user: Any) -> Identify | Disconnect:
        if not user.is_authenticated:
            return Disconnect(4503, "log in first")
        return Identify(str(user.pk), expire_at=self.expire_at())

    def _refresh(self, call: ProxyCall, user: Any) -> Refresh:
        if not user.is_authenticated or str(user.pk) != call.user:
            return Refresh(expired=True)  # logged out (or in as someone else): close 4401
        return Refresh(expire_at=self.expire_at())

    def _view(self, event: str) -> Callable[[HttpRequest], HttpResponse]:
        def view(request: HttpRequest) -> HttpResponse:
            handler = self.handler(event)
            if handler is None:
                return HttpResponse(b"no handler\n", status=404, content_type="text/plain")
            try:
                calls, batched = decode_calls(event, request.body)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                return HttpResponse(f"{exc}\n".encode(), status=400, content_type="text/plain")
            if not batched:
                answer = handler(calls[0], session_user(calls[0]))
                return HttpResponse(encode(event, answer), content_type="application/json")
            answers: list[bytes] = []
            for call in calls:
                try:
                    answers.append(item_answer(event, handler(call, session_user(call))))
                except Exception as exc:  # noqa: BLE001 - that item's answer alone
                    answers.append(item_answer(event, exc))
            return HttpResponse(encode_batch(event, answers), content_type="application/json")

        view.__name__ = f"staywire_{event}"
        # Staywire posts JSON with no CSRF token: it is a server, not a browser form, and the
        # body's cookies are read, never trusted as this request's own.
        return csrf_exempt(require_POST(view))  # type: ignore[no-any-return]
