"""HTTPS with --sslCert/--sslKey, verified against a throwaway trustme CA."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
import trustme
from conftest import TRANSPORTS, initialize_request, mcp_client, post_rpc, text_of


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def write_server_cert(ca: trustme.CA, directory: Path) -> tuple[Path, Path]:
    """Issues a cert for 127.0.0.1/localhost; returns (chain PEM, key PEM) paths."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_pem, key_pem = directory / "cert.pem", directory / "key.pem"
    cert.private_key_pem.write_to_path(str(key_pem))
    cert_pem.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return cert_pem, key_pem


@pytest.fixture
def tls_proxy(start_proxy, ca, tmp_path):
    cert_pem, key_pem = write_server_cert(ca, tmp_path)
    return start_proxy("--sslCert", str(cert_pem), "--sslKey", str(key_pem))


@pytest.fixture
def client_context(ca) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def test_listening_line_says_https(tls_proxy):
    assert tls_proxy.scheme == "https"
    assert tls_proxy.base_url.startswith("https://127.0.0.1:")


def test_https_round_trip(tls_proxy, client_context):
    with httpx.Client(verify=client_context, timeout=15) as client:
        assert client.get(tls_proxy.url("/ping")).text == "pong"
        reply = post_rpc(client, tls_proxy.mcp_url, initialize_request())
    assert reply.status == 200
    assert reply.body["result"]["serverInfo"]["name"] == "mcp-servers/everything"


def test_untrusted_client_is_refused(tls_proxy):
    with httpx.Client(timeout=15) as client, pytest.raises(httpx.ConnectError):
        client.get(tls_proxy.url("/ping"))


def test_plain_http_is_not_served(tls_proxy):
    with httpx.Client(timeout=5) as client:
        try:
            reply = client.get(tls_proxy.url("/ping").replace("https://", "http://"))
        except httpx.HTTPError:
            return
    assert reply.status_code != 200 or reply.text != "pong"


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sdk_client_over_tls(tls_proxy, client_context, transport):
    async with mcp_client(tls_proxy, transport, verify=client_context) as conn:
        result = await conn.session.call_tool("echo", {"message": "encrypted"})
    assert text_of(result) == "Echo: encrypted"


def test_ssl_ca_requires_client_certificates(start_proxy, ca, client_context, tmp_path):
    cert_pem, key_pem = write_server_cert(ca, tmp_path)
    ca_pem = tmp_path / "client-ca.pem"
    client_ca = trustme.CA()
    client_ca.cert_pem.write_to_path(str(ca_pem))
    proxy = start_proxy("--sslCert", str(cert_pem), "--sslKey", str(key_pem), "--sslCa", str(ca_pem))

    def get_ping(client_cert_ca: trustme.CA | None) -> str:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        if client_cert_ca is not None:
            client_cert_ca.issue_cert("e2e-client@example.test").configure_cert(context)
        with httpx.Client(verify=context, timeout=15) as client:
            return client.get(proxy.url("/ping")).text

    assert get_ping(client_ca) == "pong"  # a certificate from the --sslCa CA
    with pytest.raises(httpx.HTTPError):
        get_ping(None)  # mutual TLS: a client without a certificate is refused
    with pytest.raises(httpx.HTTPError):
        get_ping(trustme.CA())  # a certificate from another CA
    proxy.wait_for_log("peer sent no certificates")
