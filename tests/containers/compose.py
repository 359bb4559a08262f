"""The compose cluster on a real Docker engine, driven as the drills drive processes.

``DockerEngine`` starts dockerd when none answers and stops only what it
started. ``ComposeCluster`` runs ``docker-compose.cluster.yml`` with the
offline override under a project of its own, and offers the interface of
``tests.cluster_harness.ClusterProcesses`` that the register workload, the
leader monitor and ``verify`` use (its views are the same ``ClusterViews``),
with faults made by Docker itself: kill, pause (the cgroup freezer), and
disconnection from the compose network.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.cluster_harness import ClusterViews
from tests.harness import REPO

COMPOSE_FILES = ("docker-compose.cluster.yml", "deploy/compose.offline.yml")
NODE_PORTS = {"n1": 7701, "n2": 7702, "n3": 7703}


def unavailable() -> str | None:
    """Why the container drills cannot run here, or None."""
    if os.geteuid() != 0:
        return "the container drills start dockerd and build images: run as root"
    for tool in ("dockerd", "docker", "docker-compose", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (bash deploy/install-test-tools.sh installs it)"
    return None


def run(*args: str, timeout: float = 120.0, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run a command in a session of its own; on a timeout the whole group
    goes (a script's docker build or compose with it, not just the shell)."""
    process = subprocess.Popen(list(args), cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)  # fmt: skip
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    done = subprocess.CompletedProcess(list(args), process.returncode, out, err)
    if check:
        done.check_returncode()
    return done


