"""`forge fanout --html FILE`: one self-contained page, opened in headless Chromium.

Chromium is pointed at a proxy that records every request it is asked to make; the page must
make none. The browser's own housekeeping (update and time checks it makes whatever page it
shows) is told apart by host, and a control page with one external image proves the recorder
sees what a page asks for.
"""

from __future__ import annotations

import html
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.testing.fake_provider import FakeProvider, Fault, Reply
from tests.conftest import run_forge
from tests.test_fanout import AGREE, DISAGREE, fanout_config, write

# Never skipped: without Chromium these tests fail and say how to install it.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Requests Chromium makes on its own behalf, whatever the page.
BROWSER_HOSTS = {
    "accounts.google.com",
    "clients2.google.com",
    "update.googleapis.com",
    "redirector.gvt1.com",
    "optimizationguide-pa.googleapis.com",
}
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-pings",
]
CODE = "```python\ndef area(w, h):\n    return w * h  # <b>not bold</b>\n```"


class RequestRecorder:
    """A TCP listener standing in for a proxy: it records each request's first bytes."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with client:
                client.settimeout(2)
                try:
                    self.requests.append(client.recv(4096).decode("latin-1"))
                except OSError:
                    self.requests.append("")

    def page_requests(self) -> list[str]:
        hosts = [_host(r) for r in self.requests]
        return [h for h in hosts if h not in BROWSER_HOSTS]

    def close(self) -> None:
        self._server.close()


def _host(request: str) -> str:
    match = re.match(r"(?:CONNECT ([^:\s]+)|\w+ \w+://([^/:\s]+))", request)
    return (match.group(1) or match.group(2)) if match else request[:80]


@pytest.fixture
def recorder() -> Iterator[RequestRecorder]:
    found = RequestRecorder()
    yield found
    found.close()


def dump_dom(page: Path, recorder: RequestRecorder, profile: Path) -> str:
    assert CHROMIUM is not None, "needs Debian's chromium: apt-get install -y chromium"
    done = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--proxy-server=http://127.0.0.1:{recorder.port}",
            "--proxy-bypass-list=<-loopback>",
            "--virtual-time-budget=3000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_html_report_renders_in_chromium_without_a_request(
    fake: FakeProvider, tmp_path: Path, recorder: RequestRecorder
) -> None:
    answers = {
        "alpha": AGREE[0],
        "beta": AGREE[1] + "\n\n" + CODE,
        "gamma": AGREE[2] + ' See <img src="https://example.invalid/x.png"> [a](http://x.invalid)',
        "delta": DISAGREE[0],
    }
    for name, text in answers.items():
        fake.script(f"{name}-1", Reply(text=text))
    fake.script("omega-1", Reply(fault=Fault.SERVER_ERROR))
    config = write(tmp_path, fanout_config(fake.url, [*answers, "omega"]))
    page = tmp_path / "report.html"
    done = run_forge(
        "fanout",
        "Capital of France?",
        "-m",
        "alpha,beta,gamma,delta,omega",
        "--attempts",
        "1",
        "--html",
        str(page),
        "--config",
        str(config),
    )
    assert done.returncode == 0, done.stderr
    source = page.read_text(encoding="utf-8")
    assert "<script" not in source and "<link" not in source and "@import" not in source
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", source)
    assert "Content-Security-Policy" in source

    dom = dump_dom(page, recorder, tmp_path / "profile")
    for name, text in answers.items():
        assert f'data-model="{name}"' in dom
        assert html.escape(text, quote=False) in dom, f"{name}'s answer is on the page"
    assert 'data-model="omega"' in dom and "server_error" in dom
    matrix = re.search(r'<table class="heat" id="agreement-matrix">(.*?)</table>', dom, re.S)
    assert matrix is not None
    assert matrix.group(1).count("<tr>") == 5, "a header row and one row per answer"
    assert "background:hsl(" in matrix.group(1), "the matrix is a heat map"
    assert "Diffs against the consensus" in dom and 'class="del"' in dom
    assert 'id="models"' in dom and 'class="bar cost"' in dom
    assert recorder.page_requests() == [], "no request left the page"


def test_the_request_recorder_sees_what_a_page_asks_for(
    tmp_path: Path, recorder: RequestRecorder
) -> None:
    page = tmp_path / "leaky.html"
    page.write_text('<html><body><img src="http://leak.example.invalid/x.png"></body></html>')
    dump_dom(page, recorder, tmp_path / "profile")
    assert "leak.example.invalid" in recorder.page_requests()
