"""`forge fanout --html FILE`: one self-contained page, opened in headless Chromium.

Chromium is pointed at a proxy that records every request it is asked to make; the page must
make none. The browser's own housekeeping (update and time checks it makes whatever page it
shows) is told apart by host, and a control page with one external image proves the recorder
sees what a page asks for. What the browser built (its DOM, after parsing the page) is read
back into a tree, and the tests look at it as a reader would: headings, table headers, the text
of each answer's card.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from forge.testing.fake_provider import FakeProvider, Fault, Reply
from tests.conftest import run_forge
from tests.test_fanout import AGREE, CAPITAL, DISAGREE, fanout_config, write

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
VOID_ELEMENTS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "wbr"}
)
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


@dataclass
class Element:
    """One element of the DOM Chromium built, with what a reader sees of it."""

    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    @property
    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()

    def all(self, tag: str | None = None, cls: str | None = None) -> list[Element]:
        found = []
        for child in self.children:
            if isinstance(child, Element):
                if (tag is None or child.tag == tag) and (cls is None or cls in child.classes):
                    found.append(child)
                found += child.all(tag, cls)
        return found

    def one(self, tag: str | None = None, cls: str | None = None) -> Element:
        found = self.all(tag, cls)
        assert len(found) == 1, f"{len(found)} <{tag} class={cls}>"
        return found[0]


class DomReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self._open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self._open[-1].children.append(element)
        if tag not in VOID_ELEMENTS:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while len(self._open) > 1 and self._open.pop().tag != tag:
            pass

    def handle_data(self, data: str) -> None:
        self._open[-1].children.append(data)


def read_dom(dom: str) -> Element:
    reader = DomReader()
    reader.feed(dom)
    reader.close()
    return reader.root


def card(page: Element, model: str) -> Element:
    """The answer card of one model."""
    return next(e for e in page.all("div", "answer") if e.attrs.get("data-model") == model)


def page_headings(page: Element) -> list[str]:
    """The page's own headings (an answer's headings sit below h3, inside its card)."""
    return [" ".join(e.text.split()) for tag in ("h1", "h2", "h3") for e in page.all(tag)]


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
    first_lines = {"alpha": AGREE[0], "beta": AGREE[1], "gamma": AGREE[2], "delta": DISAGREE[0]}
    answers = dict(first_lines)
    answers["beta"] += "\n\n" + CODE
    answers["gamma"] += ' See <img src="https://example.invalid/x.png"> [a](http://x.invalid)'

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
    tree = read_dom(dom)
    for name, line in first_lines.items():
        assert line in card(tree, name).text, f"{name}'s answer is on the page"
    # The answer's image tag and link are text a reader sees, not elements that load or go.
    assert 'See <img src="https://example.invalid/x.png"> a (http://x.invalid)' in " ".join(
        card(tree, "gamma").text.split()
    )
    assert tree.all("img") == [] and tree.all("a") == []
    code = card(tree, "beta").one("code", "language-python")
    assert code.text == "def area(w, h):\n    return w * h  # <b>not bold</b>\n"
    assert "server_error" in card(tree, "omega").text
    marked = [e.attrs["data-model"] for e in tree.all("div", "answer") if e.all(cls="s-consensus")]
    assert len(marked) == 1 and marked[0] in ("alpha", "beta", "gamma"), "one of the three agreeing"
    matrix = re.search(r'<table class="heat" id="agreement-matrix">(.*?)</table>', dom, re.S)
    assert matrix is not None
    assert matrix.group(1).count("<tr>") == 5, "a header row and one row per answer"
    assert "background:hsl(" in matrix.group(1), "the matrix is a heat map"
    assert "Diffs against the consensus" in dom and 'class="del"' in dom
    assert 'id="models"' in dom and 'class="bar cost"' in dom
    assert recorder.page_requests() == [], "no request left the page"


def fanout_page(
    fake: FakeProvider, tmp_path: Path, replies: dict[str, Reply], exit_code: int = 0
) -> Path:
    """Run `forge fanout --html` on models scripted with `replies`; the page it wrote."""
    for name, reply in replies.items():
        fake.script(f"{name}-1", reply)
    config = write(tmp_path, fanout_config(fake.url, list(replies)))
    page = tmp_path / "report.html"
    models = ",".join(replies)
    done = run_forge(
        "fanout", "Q?", "-m", models, "--attempts", "1", "--html", str(page), "-c", str(config)
    )
    assert done.returncode == exit_code, done.stderr
    return page


MARKDOWN = """## Steps

1. Read the **input** file.
2. Call *area* with `w` and `h`.

- keep it ~~clever~~ simple

```python
def area(w, h):
    return w * h  # <b>not bold</b>
```

<script>document.title = "owned"</script>

