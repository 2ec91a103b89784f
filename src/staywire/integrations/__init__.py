"""Ready-made backends for the proxies (docs/proxy.md): ``answers`` is what a handler
returns, shared by every framework; ``fastapi`` is a router (``staywire[fastapi]``),
``django`` the same as views (``staywire[django]``); both register handlers through
``handlers.Handlers``."""
