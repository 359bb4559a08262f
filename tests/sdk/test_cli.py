"""`shoal status`, `shoal import` and `shoal query` against a real cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.cluster_harness import ClusterProcesses
from tests.harness import REPO, NodeProcess

pytestmark = pytest.mark.cluster


def shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_status_import_query(make_cluster: Callable[..., ClusterProcesses], tmp_path: Path) -> None:
    cluster = make_cluster(3)
    urls = ",".join(node.url for node in cluster.nodes.values())
    table = shoal("status", "--url", urls)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["NODE", "ROLE", "TERM"] and len(lines) == 4
    assert sum(" leader " in line for line in lines) == 1

    from shoal_client import Client

    with Client(urls.split(",")) as client:
        library = client.create_library("imported")
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "whales.txt").write_text("Blue whales are the largest animals ever known.")
    (folder / "bees.md").write_text("Honey bees dance to tell the hive where flowers are.")
    (folder / "ignored.bin").write_bytes(b"\0\1")
    loaded = shoal("import", str(folder), "--library", library.id, "--url", urls)
    assert loaded.returncode == 0, loaded.stderr
    assert "2/2 documents" in loaded.stderr
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": f"Fact {n}: octopuses have {n} arms.",
                                           "metadata": {"title": f"fact-{n}"}})
                               for n in range(5)) + "\n")  # fmt: skip
    assert shoal("import", str(jsonl), "--library", library.id, "--url", urls).returncode == 0
    # importing the same file again adds nothing
    assert shoal("import", str(jsonl), "--library", library.id, "--url", urls).returncode == 0
    with Client(urls.split(",")) as client:
        assert client.get_library(library.id).document_count == 7
    found = shoal("query", "largest animals", "--library", library.id, "--url", urls, "-k", "1")
    assert found.returncode == 0 and "Blue whales" in found.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "no text"}\n')
    refused = shoal("import", str(bad), "--library", library.id, "--url", urls)
    assert refused.returncode == 1 and "needs 'text' or 'chunks'" in refused.stderr


def test_status_waits_for_a_starting_node(start_node: Callable[..., NodeProcess]) -> None:
    node = start_node(wait=False)
    table = shoal("status", "--url", node.url, "--wait", "60")
    assert table.returncode == 0, table.stdout + table.stderr
    (row,) = table.stdout.splitlines()[1:]
    assert row.split()[1] == "leader" and row.split()[6] == "yes"
    # nothing listening: it waits as long as it was told, then says so
    gone = shoal("status", "--url", "http://127.0.0.1:9", "--wait", "1")
    assert gone.returncode == 1 and "no node answered" in gone.stdout


def test_library_create_list_delete(shared_node: NodeProcess) -> None:
    url = shared_node.url
    made = shoal("library", "create", "cli-made", "--dimension", "3", "--index-type", "hnsw",
                 "--index-params", '{"M": 8}', "--metric", "dot", "--url", url)  # fmt: skip
    assert made.returncode == 0, made.stderr
    library_id = made.stdout.strip()
    stored = httpx.get(f"{url}/libraries/{library_id}").json()
    assert (stored["name"], stored["dimension"], stored["index_type"], stored["metric"]) == (
        "cli-made", 3, "hnsw", "dot")  # fmt: skip
    assert stored["index_params"]["M"] == 8
    listed = shoal("library", "list", "--url", url)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:3] == ["ID", "NAME", "INDEX"]
    assert any(row.split()[:4] == [library_id, "cli-made", "hnsw", "dot"] for row in rows)
    # a refusal is a sentence from the server, and exit code 1
    taken = shoal("library", "create", "cli-made", "--url", url)
    assert taken.returncode == 1 and "cli-made" in taken.stderr, taken.stderr
    bad = shoal("library", "create", "x", "--index-params", "[1]", "--url", url)
    assert bad.returncode == 1 and "JSON object" in bad.stderr
    gone = shoal("library", "delete", library_id, "--url", url)
    assert gone.returncode == 0 and library_id in gone.stdout
    assert httpx.get(f"{url}/libraries/{library_id}").status_code == 404
    again = shoal("library", "delete", library_id, "--url", url)
    assert again.returncode == 1 and "shoal:" in again.stderr
