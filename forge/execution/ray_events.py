"""A task's progress, streamed from its Ray node to the driver while the task runs.

On one machine the engine's TaskEvents (asking, waiting, validating, ...) reach the live table
as they happen. On a cluster the engine runs in a node's worker process, so each event is also
kept in the process's `Outbox`, which puts what it holds into one small actor of the run's
(`EventSink`, on the driver's node, no CPU) at most every FLUSH_SECONDS, in one call; a thread of
the driver's takes them out in batches and hands them to the event loop. (An actor call per
event cost more CPU, on the node and in the sink, than the rest of the streaming.)

Streaming is best effort: the task's result still carries every event it emitted, in order, and
the driver shows from it whichever the stream did not bring in time. Each event is numbered within
its send of the task (`key`, `seq`), so none is shown twice, and the stray events of a send whose
node was lost are dropped once the task is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forge.execution.engine import TaskEvent

# How long one drain call waits for the first event: the driver's thread checks this often
# whether the run has ended.
DRAIN_WAIT_SECONDS = 0.5
# How long a node's worker process gathers events before it sends them: the live table ticks
# once a second.
FLUSH_SECONDS = 0.5

Streamed = tuple[str, int, "TaskEvent"]  # (send key, number within the send, event)


class EventSink:
    """The run's actor: nodes put events, the driver drains them (a Ray async actor)."""

    def __init__(self) -> None:
        self.events: list[Streamed] = []
        self.ready = asyncio.Event()

    async def put(self, batch: list[Streamed]) -> None:
        self.events.extend(batch)
        self.ready.set()

    async def drain(self, wait: float) -> list[Streamed]:
        """Every event put since the last drain, waiting up to `wait` seconds for the first."""
        if not self.events:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ready.wait(), wait)
        taken, self.events = self.events, []
        self.ready.clear()
        return taken


class Outbox:
    """A node's worker process's events on their way to the sink: kept as they happen, and
    sent by a thread of the process's own in one call per FLUSH_SECONDS (without waiting for
    the call: the sink is on the driver's machine)."""

    def __init__(self) -> None:
        self._held: list[tuple[Any, Streamed]] = []  # (the sink, what goes to it)
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None

    def put(self, sink: Any, item: Streamed) -> None:
        with self._ready:
            self._held.append((sink, item))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._send_forever, name="forge-node-events", daemon=True
                )
                self._thread.start()
            self._ready.notify()

    def _send_forever(self) -> None:
        while True:
            with self._ready:
                while not self._held:
                    self._ready.wait()
            time.sleep(FLUSH_SECONDS)  # what else happens meanwhile goes in the same call
            with self._ready:
                held, self._held = self._held, []
            by_sink: dict[int, tuple[Any, list[Streamed]]] = {}
            for sink, item in held:
                by_sink.setdefault(id(sink), (sink, []))[1].append(item)
            for sink, batch in by_sink.values():
                with contextlib.suppress(Exception):  # best effort: results carry every event
                    sink.put.remote(batch)


def start_sink(ray: Any) -> Any:
    """The run's sink, on the driver's node when Ray can place it there (no CPU asked)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return (
        ray.remote(EventSink)
        .options(
            num_cpus=0,
            max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=True),
        )
        .remote()
    )


class EventStream:
    """The driver's side: which send of each task is current and how many of its events were
    shown, and the thread that drains the sink into the event loop."""

    def __init__(self, ray: Any, on_event: Callable[[TaskEvent], None]) -> None:
        self.ray = ray
        self.on_event = on_event
        self.sink: Any = None  # started with the first send: a run with nothing to send has none
        self.shown: dict[str, int] = {}  # send key -> events of it shown
        self.current: dict[str, str] = {}  # task id -> its current send key
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def begin(self, task_id: str, key: str) -> None:
        """A new send of the task: events of an earlier one are stale from now on."""
        old = self.current.get(task_id)
        if old is not None:
            self.shown.pop(old, None)
        self.current[task_id] = key
        self.shown[key] = 0
        if self._thread is None:
            self.sink = start_sink(self.ray)
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._drain, name="forge-ray-events")
            self._thread.daemon = True
            self._thread.start()

    def end(self, task_id: str, key: str, events: list[TaskEvent]) -> None:
        """The send returned with all its events: those the stream did not show, in order."""
        shown = self.shown.pop(key, 0)
        if self.current.get(task_id) == key:
            del self.current[task_id]
        for event in events[shown:]:
            self.on_event(event)

    def _deliver(self, batch: list[Streamed]) -> None:
        """On the event loop's thread, as every other event is."""
        for key, seq, event in batch:
            shown = self.shown.get(key)
            # A send that ended or was replaced, an event shown already, or one after a gap
            # (a batch lost on the way): the result shows those from the first not shown on.
            if shown is None or seq != shown:
                continue
            self.shown[key] = seq + 1
            self.on_event(event)

    def _drain(self) -> None:
        drain = self.sink.drain
        while not self._stop.is_set():
            try:
                batch = self.ray.get(drain.remote(DRAIN_WAIT_SECONDS))
            except Exception:  # the sink or the connection is gone: results still carry events
                return
            if batch and self._loop is not None and not self._stop.is_set():
                try:
                    self._loop.call_soon_threadsafe(self._deliver, batch)
                except RuntimeError:  # the loop closed
                    return

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * DRAIN_WAIT_SECONDS + 1)
        if self.sink is not None:
            with contextlib.suppress(Exception):  # already gone with its node
                self.ray.kill(self.sink)
