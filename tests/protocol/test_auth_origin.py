"""Origin matching, JWT verification with a fake clock, redaction, cookie parsing."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from staywire.exceptions import AuthError, TokenExpired
from staywire.server.auth import JWTAuthenticator, can_access, cookie_token, query_params, redact
from staywire.server.origin import OriginPolicy


def test_origin_policy() -> None:
    p = OriginPolicy(["https://app.example.com", "https://*.example.org", "http://localhost:8765"])
    assert p.allows(None)
    assert p.allows("https://app.example.com") and p.allows("https://APP.example.com:443")
    assert p.allows("https://x.y.example.org") and not p.allows("https://example.org")
    assert not p.allows("https://evil-example.org") and not p.allows("https://example.org.evil")
    assert p.allows("http://localhost:8765") and not p.allows("http://localhost:9999")
    assert not p.allows("null") and not p.allows("garbage") and not p.allows("")
    assert OriginPolicy([]).allows("https://a.b") is False
    assert OriginPolicy(["*"]).allows("https://anything.example")
    with pytest.raises(ValueError):
        OriginPolicy(["not an origin"])


def test_jwt_hs256_with_fake_clock() -> None:
    now = [1000.0]
    auth = JWTAuthenticator(secret="s" * 32, clock=lambda: now[0])
    tok = jwt.encode({"sub": "u1", "exp": 1060, "channels": ["room:*"]}, "s" * 32)
    ident = auth(tok)
    assert ident.user == "u1" and ident.expires_at == 1060
    assert can_access(ident, "room:1") and not can_access(ident, "admin")
    now[0] = 1060.0
    with pytest.raises(TokenExpired):
        auth(tok)
    with pytest.raises(AuthError):
        auth(jwt.encode({"sub": "u1"}, "other" * 8))
    with pytest.raises(AuthError):
        auth(jwt.encode({"exp": 2000}, "s" * 32))  # no sub
    with pytest.raises(AuthError):
        auth(jwt.encode({"sub": "u", "channels": "room:*"}, "s" * 32))  # not a list
    with pytest.raises(AuthError):
        auth("not.a.jwt")
    none_alg = jwt.encode({"sub": "u"}, None, algorithm="none")
    with pytest.raises(AuthError):
        auth(none_alg)


def test_jwt_rs256() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    auth = JWTAuthenticator(public_key=pem)
    assert auth(jwt.encode({"sub": "r"}, key, algorithm="RS256")).user == "r"
    # Algorithm confusion: an HS256 token "signed" with the public key as the secret.
    import base64
    import hashlib
    import hmac
    import json

    def b64(b: bytes) -> bytes:
        return base64.urlsafe_b64encode(b).rstrip(b"=")

    signing = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + b"." + \
        b64(json.dumps({"sub": "r"}).encode())
    forged = signing + b"." + b64(hmac.new(pem.encode(), signing, hashlib.sha256).digest())
    with pytest.raises(AuthError):
        auth(forged.decode())


def test_redact_and_query() -> None:
    assert redact("/ws?token=abc.def&x=1") == "/ws?token=[REDACTED]&x=1"
    assert redact("/ws?a=1&access_token=zz") == "/ws?a=1&access_token=[REDACTED]"
    assert query_params("/ws?token=a%20b&session=ff&token=second") == {"token": "a b",
                                                                       "session": "ff"}
    assert isinstance(query_params("/ws?%%%&&=="), dict)  # garbage never raises


def test_cookie_token() -> None:
    assert cookie_token("a=1; staywire_token=tok; b=2", "staywire_token") == "tok"
    assert cookie_token(None, "staywire_token") is None
    assert cookie_token("garbage;;;===", "staywire_token") is None
