"""`forge fanout` against the floor for Python: N models at once, streamed, N = 10, 100, 1,000.

The fake providers run in a process of their own (so the server does not share the client's
interpreter), every model answering after a fixed 0.5 s with about 200 streamed tokens. For each
N this one run measures, as a ratio to the ideal (one model's wall time, alone):
  - forge: the library path of `forge fanout` (a `ModelClient` with the ledger reserving and
    settling every call, `execute()` streaming every answer, then `compare()`), each N in a
    fresh process, whose peak resident memory is reported too;
  - gather: a plain `asyncio.gather` over raw httpx streaming calls on one `AsyncClient`, the
    way one would write it by hand;
  - pooled gather: the same over `AsyncClient`s of 50 connections each (httpcore's pool slows
    with the square of its connections), the floor for Python with httpx;
  - bare asyncio: each call on a connection of its own, through an `asyncio.Protocol` that
    collects the whole response and only then parses it (chunked encoding, events, one
    `json.loads` per answer), with no HTTP library and no per-event work: the floor for Python
    on this machine, whatever the client;
  - sequential: the same calls one after another (at N above 10, a sample of 10 is measured
    and multiplied out; the table says so).

    python bench/fanout.py [--sizes 10,100,1000] [--latency 0.5] [--tokens 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEQUENTIAL_SAMPLE = 10
POOLED = 50  # connections per client in the pooled gather, as in forge (client.POOL_SIZE)


# -- the server process ---------------------------------------------------------------------------


def serve(models: int, latency: float, tokens: int) -> None:
    from forge.testing.fake_provider import FakeProvider, Reply

    text = " ".join(f"word{i}" for i in range(tokens))
    with FakeProvider() as fake:
        for i in range(models):
            fake.script(f"m{i}", Reply(text=text, latency=latency))
        print(fake.url, flush=True)
        sys.stdin.read()  # until the parent closes the pipe


def start_server(models: int, latency: float, tokens: int) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(models), str(latency), str(tokens)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


# -- forge, in a process of its own per N ---------------------------------------------------------


def forge_config(url: str, models: int) -> str:
    lines = [
        f'[providers.fake]\nbase_url = "{url}/v1"\n',
        "[cost]\ndaily_budget_usd = 1000\n",
    ]
    for i in range(models):
        lines.append(
            f'[models.m{i}]\nprovider = "fake"\nid = "m{i}"\ninput_price = 1\noutput_price = 1\n'
        )
    return "\n".join(lines)


def forge_once(url: str, models: int) -> None:
    """Prints {"wall": s, "execute": s, "compare": s, "ok": n, "rss_mb": MB} as one JSON line."""
    import anyio

    from forge.config import parse_config_text
    from forge.fanout.answers import Settings
    from forge.fanout.comparison import compare
    from forge.fanout.execution import execute, request_for
    from forge.ledger import Ledger
    from forge.providers.client import ModelClient

    config = parse_config_text(forge_config(url, models))
    ledger = (
        None
        if os.environ.get("NOLEDGER")
        else Ledger(Path(tempfile.mkdtemp(prefix="forge-bench-")) / "ledger.db")
    )
    client = ModelClient(config, ledger=ledger, run_id="bench")
    targets = [client.resolve(f"m{i}") for i in range(models)]
    requests = [request_for(t, "Say two hundred words.", None) for t in targets]

    async def main() -> float:
        async with client:
            started = time.perf_counter()
            await execute(client, requests, Settings())
            return time.perf_counter() - started

    started = time.perf_counter()
    executed = anyio.run(main)
    compared_at = time.perf_counter()
    compare([r.answer for r in requests])
    done = time.perf_counter()
    ok = sum(1 for r in requests if r.answer.ok)
    report = {
        "wall": executed + (done - compared_at),
        "execute": executed,
        "compare": done - compared_at,
        "ok": ok,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "setup": compared_at - started - executed,
    }
    print(json.dumps(report), flush=True)


def measure_forge(url: str, models: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--forge", url, str(models)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["ok"] != models:
        raise SystemExit(f"forge: only {result['ok']} of {models} answered")
    return result


# -- the floor: plain httpx -----------------------------------------------------------------------


async def raw_call(http: object, url: str, model: str) -> int:
    import httpx

    assert isinstance(http, httpx.AsyncClient)
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    lines = 0
    async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        async for _ in response.aiter_lines():
            lines += 1
    return lines


async def gather(url: str, models: int, pool: int | None = None) -> float:
    """All calls at once over pools of `pool` connections each (one pool when None)."""
    import httpx

    size = pool or models
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    clients = [httpx.AsyncClient(limits=limits, timeout=None) for _ in range(-(-models // size))]
    try:
        started = time.perf_counter()
        await asyncio.gather(*(raw_call(clients[i // size], url, f"m{i}") for i in range(models)))
        return time.perf_counter() - started
    finally:
        for client in clients:
            await client.aclose()


class _Collect(asyncio.Protocol):
    """One raw HTTP/1.1 exchange: the whole chunked response, then the answer's events."""

    def __init__(self, request: bytes, done: asyncio.Future[int]) -> None:
        self.request, self.done, self.buffer = request, done, bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.buffer.endswith(b"\r\n0\r\n\r\n"):
            self.transport.close()
            self.done.set_result(_events(bytes(self.buffer)))


