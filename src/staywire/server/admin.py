"""The admin page's files, served on the internal API port only (``GET /admin``).

The page is static: everything it shows and does goes through the server API with the
key the operator types in (``Authorization: Bearer``, never a cookie, so no other site can
make the browser act with it). The public port never serves it. Files are read once and
kept: four small files, and a path outside them is a 404, never a file lookup.
"""

from __future__ import annotations

import functools
from importlib import resources

__all__ = ["admin_asset"]

_FILES = {
    "/admin": ("index.html", "text/html; charset=utf-8"),
    "/admin/": ("index.html", "text/html; charset=utf-8"),
    "/admin/admin.js": ("admin.js", "text/javascript; charset=utf-8"),
    "/admin/admin.css": ("admin.css", "text/css; charset=utf-8"),
    "/admin/favicon.svg": ("favicon.svg", "image/svg+xml"),
}


def admin_asset(path: str) -> tuple[bytes, str] | None:
    """The body and content type of the admin page's file at ``path``, or None."""
    entry = _FILES.get(path)
    if entry is None:
        return None
    return _read(entry[0]), entry[1]


@functools.cache
def _read(name: str) -> bytes:
    return resources.files("staywire").joinpath("admin", name).read_bytes()
