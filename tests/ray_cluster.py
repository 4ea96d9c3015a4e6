"""A real Ray cluster on this machine for the `--executor ray` tests: a head (no CPUs: it stands
for the driver's machine) and worker nodes, each a raylet of its own with its own FORGE_HOME, as
separate machines would have, started through Ray's own `ray.cluster_utils.Cluster`.

Everything listens on 127.0.0.1: Ray replaces a loopback node address with the machine's own
unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which keeps it (and which `ray start` refuses for a
second node, so the nodes are started as Ray's tests start theirs). Small object stores, no
dashboard, no usage reporting. Nodes find forge through PYTHONPATH, as an installed forge would
be found, and declare the resources `forge ray-node` would for what this machine has.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
OBJECT_STORE_BYTES = 80_000_000
# Node loss noticed in about a second, not Ray's default of about fifteen: the test of a node
# killed mid-task waits for it.
HEAD_SYSTEM_CONFIG = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}


@dataclass
class RayCluster:
    folder: Path
    cluster: Any = None
    nodes: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)
    session: Path | None = None  # Ray's folder of the cluster's logs and sockets

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def start(self) -> None:
        from ray.cluster_utils import Cluster

        from forge.config.schema import ForgeConfig
        from forge.execution.placement import probe_node

        self.resources = probe_node(ForgeConfig()).resources()
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 0,
                "node_ip_address": "127.0.0.1",
                "object_store_memory": OBJECT_STORE_BYTES,
                "include_dashboard": False,
                "resources": self.resources,
                "_system_config": HEAD_SYSTEM_CONFIG,
                "env_vars": self.node_env("head"),
            },
        )
        # Connecting points this process's PYTHONBREAKPOINT at Ray's debugger, and the forge
        # commands the tests start would inherit it (and start cold: tests/warm_forge.py).
        hook = os.environ.get("PYTHONBREAKPOINT")
        self.cluster.connect()
        if hook is None:
            os.environ.pop("PYTHONBREAKPOINT", None)
        else:
            os.environ["PYTHONBREAKPOINT"] = hook
        self.session = Path(self.cluster.head_node.get_session_dir_path())

    def node_env(self, name: str) -> dict[str, str]:
        home = self.folder / name
        return {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "FORGE_HOME": str(home / "forge-home"),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "FORGE_HOST": name,  # a shared ledger's rows say which node made each call
        }

    def add_worker(self, name: str, cpus: int = 1) -> None:
        (self.folder / name).mkdir(parents=True, exist_ok=True)
        self.nodes[name] = self.cluster.add_node(
            num_cpus=cpus,
            node_ip_address="127.0.0.1",
            object_store_memory=OBJECT_STORE_BYTES,
            resources=self.resources,
            env_vars=self.node_env(name),
        )
        self.cluster.wait_for_nodes()

    def kill(self, name: str) -> None:
        """The node's every process at once (SIGKILL), as when its machine dies.

        Ray's own removal kills the raylet, whose worker processes notice only later: a worker
        mid-call would finish its call first. Every process with the node's home goes first."""
        self._kill_every(f"FORGE_HOME={self.home(name)}".encode(), exact=True)
        self.cluster.remove_node(self.nodes.pop(name), allow_graceful=False)

    def home(self, name: str) -> Path:
        return self.folder / name / "forge-home"

    def stop(self) -> None:
        import ray

        ray.shutdown()
        if self.cluster is not None:
            for node in list(self.cluster.worker_nodes):
                self.cluster.remove_node(node, allow_graceful=False)
            if self.cluster.head_node is not None:
                self.cluster.remove_node(self.cluster.head_node, allow_graceful=False)
        self._kill_strays()

    def _kill_strays(self) -> None:
        """A node's agents (ray::DashboardAgent, ray::RuntimeEnvAgent) outlive its raylet when
        that is killed: every process still running with a home in this cluster's folder goes,
        and every one writing into this cluster's session folder (the head's agents carry no
        FORGE_HOME)."""
        self._kill_every(f"FORGE_HOME={self.folder}".encode(), exact=False)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid() and self._in_session(entry):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)

    @staticmethod
    def _kill_every(setting: bytes, exact: bool) -> None:
        """SIGKILL every process whose environment has `setting` (or a value starting so)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue  # gone already, or not ours to read
            values = environ.split(b"\0")
            if setting in values if exact else any(v.startswith(setting) for v in values):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)

    def _in_session(self, process: Path) -> bool:
        if self.session is None:
            return False
        try:
            targets = [os.readlink(fd) for fd in (process / "fd").iterdir()]
        except OSError:
            return False
        return any(t.startswith(f"{self.session}/") for t in targets)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """The head and one steady worker node; a test adds the nodes it kills. Short paths: Ray's
    sockets live under the session folder."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # this process and the forge it starts
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    with tempfile.TemporaryDirectory(prefix="forge-ray-", dir="/tmp") as folder:
        cluster = RayCluster(Path(folder))
        try:
            cluster.start()
            cluster.add_worker("steady")
            yield cluster
        finally:
            cluster.stop()