def _events(response: bytes) -> int:
    _, _, body = response.partition(b"\r\n\r\n")
    pieces, at = [], 0
    while (size := int(body[at : body.index(b"\r\n", at)], 16)) > 0:
        start = body.index(b"\r\n", at) + 2
        pieces.append(body[start : start + size])
        at = start + size + 2
    data = [
        line[6:]
        for line in b"".join(pieces).split(b"\n")
        if line.startswith(b"data: ") and line != b"data: [DONE]"
    ]
    return len(json.loads(b"[" + b",".join(data) + b"]"))


async def bare(url: str, models: int) -> float:
    """Every call at once, each on a connection of its own, with no HTTP library."""
    host, port = url.split("//", 1)[1].split(":")
    loop = asyncio.get_running_loop()

    async def call(model: str) -> int:
        body = json.dumps(
            {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        ).encode()
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{port}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        done: asyncio.Future[int] = loop.create_future()
        await loop.create_connection(lambda: _Collect(head.encode() + body, done), host, int(port))
        return await done

    started = time.perf_counter()
    await asyncio.gather(*(call(f"m{i}") for i in range(models)))
    return time.perf_counter() - started


async def sequential(url: str, models: int) -> float:
    import httpx

    async with httpx.AsyncClient(timeout=None) as http:
        started = time.perf_counter()
        for i in range(models):
            await raw_call(http, url, f"m{i}")
        return time.perf_counter() - started


# -- the run --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--tokens", type=int, default=200)
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    server, url = start_server(max(sizes), args.latency, args.tokens)
    try:
        ideal = statistics.median(asyncio.run(gather(url, 1)) for _ in range(3))
        print(
            f"fake providers: {args.latency:g}s latency, {args.tokens} streamed tokens per "
            f"answer; ideal (one model alone) {ideal:.3f}s; {os.cpu_count()} CPUs\n"
        )
        header = (
            f"{'N':>5}  {'forge':>14}  {'gather':>14}  {'forge/gather':>12}  "
            f"{'pooled gather':>14}  {'bare asyncio':>14}  {'sequential':>22}  "
            f"{'forge peak RSS':>14}"
        )
        print(header)
        print("-" * len(header))
        for n in sizes:
            row(url, n, ideal)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait()


def row(url: str, n: int, ideal: float) -> None:
    forge = measure_forge(url, n)
    plain = asyncio.run(gather(url, n))
    pooled = asyncio.run(gather(url, n, POOLED))
    floor = asyncio.run(bare(url, n))
    if n <= SEQUENTIAL_SAMPLE:
        one_by_one = asyncio.run(sequential(url, n))
        note = "measured"
    else:
        one_by_one = asyncio.run(sequential(url, SEQUENTIAL_SAMPLE)) * n / SEQUENTIAL_SAMPLE
        note = f"from {SEQUENTIAL_SAMPLE}"
    print(
        f"{n:>5}  {forge['wall']:>6.2f}s {forge['wall'] / ideal:>5.2f}x  "
        f"{plain:>6.2f}s {plain / ideal:>5.2f}x  {forge['wall'] / plain:>11.2f}x  "
        f"{pooled:>6.2f}s {pooled / ideal:>5.2f}x  "
        f"{floor:>6.2f}s {floor / ideal:>5.2f}x  "
        f"{one_by_one:>7.1f}s {one_by_one / ideal:>6.0f}x {note:>8}  "
        f"{forge['rss_mb']:>11.0f} MB",
        flush=True,
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--forge":
        forge_once(sys.argv[2], int(sys.argv[3]))
    else:
        main()
