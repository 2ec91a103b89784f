"""wss:// against Staywire serving TLS itself with a private CA's certificate."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import ANON
from tests.doctor.support import checks, doctor


def make_cert(tmp: Path, days: int) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "doctor test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_private_ca_refused_then_verified_with_cafile(server_factory, tmp_path) -> None:
    cert, key = make_cert(tmp_path, days=10)
    srv = server_factory(**ANON, tls_cert=cert, tls_key=key)
    url = f"wss://127.0.0.1:{srv.port}/ws"
    rc, doc, _ = doctor(url, "--max-wait", "1")
    assert rc == 2 and doc["error"]["kind"] == "tls"
    assert "certificate verify failed" in doc["error"]["message"] or \
        "self-signed" in doc["error"]["message"]
    assert "--cafile" in doc["error"]["message"]
    rc, doc, _ = doctor(url, "--max-wait", "1", "--cafile", cert)
    tls = checks(doc)["tls"]
    # Ten days left: under the two weeks the doctor wants, so a WARN with the fix.
    assert tls["status"] == "WARN" and tls["data"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert 9 < tls["data"]["days_to_expiry"] <= 10
    assert "renew" in tls["fix"]
    assert checks(doc)["limits.utf8"]["status"] == "PASS"  # the rest runs over TLS
