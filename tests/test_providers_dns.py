"""A provider whose host name does not resolve, through the real CLI. Each run is in a network
namespace of its own (`unshare` with a user namespace: no root needed), so no query leaves the
machine (util-linux's unshare and iproute2's ip, which `.ci/run` installs when missing): with no
resolver the lookup fails for now; with a resolver on the namespace's loopback that answers
"no such name", it fails for good."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

CONFIG = """
[providers.far]
base_url = "https://no-such-host.invalid/v1"

[models.far-model]
provider = "far"
id = "far-1"
tier = "cheap"
input_price = 1
output_price = 1
"""

# A resolver for the namespace: every question is answered "no such name" (RCODE 3).
NXDOMAIN = """
import socket, sys
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("127.0.0.1", 53))
print("ready", flush=True)
while True:
    query, peer = server.recvfrom(512)
    flags = 0x8183 if query[2] & 0x01 else 0x8083  # a response, recursion as asked; NXDOMAIN
    server.sendto(query[:2] + flags.to_bytes(2, "big") + query[4:6] + bytes(6) + query[12:], peer)
"""


# Its own network, mounts and processes: the resolver dies with the shell, whatever happens.
NAMESPACES = ("unshare", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--kill-child")


def fanout_in_a_namespace(tmp_path: Path, resolver: bool) -> dict[str, object]:
    config = tmp_path / "forge.toml"
    config.write_text(CONFIG, encoding="utf-8")
    forge = shlex.join([sys.executable, "-m", "forge", "fanout", "hi", "-m", "far-model"])
    script = f"{forge} -c {shlex.quote(str(config))} --json"
    if resolver:
        (tmp_path / "nxdomain.py").write_text(NXDOMAIN, encoding="utf-8")
        (tmp_path / "resolv.conf").write_text("nameserver 127.0.0.1\n", encoding="utf-8")
        here = shlex.quote(str(tmp_path))
        script = "\n".join(
            [
                "set -e",
                f"ip link set lo up; mount --bind {here}/resolv.conf /etc/resolv.conf",
                f"{shlex.quote(sys.executable)} {here}/nxdomain.py > {here}/ready 2>&1 &",
                "resolver=$!",
                f"until [ -s {here}/ready ]; do sleep 0.05; done",
                "set +e",
                script,
                "code=$?; kill $resolver; exit $code",
            ]
        )
    done = subprocess.run(
        [*NAMESPACES, "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 4, (done.returncode, done.stderr)
    answers = json.loads(done.stdout)["answers"]
    answer: dict[str, object] = answers[0]
    return answer


def test_a_host_that_does_not_exist_fails_once_saying_to_check_the_host(tmp_path: Path) -> None:
    answer = fanout_in_a_namespace(tmp_path, resolver=True)
    assert answer["status"] == "failed"
    cause = str(answer["cause"])
    assert "no-such-host.invalid does not resolve (" in cause, cause
    assert "check the host in base_url (base_url of [providers.far])" in cause
    assert answer["attempts"] == 1, "the same answer comes back on a retry"


def test_a_lookup_that_fails_for_now_asks_about_the_network_and_is_retried(
    tmp_path: Path,
) -> None:
    answer = fanout_in_a_namespace(tmp_path, resolver=False)
    assert answer["status"] == "failed"
    cause = str(answer["cause"])
    assert "no-such-host.invalid could not be resolved now (" in cause, cause
    assert "is the network up?" in cause
    assert int(str(answer["attempts"])) > 1, "a resolver that did not answer may answer next"
