"""wss:// only: the certificate chain and hostname (verified by the handshake itself,
which refuses to go on otherwise), days to expiry, and the TLS version."""

from __future__ import annotations

import time

from staywire.doctor.context import Context
from staywire.doctor.model import Check, Status

__all__ = ["check_tls"]

_OLD = {"SSLv3", "TLSv1", "TLSv1.1"}
_WARN_DAYS = 14


def check_tls(ctx: Context) -> Check:
    title = "TLS"
    why = ("wss:// keeps tokens and cookies off the wire, and pages served over https may "
           "only open wss:// (checklist: Security, Authentication)")
    if not ctx.target.secure:
        return Check("tls", title, Status.SKIP, "ws:// URL: no TLS to check", why)
    info = ctx.base.tls if ctx.base is not None else None
    if info is None:
        return Check("tls", title, Status.FAIL, "no TLS session on a wss:// connection", why)
    days = (info.not_after - time.time()) / 86400
    anchors = f"--cafile {ctx.options.cafile}" if ctx.options.cafile else "the system CAs"
    saw = (f"{info.version}; chain verified against {anchors}; hostname "
           f"{ctx.target.host!r} matches; certificate {info.subject!r} (issuer "
           f"{info.issuer!r}) expires in {days:.0f} days")
    data = {"version": info.version, "days_to_expiry": round(days, 1), "issuer": info.issuer,
            "subject": info.subject, "verified": True}
    if info.version in _OLD:
        return Check("tls", title, Status.FAIL, saw, why,
                     "nginx: ssl_protocols TLSv1.2 TLSv1.3;", data)
    if days < _WARN_DAYS:
        return Check("tls", title, Status.WARN, saw, why,
                     "renew the certificate (and automate it: certbot renew, acme.sh)", data)
    return Check("tls", title, Status.PASS, saw, why, None, data)
