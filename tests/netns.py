"""A cluster whose nodes live in network namespaces, cut apart by iptables.

Each node runs in a namespace of its own (``ip netns exec``), with one veth
link to a bridge in the test's namespace; the tests' clients reach the
nodes through that bridge. Faults are real packet filters in the nodes'
namespaces: dropped packets, not refused connections, so TCP retries and
timeouts are the ones a real partition causes. Every name and address is
made here and removed on close; traffic goes nowhere else.

Needs root, ``ip`` and ``iptables``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from tests.cluster_harness import ClusterProcesses

SUBNET = "10.231.77"  # addresses exist only inside the namespaces made below
BRIDGE_ADDRESS = f"{SUBNET}.254"
NODE_PORT = 7700


def available() -> str | None:
    """Why namespace drills cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (deploy/install-test-tools.sh installs it)"
    return None


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=30)


class NamespaceCluster(ClusterProcesses):
    """ClusterProcesses whose node ``nK`` lives in namespace ``<tag>-nK`` at
    ``SUBNET.K``. ``close()`` removes everything it made."""

    def __init__(self, root: Path, size: int = 3, *extra: str, tag: str = "shoal",
                 election_timeout: float = 1.0) -> None:  # fmt: skip
        self.tag = tag[:8]
        self.bridge = f"{self.tag}-br"
        self.addresses = {f"n{i + 1}": f"{SUBNET}.{i + 1}" for i in range(size)}
        super().__init__(root, size, *extra, election_timeout=election_timeout)
        self.peers = ",".join(
            f"{node}=http://{address}:{NODE_PORT}" for node, address in self.addresses.items()
        )
        for node_id, node in self.nodes.items():
            node.host = self.addresses[node_id]
            node.port = NODE_PORT
            node.wrapper = ["ip", "netns", "exec", self.namespace(node_id)]
            # a namespace's address is not loopback: the node asks for a key
            # unless told --insecure (only the test's own namespaces reach it)
            node.args = ["--host", node.host, "--peers", self.peers, "--insecure", *extra]
        self._made = False

    def namespace(self, node_id: str) -> str:
        return f"{self.tag}-{node_id}"

    # ------------------------------------------------------------- network
    def build(self) -> NamespaceCluster:
        self._made = True
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        # Frames crossing a bridge pass the host's FORWARD chain when
        # br_netfilter is loaded, and a Docker engine sets that chain's policy
        # to DROP: let this bridge's own traffic through whatever else is there.
        _run("iptables", *self._forward_rule("-I"))
        for node_id, address in self.addresses.items():
            namespace, outside = self.namespace(node_id), f"{self.tag}-{node_id}-o"
            _run("ip", "netns", "add", namespace)
            _run("ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0",
                 "netns", namespace)  # fmt: skip
            _run("ip", "link", "set", outside, "master", self.bridge)
            _run("ip", "link", "set", outside, "up")
            inside = ["ip", "netns", "exec", namespace]
            _run(*inside, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
            _run(*inside, "ip", "link", "set", "eth0", "up")
            _run(*inside, "ip", "link", "set", "lo", "up")
        return self

    def close(self) -> None:
        self.stop()
        if not self._made:
            return
        for node_id in self.addresses:
            with contextlib.suppress(subprocess.CalledProcessError):
                _run("ip", "link", "del", f"{self.tag}-{node_id}-o")  # and its peer
            with contextlib.suppress(subprocess.CalledProcessError):
                _run("ip", "netns", "del", self.namespace(node_id))
        with contextlib.suppress(subprocess.CalledProcessError):
            _run("ip", "link", "del", self.bridge)
        with contextlib.suppress(subprocess.CalledProcessError):
            _run("iptables", *self._forward_rule("-D"))

    def _forward_rule(self, action: str) -> list[str]:
        return [action, "FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]

    # -------------------------------------------------------------- faults
    def _filter(self, node_id: str, *rule: str) -> None:
        _run("ip", "netns", "exec", self.namespace(node_id), "iptables", *rule)

    def drop_between(self, a: str, b: str) -> None:
        """Packets between nodes ``a`` and ``b`` are lost, both ways."""
        self.drop_from(a, b)
        self.drop_from(b, a)

    def drop_from(self, node_id: str, source: str) -> None:
        """``node_id`` stops hearing ``source`` (one way: it can still send)."""
        address = BRIDGE_ADDRESS if source == "client" else self.addresses[source]
        self._filter(node_id, "-A", "INPUT", "-s", address, "-j", "DROP")

    def lossy_links(self, probability: float) -> None:
        """Every node loses this share of the packets it receives from peers."""
        for node_id in self.addresses:
            self._filter(node_id, "-A", "INPUT", "!", "-s", BRIDGE_ADDRESS, "-m", "statistic",
                         "--mode", "random", "--probability", str(probability),
                         "-j", "DROP")  # fmt: skip

    def split_net(self, groups: list[list[str]], client_with: list[str] | None = None) -> None:
        """Only nodes in the same group hear each other; with ``client_with``,
        the clients reach only that group."""
        self.clear_filters()
        for group in groups:
            for node_id in group:
                for other in self.addresses:
                    if other not in group:
                        self.drop_from(node_id, other)
                if client_with is not None and node_id not in client_with:
                    self.drop_from(node_id, "client")

    def clear_filters(self) -> None:
        for node_id in self.addresses:
            self._filter(node_id, "-F", "INPUT")

    def heal(self, timeout: float = 30.0) -> None:
        self.clear_filters()
