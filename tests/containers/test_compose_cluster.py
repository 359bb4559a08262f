"""The compose cluster on a real Docker engine, with images built here and nothing pulled.

The package's fixture makes the images from Debian's packages and starts the
stack by running the README's compose block (its offline variant). Then the
failover drills of tests/cluster run on containers: a register workload with
the history checker, an SDK writer whose acknowledged documents must all be
there afterwards, at most one leader per term, and equal digests once every
container is back.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.cluster.register_workload import LeaderMonitor, RegisterWorkload, make_registers, verify
from tests.cluster.sdk_writer import SdkWriter
from tests.containers.compose import ComposeCluster, run
from tests.containers.conftest import Stack

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1500)]
RECOVERY_BOUND = 10.0  # seconds from the fault to the next acknowledged write, as for processes
LOCAL_IMAGES = {"shoal:local", "shoal-temporal:local"}


def run_drill(cluster: ComposeCluster, fault: Callable[[], float], seed: int) -> dict[str, object]:
    keys = make_registers(cluster, 3, prefix=f"register-{seed}")  # type: ignore[arg-type]
    monitor = LeaderMonitor(cluster).start()  # type: ignore[arg-type]
    workload = RegisterWorkload(cluster, keys, clients=3, seed=seed).start()  # type: ignore[arg-type]
    writer = SdkWriter(cluster.urls, f"sdk-writes-{seed}", api_key=cluster.api_key).start()
    try:
        try:
            time.sleep(2.0)
            faulted_at = fault()
            deadline = faulted_at + RECOVERY_BOUND
            while (workload.first_ok_write_after(faulted_at) is None
                   and time.monotonic() < deadline):  # fmt: skip
                time.sleep(0.1)
            recovered = workload.first_ok_write_after(faulted_at)
            assert recovered is not None, f"no write was acknowledged within {RECOVERY_BOUND}s"
            time.sleep(2.0)  # writes keep flowing under the new leader
        finally:
            ops = workload.stop()
            cluster.heal()
            for node_id in cluster.nodes:
                if node_id not in cluster.running():
                    cluster.restart(node_id, wait=True)
        documents = writer.stop_and_check()
        result = verify(cluster, ops, keys, monitor)  # type: ignore[arg-type]
    finally:  # whatever failed, no client thread outlives its drill
        writer.stop()
        monitor.stop()
    assert documents > 10 and result["counts"].get("write-ok", 0) > 10  # type: ignore[union-attr]
    result["recovery_seconds"] = recovered - faulted_at
    return result


def test_the_readme_block_started_the_stack_and_answered_a_question(stack: Stack) -> None:
    out = stack.quickstart_output
    imported = re.search(r"\] (\d+)/(\d+) documents", out)
    assert imported and imported[1] == imported[2] and int(imported[1]) > 3, out
    leaders = re.findall(r"^n[123]\s+leader\s", out, re.MULTILINE)  # `shoal status --wait`
    assert len(leaders) == 1, out
    assert "sources (retrieved from n" in out, out  # `shoal ask`, through the worker and Temporal
    cluster = stack.cluster
    assert cluster.converged(timeout=60)


def test_ports_and_networks_stay_local_and_no_image_was_pulled(stack: Stack) -> None:
    cluster = stack.cluster
    for service in (*cluster.nodes, "temporal", "worker"):
        view = cluster.inspect(service)
        assert view["Config"]["Image"] in LOCAL_IMAGES, (service, view["Config"]["Image"])
        assert set(view["NetworkSettings"]["Networks"]) == {cluster.network}, service
        for bindings in (view["NetworkSettings"]["Ports"] or {}).values():
            for binding in bindings or []:
                assert binding["HostIp"] == "127.0.0.1", (service, binding)
    # nothing was pulled while the images were built and the stack started
    since = ["--since", stack.engine_since, "--until", "0s"]
    pulls = run("docker", "events", *since, "--filter", "type=image", "--filter", "event=pull",
                "--format", "{{.ID}}")  # fmt: skip
    assert pulls.stdout.strip() == "", f"images were pulled: {pulls.stdout}"


def test_healthchecks_pass_with_what_the_images_really_have(stack: Stack) -> None:
    cluster = stack.cluster
    deadline = time.monotonic() + 90
    health: dict[str, str] = {}
    while time.monotonic() < deadline:
        health = {service: cluster.inspect(service)["State"].get("Health", {}).get("Status", "none")
                  for service in (*cluster.nodes, "temporal")}  # fmt: skip
        if set(health.values()) == {"healthy"} or "unhealthy" in health.values():
            break
        time.sleep(1.0)
    assert set(health.values()) == {"healthy"}, health


def test_leader_container_killed_under_load(stack: Stack) -> None:
    cluster = stack.cluster

    def fault() -> float:
        leader = cluster.leader()
        moment = time.monotonic()
        cluster.kill(leader)
        return moment

    run_drill(cluster, fault, seed=21)


def test_leader_container_paused_for_ten_seconds(stack: Stack) -> None:
    cluster = stack.cluster
    paused: list[str] = []

    def fault() -> float:
        leader = cluster.leader()
        moment = time.monotonic()
        cluster.pause(leader)
        paused.append(leader)
        # the other two elect a leader while this one is frozen
        cluster.leader(timeout=RECOVERY_BOUND, exclude=(leader,))
        time.sleep(max(0.0, moment + 10.0 - time.monotonic()))
        cluster.resume(leader)
        return moment

    run_drill(cluster, fault, seed=22)
    view = cluster.status(paused[0])
    assert view is not None and view["role"] == "follower"


def test_leader_disconnected_from_the_compose_network(stack: Stack) -> None:
    cluster = stack.cluster

    def fault() -> float:
        leader = cluster.leader()
        moment = time.monotonic()
        cluster.disconnect(leader)
        time.sleep(6.0)
        cluster.leader(timeout=20, exclude=(leader,))  # the other two elected one
        cluster.reconnect(leader)
        return moment

    run_drill(cluster, fault, seed=23)


def test_docker_stop_is_a_clean_exit_and_a_crashed_node_is_restarted_by_docker(
    stack: Stack,
) -> None:
    cluster = stack.cluster
    follower = next(n for n in cluster.nodes if n != cluster.leader())
    started = time.monotonic()
    run("docker", "stop", "--time", "20", cluster.container(follower), timeout=60)
    took = time.monotonic() - started
    state = cluster.inspect(follower)["State"]
    assert state["ExitCode"] == 0 and took < 15, (state, took)
    cluster.restart(follower, wait=True)
    # A crash (SIGKILL from the host): the restart policy brings it back.
    crashed = next(n for n in cluster.nodes if n != cluster.leader())
    before = cluster.inspect(crashed)["RestartCount"]
    os.kill(int(cluster.inspect(crashed)["State"]["Pid"]), signal.SIGKILL)
    deadline = time.monotonic() + 60
    while cluster.inspect(crashed)["RestartCount"] == before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert cluster.inspect(crashed)["RestartCount"] > before, "Docker did not restart the node"
    cluster.wait_ready(crashed)
    cluster.converged(timeout=60)


def _inside(cluster: ComposeCluster, container: str, path: str) -> dict[str, Any] | None:
    """GET a path of the node in a container from inside it (replicas
    publish no port), or None while it does not answer."""
    # with the key the container itself was given
    script = ("import os, sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
              f"urllib.request.Request('http://127.0.0.1:7700{path}', headers={{'X-API-Key': "
              "os.environ['SHOAL_API_KEY']}), timeout=5).read().decode())")  # fmt: skip
    done = run("docker", "exec", container, "python", "-c", script, check=False, timeout=30)
    return json.loads(done.stdout) if done.returncode == 0 else None


def _replicas(cluster: ComposeCluster) -> list[str]:
    return cluster.compose("--profile", "replicas", "ps", "-q", "replica").stdout.split()


def _scale_replicas(cluster: ComposeCluster, count: int) -> None:
    cluster.compose("--profile", "replicas", "up", "-d", "--no-build", "--no-recreate",
                    "--scale", f"replica={count}", "replica", timeout=240)  # fmt: skip


def _learners(cluster: ComposeCluster) -> set[str]:
    view = cluster.status(cluster.leader())
    assert view is not None
    return {member["id"] for member in view["members"] if not member["voter"]}


def test_read_replicas_join_on_scale_serve_reads_and_are_removed(stack: Stack) -> None:
    cluster = stack.cluster
    from shoal_client import Client

    with Client(cluster.urls, api_key=cluster.api_key) as client:
        library = client.create_library("replicated", dimension=2).id
        for n in range(10):
            client.add_document(library, chunks=[{"text": f"r{n}", "embedding": [1.0, n]}])
    leader_view = cluster.status(cluster.leader())
    assert leader_view is not None
    written = int(leader_view["commit_index"])
    secret = ["--cluster-secret", cluster.env["SHOAL_CLUSTER_SECRET"]]
    volumes: list[str] = []
    try:
        _scale_replicas(cluster, 2)
        containers = _replicas(cluster)
        assert len(containers) == 2
        volumes += [mount["Name"] for container in containers
                    for mount in json.loads(run("docker", "inspect", container).stdout)[0]["Mounts"]
                    if mount["Type"] == "volume"]  # fmt: skip
        ids: dict[str, str] = {}
        deadline = time.monotonic() + 180
        while len(ids) < 2 or any(
            (view := _inside(cluster, c, "/cluster")) is None
            or view["role"] != "learner" or view["applied_index"] < written
            for c in containers
        ):  # fmt: skip
            assert time.monotonic() < deadline, "the replicas did not join and catch up"
            for container in containers:
                view = _inside(cluster, container, "/cluster")
                if view is not None:
                    ids[container] = view["node_id"]
            time.sleep(1.0)
        # named after their containers, learners of the voters' cluster
        for container, node_id in ids.items():
            hostname = run("docker", "inspect", "--format", "{{.Config.Hostname}}",
                           container).stdout.strip()  # fmt: skip
            assert node_id == f"r-{hostname}"
            stored = _inside(cluster, container, f"/libraries/{library}")
            assert stored is not None and stored["document_count"] == 10
        assert _learners(cluster) == set(ids.values())
        # Scaling down stops a container; it stays a member until removed.
        _scale_replicas(cluster, 1)
        (kept,) = _replicas(cluster)
        for container, node_id in ids.items():
            if container != kept:
                done = run(sys.executable, "-m", "node.cli", "cluster", "remove", node_id,
                           "--url", cluster.urls, *secret,
                           check=False, env=cluster.env)  # fmt: skip
                assert done.returncode == 0, done.stderr
        assert _learners(cluster) == {ids[kept]}
    finally:  # no replica outlives the test, whatever failed above
        _scale_replicas(cluster, 0)
        cluster.compose("--profile", "replicas", "rm", "-f", "-v", "replica", check=False)
        if volumes:
            run("docker", "volume", "rm", *volumes, check=False)
    for node_id in _learners(cluster):
        done = run(sys.executable, "-m", "node.cli", "cluster", "remove", node_id,
                   "--url", cluster.urls, *secret, check=False, env=cluster.env)  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert _learners(cluster) == set()
    cluster.converged(timeout=60)


def test_down_and_up_brings_every_write_back(stack: Stack) -> None:
    cluster = stack.cluster
    from shoal_client import Client

    with Client(cluster.urls, api_key=cluster.api_key) as client:
        library = client.create_library("kept", dimension=2).id
        for n in range(20):
            client.add_document(library, chunks=[{"text": f"k{n}", "embedding": [1.0, n]}])
    digest = cluster.converged(timeout=60)
    # every container stops on SIGTERM, cleanly and well inside the timeout
    started = time.monotonic()
    cluster.compose("stop", "--timeout", "20")
    took = time.monotonic() - started
    codes = {service: cluster.inspect(service)["State"]["ExitCode"]
             for service in (*cluster.nodes, "temporal", "worker")}  # fmt: skip
    assert set(codes.values()) == {0} and took < 20, (codes, took)
    cluster.down()
    cluster.up()
    assert cluster.converged(timeout=60) == digest
    with Client(cluster.urls, api_key=cluster.api_key) as client:
        assert client.get_library(library).document_count == 20


def test_nothing_but_name_lookups_left_for_outside_the_host(stack: Stack) -> None:
    """Last: everything above ran with the counter in place. The Temporal dev
    server's start asks the host's resolver two DNS questions; nothing else
    may leave a compose network for anywhere but another container."""
    assert stack.egress.packets() == 0, "packets left the compose network for outside the host"
