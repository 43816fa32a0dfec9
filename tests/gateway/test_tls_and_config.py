"""HTTPS with a self-signed certificate made here, and the [gateway] config checks."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hzp2p.config import ConfigError, parse_config
from hzp2p.tools.gatewayrun import start_gateway


def self_signed(d: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = d / "gw.crt", d / "gw.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.mark.slow
def test_https_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    gw = start_gateway(tmp_path / "c", f'tls_cert = "{cert}"\ntls_key = "{key}"\n', https=True)
    try:
        assert gw.base_url.startswith("https://")
        r = httpx.get(f"{gw.base_url}/v1/status", verify=ssl.create_default_context(cafile=str(cert)))
        assert r.status_code == 200 and r.json()["chain_id"] == gw.chain_id
        with pytest.raises(httpx.ConnectError):  # an unknown certificate is refused by clients
            httpx.get(f"{gw.base_url}/v1/status")
        with pytest.raises(httpx.HTTPError):  # and the port does not speak plain HTTP
            httpx.get(gw.base_url.replace("https://", "http://") + "/v1/status")
    finally:
        gw.stop()
        gw.cluster.close()


BASE: dict[str, Any] = {
    "node_id": 1, "genesis": "g.toml", "data_dir": "d", "listen": "127.0.0.1:7000",
    "signing_key": "s.key", "node_key": "n.key",
}


def test_gateway_section_defaults_and_checks(tmp_path: Path) -> None:
    assert parse_config(BASE, path=tmp_path / "c.toml").gateway is None
    cfg = parse_config({**BASE, "gateway": {}}, path=tmp_path / "c.toml")
    assert cfg.gateway is not None and str(cfg.gateway.listen) == "127.0.0.1:8480"
    assert cfg.gateway.credential_validity_s == 300
    with pytest.raises(ConfigError, match="not a loopback address"):
        parse_config({**BASE, "gateway": {"listen": "0.0.0.0:8443"}}, path=tmp_path / "c.toml")
    forced = parse_config({**BASE, "gateway": {"listen": "0.0.0.0:8443", "allow_plain_http": True}},
                          path=tmp_path / "c.toml")
    assert forced.gateway is not None and forced.gateway.allow_plain_http
    tls = parse_config({**BASE, "gateway": {"listen": "0.0.0.0:8443", "tls_cert": "a.pem", "tls_key": "k.pem"}},
                       path=tmp_path / "c.toml")
    assert tls.gateway is not None and tls.gateway.tls_cert == (tmp_path / "a.pem").resolve()
    with pytest.raises(ConfigError, match="go together"):
        parse_config({**BASE, "gateway": {"tls_cert": "a.pem"}}, path=tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="unknown field"):
        parse_config({**BASE, "gateway": {"lisen": "127.0.0.1:1"}}, path=tmp_path / "c.toml")


def test_new_credential_key_and_missing_section(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from hzp2p.tools.localcluster import LocalCluster

    c = LocalCluster(tmp_path / "c", 1)  # files only: no daemon is started
    cfg = c.config(1)
    run = [sys.executable, "-m", "hzp2p.cli", "gateway", "--config", str(cfg)]
    no_section = subprocess.run(run, capture_output=True, text=True, timeout=30, check=False)
    assert no_section.returncode == 1 and "no [gateway] section" in no_section.stderr
    with cfg.open("a") as f:
        f.write('\n[gateway]\nlisten = "127.0.0.1:18480"\n')
    made = subprocess.run([*run, "--new-credential-key", "--json"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    assert out["register_payload"]["inst_id"] == 1 and len(out["register_payload"]["public_key"]) == 64
    key_file = Path(out["key_file"])
    assert key_file.exists() and key_file.stat().st_mode & 0o077 == 0
    again = subprocess.run([*run, "--new-credential-key"], capture_output=True, text=True,
                           timeout=30, check=False)
    assert again.returncode == 1  # never overwrites a key
    no_db = subprocess.run(run, capture_output=True, text=True, timeout=30, check=False)
    assert no_db.returncode == 1 and "does not exist" in no_db.stderr  # the daemon never ran
    assert "Traceback" not in no_db.stderr
