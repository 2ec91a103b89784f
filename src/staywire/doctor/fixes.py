"""The fixes the report prints, for nginx where a proxy is the usual cause: the same
lines ``staywire nginx`` generates (src/staywire/deploy/nginx.py)."""

from __future__ import annotations

__all__ = ["NGINX_ORIGIN", "NGINX_QUERY_LOG", "NGINX_TIMEOUT", "NGINX_UPGRADE"]

NGINX_UPGRADE = """nginx, in the WebSocket location (and the map in http {}):
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    proxy_http_version 1.1;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $connection_upgrade;"""

NGINX_TIMEOUT = """nginx, in the WebSocket location (above the server's ping interval):
    proxy_read_timeout 3600s;
    proxy_send_timeout 3600s;
or make the server ping more often than the proxy's idle timeout"""

NGINX_ORIGIN = """allow only your pages' origins: in the server (Staywire: --allowed-origin
https://app.example.com), or in nginx (a missing Origin, a non-browser client, stays allowed):
    map $http_origin $ws_origin_ok { default 0; "" 1; "https://app.example.com" 1; }
    # in the WebSocket location:
    if ($ws_origin_ok = 0) { return 403; }"""

NGINX_QUERY_LOG = """send the token in the first message or a cookie; if it must stay in the
URL, keep the query string out of access logs (nginx, http {}):
    log_format ws '$remote_addr [$time_local] "$request_method $uri" $status';
    access_log /var/log/nginx/ws.access.log ws;"""
