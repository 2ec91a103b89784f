from django.conf import settings

from staywire.integrations.answers import Allow, Deny, ProxyCall
from staywire.integrations.django import StaywireProxy

# connect: a logged-in session is its user (str(user.pk)); anyone else is closed with
# 4503. refresh: the same check every STAYWIRE_CHECK_EVERY seconds, so a logout ends it.
proxy = StaywireProxy(check_every=settings.STAYWIRE_CHECK_EVERY)


@proxy.on_subscribe
def subscribe(call: ProxyCall, user) -> Allow | Deny:
    if call.channel in ("room:lobby", f"room:{user.get_username()}"):
        return Allow()
    return Deny("forbidden", "not your room")


@proxy.on_publish
def publish(call: ProxyCall, user) -> Allow | Deny:
    text = call.data.get("text") if isinstance(call.data, dict) else None
    if not isinstance(text, str) or not text.strip():
        return Deny("invalid_params", "a message needs a text")
    return Allow({"text": text, "from": user.get_username()})  # who said it, from the session


@proxy.on_rpc
def rpc(call: ProxyCall, user) -> Allow | Deny:
    if call.method == "whoami":  # call.user: who Staywire says the socket is, for the page
        return Allow({"id": call.user, "username": user.get_username()})
    return Deny("unknown_method", call.method)
