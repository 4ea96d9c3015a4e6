"""A provider over HTTPS through the real CLI: its certificate is checked against the store the
user trusts: certifi's, or the file `SSL_CERT_FILE` names."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from forge.testing.fake_provider import FakeProvider, Reply
from tests.conftest import run_forge

CONFIG = """
[providers.secure]
base_url = "{url}/v1"

[models.tls-model]
provider = "secure"
id = "tls-1"
tier = "cheap"
input_price = 1
output_price = 1
"""


def make_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` (an IP address), made by the openssl command."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
    names = ["-subj", f"/CN={name}", "-addext", f"subjectAltName=IP:{name}"]
    subprocess.run(
        [*command.split(), *names, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"), "127.0.0.1")


def serving(certificate: tuple[Path, Path]) -> FakeProvider:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return FakeProvider(tls=context)


@pytest.fixture
def secure(certificate: tuple[Path, Path]) -> Iterator[FakeProvider]:
    with serving(certificate) as server:
        yield server


def fanout(config: Path, env: dict[str, str] | None = None) -> dict[str, object]:
    done = run_forge("fanout", "hi", "-m", "tls-model", "-c", str(config), "--json", env=env)
    answers = json.loads(done.stdout)["answers"]
    assert isinstance(answers, list) and len(answers) == 1
    answer: dict[str, object] = answers[0]
    return answer


def chats(server: FakeProvider) -> int:
    return sum(1 for request in server.requests if request.path.endswith("/completions"))


def test_a_certificate_the_user_does_not_trust_is_refused_before_the_prompt_is_sent(
    secure: FakeProvider, tmp_path: Path
) -> None:
    config = tmp_path / "forge.toml"
    config.write_text(CONFIG.format(url=secure.url), encoding="utf-8")
    answer = fanout(config)
    assert answer["status"] == "failed"
    cause = str(answer["cause"])
    assert "the server's TLS certificate is not trusted (self" in cause, cause
    assert "set SSL_CERT_FILE to a bundle that holds its issuer" in cause
    assert "[providers.secure]" in cause
    assert answer["attempts"] == 1, "the same certificate comes back on a retry"
    assert chats(secure) == 0, "nothing was sent over a connection forge could not verify"


def test_a_certificate_for_another_address_says_to_check_the_host(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Trusted, but made out to another address: the store is not what needs changing."""
    other = make_certificate(tmp_path_factory.mktemp("other"), "127.0.0.2")
    with serving(other) as server:
        config = tmp_path / "forge.toml"
        config.write_text(CONFIG.format(url=server.url), encoding="utf-8")
        answer = fanout(config, env={"SSL_CERT_FILE": str(other[0])})
        assert chats(server) == 0
    assert answer["status"] == "failed"
    cause = str(answer["cause"])
    assert "TLS certificate is not trusted (IP address mismatch" in cause, cause
    assert cause.count("check the host in base_url") == 1 and "SSL_CERT_FILE" not in cause


def fanout_to_a_socket_server(tmp_path: Path, handle: Callable[[socket.socket], None]) -> Any:
    """The answer of an https provider on 127.0.0.1 whose every connection `handle` serves."""
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            with contextlib.suppress(OSError):
                while True:
                    connection, _ = listener.accept()
                    with connection:
                        handle(connection)

        threading.Thread(target=serve, daemon=True).start()
        config = tmp_path / "forge.toml"
        url = f"https://127.0.0.1:{listener.getsockname()[1]}"
        config.write_text(CONFIG.format(url=url), encoding="utf-8")
        return fanout(config)


def test_an_https_url_to_a_plain_http_server_says_so(tmp_path: Path) -> None:
    """A plain-HTTP server answers a TLS hello with an HTTP error, as most do."""

    def answer_in_plain_http(connection: socket.socket) -> None:
        connection.recv(4096)
        connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        # Closed only once the client has read the answer and closed its side.
        connection.shutdown(socket.SHUT_WR)
        while connection.recv(4096):
            pass

    answer = fanout_to_a_socket_server(tmp_path, answer_in_plain_http)
    assert answer["status"] == "failed"
    cause = str(answer["cause"])
    assert "TLS handshake failed" in cause and "does the server speak https?" in cause, cause
    assert "nothing listens" not in cause


def test_a_certificate_in_ssl_cert_file_is_trusted(
    secure: FakeProvider, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    secure.script("tls-1", Reply(text="over TLS"))
    config = tmp_path / "forge.toml"
    config.write_text(CONFIG.format(url=secure.url), encoding="utf-8")
    answer = fanout(config, env={"SSL_CERT_FILE": str(certificate[0])})
    assert answer["status"] == "ok", answer
    assert answer["text"] == "over TLS"
    assert chats(secure) == 1


def test_an_https_proxy_is_verified_against_the_store_the_user_names(
    fake: FakeProvider, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    """`proxy = "https://..."` in a provider: the proxy's own certificate is checked against
    SSL_CERT_FILE as a server's is (a company proxy signed by the company's CA)."""
    fake.script("tls-1", Reply(text="through the proxy"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    upstream = ("127.0.0.1", int(fake.url.rsplit(":", 1)[1]))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        threading.Thread(target=relay, args=(listener, context, upstream), daemon=True).start()
        proxy = f"https://127.0.0.1:{listener.getsockname()[1]}"
        config = tmp_path / "forge.toml"
        config.write_text(
            CONFIG.format(url=fake.url).replace('/v1"\n', f'/v1"\nproxy = "{proxy}"\n', 1),
            encoding="utf-8",
        )
        untrusted = fanout(config)
        trusted = fanout(config, env={"SSL_CERT_FILE": str(certificate[0])})
    assert untrusted["status"] == "failed"
    assert "TLS certificate on the way (the server's or the proxy's) is not trusted" in str(
        untrusted["cause"]
    ), untrusted["cause"]
    assert trusted["status"] == "ok", trusted
    assert trusted["text"] == "through the proxy"
    assert chats(fake) == 1, "the answer came through the proxy, once"


def relay(listener: socket.socket, context: ssl.SSLContext, upstream: tuple[str, int]) -> None:
    """A forwarding proxy that speaks TLS to its clients: each connection's bytes, decrypted,
    go to `upstream` and its answer back (the fake matches a request on its path's end)."""
    while True:
        try:
            plain, _ = listener.accept()
        except OSError:
            return
        try:
            client = context.wrap_socket(plain, server_side=True)
        except (OSError, ssl.SSLError):
            plain.close()  # a client that did not trust the certificate
            continue
        server = socket.create_connection(upstream)
        for source, target in ((client, server), (server, client)):
            threading.Thread(target=pipe, args=(source, target), daemon=True).start()


def pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def test_a_local_server_that_drops_the_handshake_is_not_said_to_be_absent(tmp_path: Path) -> None:
    """Something listens: it closes each connection as soon as the TLS hello arrives. That is
    a dropped connection (retried), not "nothing listens", and not a TLS verdict."""

    def read_the_hello(connection: socket.socket) -> None:
        connection.recv(4096)

    answer = fanout_to_a_socket_server(tmp_path, read_the_hello)
    assert answer["status"] == "failed"
    cause = str(answer["cause"])
    assert "nothing listens" not in cause and "TLS" not in cause, cause
    assert int(str(answer["attempts"])) > 1, "a dropped connection is tried again"