Also <img src=x onerror="document.title='owned'"> and [click me](javascript:alert(1)),
[docs](https://docs.example.invalid/area) and a title change: \x1b]2;owned\x07 done.
"""


def test_answers_are_shown_as_markdown_and_nothing_in_them_runs(
    fake: FakeProvider, tmp_path: Path, recorder: RequestRecorder
) -> None:
    long = "# Not a heading\n\n" + "word " * 25_000  # past what is worth parsing
    replies = {"alpha": Reply(text=MARKDOWN), "beta": Reply(text="Hi."), "long": Reply(text=long)}
    page = fanout_page(fake, tmp_path, replies)
    tree = read_dom(dump_dom(page, recorder, tmp_path / "profile"))
    answer = card(tree, "alpha")
    assert [h.text for h in answer.all("h5")] == ["Steps"], "## is h5: under the card's h3"
    assert [li.text for li in answer.one("ol").all("li")] == [
        "Read the input file.",
        "Call area with w and h.",
    ]
    assert answer.one("strong").text == "input" and answer.one("em").text == "area"
    assert [c.text for c in answer.all("code") if not c.classes] == ["w", "h"]
    assert answer.one("s").text == "clever"
    code = answer.one("pre").one("code")
    assert code.classes == ["language-python"]
    assert code.text == "def area(w, h):\n    return w * h  # <b>not bold</b>\n"

    seen = " ".join(answer.text.split())
    assert '<script>document.title = "owned"</script>' in seen, "raw HTML is shown as text"
    assert "<img src=x onerror=\"document.title='owned'\">" in seen
    assert "[click me](javascript:alert(1))" in seen, "a javascript: link stays text"
    assert "docs (https://docs.example.invalid/area)" in seen, "a link shows where it goes"
    assert "title change: ␛]2;owned␇ done." in seen, "control characters are shown"
    assert not tree.all("script") and not tree.all("img") and not tree.all("a")
    assert tree.one("title").text.startswith("forge fanout ")
    handlers = [a for e in tree.all() for a in e.attrs if a.startswith("on")]
    assert handlers == []
    assert "\x1b" not in page.read_text(encoding="utf-8")
    assert recorder.page_requests() == []

    too_long = card(tree, "long")
    assert "too long to render as Markdown: shown as plain text" in too_long.text
    assert too_long.one("pre").text == long and not too_long.all("h4")


def test_bar_columns_have_headers_that_say_what_the_bars_show(
    fake: FakeProvider, tmp_path: Path, recorder: RequestRecorder
) -> None:
    replies = {
        "slow": Reply(text="Paris.", latency=0.5, output_tokens=100),
        "dear": Reply(text="Paris.", output_tokens=400),
    }
    page = fanout_page(fake, tmp_path, replies)
    tree = read_dom(dump_dom(page, recorder, tmp_path / "profile"))
    table = next(e for e in tree.all("table") if e.attrs.get("id") == "models")
    header, *rows = table.all("tr")
    titles = [" ".join(th.text.split()) for th in header.all("th")]
    bars: dict[str, dict[str, str]] = {}
    for row in rows:
        cells = row.all("td")
        for column, cell in enumerate(cells):
            for bar in cell.all("div", "bar"):
                bars.setdefault(titles[column], {})[cells[0].text] = bar.attrs["style"]
    assert sorted(bars) == ["cost, full bar = dearest", "latency, full bar = slowest"]
    assert bars["latency, full bar = slowest"]["slow"] == "width:100%"
    assert bars["cost, full bar = dearest"] == {"slow": "width:25%", "dear": "width:100%"}
    assert all(title for title in titles), "no column without a header"


NO_CONSENSUS = {
    "one answer": {"alpha": Reply(text=CAPITAL), "beta": Reply(fault=Fault.SERVER_ERROR)},
    "all different": {
        "alpha": Reply(text=CAPITAL),
        "beta": Reply(text=DISAGREE[0]),
        "gamma": Reply(text=DISAGREE[1] + "\n\nSorry.\nTruly.\nNo France."),  # a line diff
    },
    "no answer": {
        "alpha": Reply(fault=Fault.SERVER_ERROR),
        "beta": Reply(fault=Fault.BAD_REQUEST),
    },
}


@pytest.mark.parametrize("case", list(NO_CONSENSUS))
def test_without_a_consensus_no_heading_speaks_of_one(
    case: str, fake: FakeProvider, tmp_path: Path, recorder: RequestRecorder
) -> None:
    replies = NO_CONSENSUS[case]
    page = fanout_page(fake, tmp_path, replies, exit_code=4 if case == "no answer" else 0)
    tree = read_dom(dump_dom(page, recorder, tmp_path / "profile"))
    headings = page_headings(tree)
    assert not [h for h in headings if "consensus" in h.lower()], headings
    assert not tree.all(cls="s-consensus") and not tree.all("div", "consensus")
    assert [card.attrs["data-model"] for card in tree.all("div", "answer")] == list(replies)
    said = " ".join(tree.text.split())
    if case == "one answer":
        assert "Only one answer to compare (alpha), so there is no agreement to measure" in said
        assert CAPITAL in card(tree, "alpha").text
        assert not [h for h in headings if h.startswith("Diffs")]
    elif case == "all different":
        reference = re.search(r"No consensus: .* against the most central answer, (\w+)\.", said)
        assert reference is not None, said
        diffs = f"Diffs against the reference, {reference.group(1)}"
        assert [h for h in headings if h.startswith("Diffs")] == [diffs]
        unified = [e.text for e in tree.all("pre", "diff") if e.text.startswith("---")]
        assert [d.split("\n")[:2] for d in unified] == [[f"--- {reference.group(1)}", "+++ gamma"]]
    else:
        assert "No answer arrived, so there is nothing to compare." in said
        assert "server_error" in card(tree, "alpha").text


def test_the_request_recorder_sees_what_a_page_asks_for(
    tmp_path: Path, recorder: RequestRecorder
) -> None:
    page = tmp_path / "leaky.html"
    page.write_text('<html><body><img src="http://leak.example.invalid/x.png"></body></html>')
    dump_dom(page, recorder, tmp_path / "profile")
    assert "leak.example.invalid" in recorder.page_requests()