class DockerEngine:
    """The Docker engine the drills use. One that already runs is used and
    left alone; one started here is stopped afterwards, and the host's
    firewall rules, which dockerd rewrites (FORWARD's policy becomes DROP),
    are put back as they were."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = ""
        self._firewall: str | None = None

    def answers(self) -> bool:
        return run("docker", "info", timeout=20, check=False).returncode == 0

    def start(self, timeout: float = 60.0) -> DockerEngine:
        if not self.answers():
            saved = run("iptables-save", check=False)
            self._firewall = saved.stdout if saved.returncode == 0 else None
            with open(self.log, "ab") as out:
                self.process = subprocess.Popen(["dockerd"], stdout=out, stderr=out)
            deadline = time.monotonic() + timeout
            while not self.answers():
                if self.process.poll() is not None:
                    raise RuntimeError(f"dockerd exited with {self.process.returncode}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"dockerd did not answer within {timeout}s")
                time.sleep(0.5)
        clock = run("docker", "system", "info", "--format", "{{.SystemTime}}")
        self.started_at = clock.stdout.strip()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self._firewall is not None:
            subprocess.run(["iptables-restore"], input=self._firewall, text=True,
                           capture_output=True, timeout=30, check=False)  # fmt: skip
        run("ip", "link", "del", "docker0", check=False)


class EgressCounter:
    """Counts packets that leave any compose network (a ``br-*`` bridge) for
    an interface that is not one: traffic to outside the host. DNS questions
    the engine's resolver forwards to the host's are let through uncounted.
    Rules in DOCKER-USER, the chain docker leaves to its users."""

    RULES = (
        ["-i", "br-+", "!", "-o", "br-+", "-p", "udp", "--dport", "53", "-j", "RETURN"],
        ["-i", "br-+", "!", "-o", "br-+", "-m", "comment", "--comment", "shoal-egress",
         "-j", "RETURN"],
    )  # fmt: skip

    def install(self) -> EgressCounter:
        for position, rule in enumerate(self.RULES, start=1):
            run("iptables", "-I", "DOCKER-USER", str(position), *rule)
        return self

    def packets(self) -> int:
        listing = run("iptables", "-L", "DOCKER-USER", "-v", "-n", "-x").stdout
        (line,) = [line for line in listing.splitlines() if "shoal-egress" in line]
        return int(line.split()[0])

    def remove(self) -> None:
        for rule in self.RULES:
            run("iptables", "-D", "DOCKER-USER", *rule, check=False)


@dataclass
class ContainerNode:
    node_id: str
    url: str


class ComposeCluster(ClusterViews):
    """Three node containers, Temporal and the worker, under ``project``."""

    def __init__(self, project: str, secret: str, api_key: str) -> None:
        self.project = project
        self.env = {**os.environ, "SHOAL_CLUSTER_SECRET": secret, "COMPOSE_PROJECT_NAME": project}
        self.use_api_key(api_key)
        self.nodes = {n: ContainerNode(n, f"http://127.0.0.1:{p}") for n, p in NODE_PORTS.items()}
        self.urls = ",".join(node.url for node in self.nodes.values())
        self.network = f"{project}_default"
        self._stopped: set[str] = set()  # killed or stopped: not running
        self._paused: set[str] = set()
        self._cut: set[str] = set()
        self._ids: dict[str, str] = {}

    def use_api_key(self, api_key: str) -> None:
        """The key the nodes were started with: compose, the CLI and clients use it."""
        self.api_key = api_key
        self.env["SHOAL_API_KEY"] = api_key
        self.api_headers = {"X-API-Key": api_key}

    # ------------------------------------------------------------ compose
    def compose(self, *args: str, timeout: float = 180.0,
                check: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
        files = [word for name in COMPOSE_FILES for word in ("-f", name)]
        return run("docker-compose", "-p", self.project, *files, *args,
                   timeout=timeout, check=check, env=self.env)  # fmt: skip

    def up(self, timeout: float = 120.0) -> ComposeCluster:
        self.compose("up", "-d", "--no-build")
        self._ids.clear()
        self._stopped.clear()
        self.leader(timeout=timeout)
        return self

    def down(self, volumes: bool = False) -> None:
        self.compose("down", *(["--volumes"] if volumes else []))
        self._ids.clear()
        self._stopped = set(self.nodes)

    def remove_everything(self) -> None:
        """After the tests, whatever state they left: every container,
        volume and network labelled with this project goes."""
        # with the profile: `down` leaves containers of services it does not see
        done = self.compose("--profile", "replicas", "down", "--volumes", "--timeout", "20",
                            check=False)  # fmt: skip
        if done.returncode == 0:
            return
        label = f"label=com.docker.compose.project={self.project}"
        for kind, listing in (("container", ["ps", "-aq"]), ("volume", ["volume", "ls", "-q"]),
                              ("network", ["network", "ls", "-q"])):  # fmt: skip
            found = run("docker", *listing, "--filter", label, check=False).stdout.split()
            if found:
                remove = ["rm", "-f"] if kind == "container" else [kind, "rm"]
                run("docker", *remove, *found, check=False)

    def container(self, service: str) -> str:
        """The service's container id (kept: kill, start, pause and network
        changes keep the container; only up and down make new ones)."""
        if service not in self._ids:
            found = self.compose("ps", "-q", service).stdout.split()
            assert len(found) == 1, f"{service}: containers {found}"
            self._ids[service] = found[0]
        return self._ids[service]

    def inspect(self, service: str) -> dict[str, Any]:
        import json

        (view,) = json.loads(run("docker", "inspect", self.container(service)).stdout)
        return dict(view)

    # -------------------------------------------------------------- faults
    def kill(self, node_id: str) -> None:
        run("docker", "kill", self.container(node_id))
        self._stopped.add(node_id)

    def restart(self, node_id: str, wait: bool = False) -> None:
        run("docker", "start", self.container(node_id))
        self._stopped.discard(node_id)
        if wait:
            self.wait_ready(node_id)

    def pause(self, node_id: str) -> None:
        run("docker", "pause", self.container(node_id))
        self._paused.add(node_id)

    def resume(self, node_id: str) -> None:
        run("docker", "unpause", self.container(node_id))
        self._paused.discard(node_id)

    def disconnect(self, node_id: str) -> None:
        run("docker", "network", "disconnect", self.network, self.container(node_id))
        self._cut.add(node_id)

    def reconnect(self, node_id: str) -> None:
        # The service name is an alias compose gave on creation; a plain
        # connect would leave the other nodes unable to resolve it.
        run("docker", "network", "connect", "--alias", node_id, self.network,
            self.container(node_id))  # fmt: skip
        self._cut.discard(node_id)

    def heal(self, timeout: float = 30.0) -> None:  # noqa: ARG002 - the harness's signature
        for node_id in list(self._paused):
            self.resume(node_id)
        for node_id in list(self._cut):
            self.reconnect(node_id)

    def running(self) -> list[str]:
        return [n for n in self.nodes if n not in self._stopped]

    # --------------------------------------------------------------- views
    def wait_ready(self, node_id: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.nodes[node_id].url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{node_id} was not ready within {timeout}s")

    def client(self, node_id: str) -> httpx.Client:
        return httpx.Client(base_url=self.nodes[node_id].url, timeout=30,
                            headers=self.api_headers)  # fmt: skip
