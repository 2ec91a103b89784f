"""Security: TLS, handshake rate per IP, constant-time API key check, Origin in Chromium
is covered by tests/browser."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import sys
import urllib.error
import urllib.request

import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from staywire.client import Client
from staywire.config import Config
from staywire.exceptions import ReconnectFailed
from staywire.protocol.ratelimit import KeyedBuckets
from staywire.server import api as api_module
from staywire.server.app import Server
from tests.conftest import ANON
from tests.support.ws import connect, expect, request


def make_cert(tmp_path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


async def test_wss_with_a_certificate_the_test_made(server_factory, tmp_path) -> None:
    cert, key = make_cert(tmp_path)
    srv = server_factory(**ANON, tls_cert=cert, tls_key=key)
    ctx = ssl.create_default_context(cafile=cert)
    url = srv.url.replace("ws://", "wss://")
    async with connect(url, ssl=ctx) as ws:
        await expect(ws, "welcome")
        await request(ws, {"type": "sub", "id": 1, "channel": "tls"})
        await request(ws, {"type": "pub", "id": 2, "channel": "tls", "data": "secret"})
        assert (await expect(ws, "msg"))["data"] == "secret"
    with pytest.raises((ssl.SSLError, OSError)):  # an untrusted certificate is refused
        async with connect(url, ssl=ssl.create_default_context()):
            pass
    with pytest.raises((websockets.InvalidMessage, websockets.InvalidHandshake, OSError,
                        EOFError)):
        async with connect(srv.url, open_timeout=2):  # plain ws:// to a TLS port
            pass


async def test_python_client_over_wss_trusts_the_ssl_context_it_is_given(server_factory,
                                                                         tmp_path) -> None:
    cert, key = make_cert(tmp_path)
    srv = server_factory(**ANON, tls_cert=cert, tls_key=key)
    url = srv.url.replace("ws://", "wss://")
    trusted = ssl.create_default_context(cafile=cert)
    async with Client(url, ssl_context=trusted, connect_timeout=5) as client:
        async with client.subscribe("tls") as sub:
            await client.publish("tls", "secret")
            async with asyncio.timeout(5):
                assert (await anext(aiter(sub))).data == "secret"
    # Without it, the default trust store refuses the test's certificate; the client
    # reports why instead of retrying forever.
    untrusted = Client(url, connect_timeout=5, max_retries=0)
    with pytest.raises(ReconnectFailed) as err:
        await untrusted.connect()
    assert "CERTIFICATE_VERIFY_FAILED" in err.value.reason, err.value.reason
    await untrusted.close()
    # The CLI takes the same trust as --cafile.
    pub = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "staywire", "pub", url, "tls", "from the shell", "--cafile", cert,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, errout = await asyncio.wait_for(pub.communicate(), 30)
    assert pub.returncode == 0, errout.decode()
    assert json.loads(out)["offset"] == 2


async def test_handshake_rate_per_ip(server_factory) -> None:
    srv = server_factory(**ANON, handshake_rate=1, handshake_burst=3)
    statuses = []
    for _ in range(5):
        try:
            async with connect(srv.url) as ws:
                await expect(ws, "welcome")
                statuses.append(101)
        except websockets.InvalidStatus as exc:
            statuses.append(exc.response.status_code)
    assert statuses[:3] == [101, 101, 101] and 429 in statuses[3:]
    await asyncio.sleep(1.1)  # the bucket refills
    async with connect(srv.url) as ws:
        await expect(ws, "welcome")


def test_keyed_buckets_stay_bounded() -> None:
    kb = KeyedBuckets(rate=1, burst=2, max_keys=100)
    for i in range(1000):
        assert kb.take(f"10.0.{i // 256}.{i % 256}", now=float(i) * 0.001)
    assert len(kb) <= 100
    assert kb.take("a", 0) and kb.take("a", 0) and not kb.take("a", 0)


async def test_api_key_is_compared_in_constant_time(monkeypatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = api_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api_module.hmac, "compare_digest", spy)
    server = Server(Config(port=0, api_key="k" * 32))  # port 0: the API port is ephemeral too
    await server.start()
    try:
        api = f"http://127.0.0.1:{server.api_port}/api/publish"

        def post(key: str) -> int:
            req = urllib.request.Request(api, data=json.dumps({"channel": "c", "data": 1}).encode(),
                                         headers={"Authorization": f"Bearer {key}"})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return resp.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert await asyncio.to_thread(post, "k" * 31 + "x") == 401
        assert await asyncio.to_thread(post, "k" * 32) == 200
        assert len(calls) == 2
    finally:
        await server.stop()
