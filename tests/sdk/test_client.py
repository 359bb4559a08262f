"""The SDK against real three-node clusters."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from shoal_client import AsyncClient, BadRequest, Client, NotFound

from tests.cluster_harness import ClusterProcesses

pytestmark = pytest.mark.cluster
Make = Callable[..., ClusterProcesses]


def urls(cluster: ClusterProcesses) -> list[str]:
    return [node.url for node in cluster.nodes.values()]


def test_crud_errors_and_reads_from_followers(make_cluster: Make) -> None:
    cluster = make_cluster(3)
    with Client(urls(cluster)[:1]) as shoal:  # one URL is enough: it learns the rest
        library = shoal.create_library("sdk", dimension=3, metric="dot")
        assert shoal.get_library(library.id).name == "sdk"  # read-your-writes on a follower
        document = shoal.add_document(library.id, chunks=[
            {"text": "one", "embedding": [1, 0, 0], "metadata": {"page_number": 1}},
            {"text": "two", "embedding": [0, 1, 0]},
        ], metadata={"title": "numbers", "tags": ["t"]})  # fmt: skip
        assert document.chunk_count == 2 and shoal.last_index > 0
        added = shoal.add_chunks(
            library.id, document.id, [{"text": "three", "embedding": [0, 0, 1]}]
        )
        shoal.update_chunk(library.id, added[0].id, text="THREE")
        assert shoal.get_chunk(library.id, added[0].id).text == "THREE"
        shoal.update_document(library.id, document.id, author="ann")
        full = shoal.get_document(library.id, document.id, include_chunks=True)
        assert full.metadata["author"] == "ann" and len(full.chunks or []) == 3
        result = shoal.query(
            library.id,
            query_embedding=[1, 0.1, 0],
            k=2,
            filters={"field": "page_number", "op": "eq", "value": 1},
        )
        assert [hit.text for hit in result.results] == ["one"]
        served = {shoal.query(library.id, query_embedding=[1, 0, 0], k=1).served_by
                  for _ in range(6)}  # fmt: skip
        assert served and cluster.leader() not in served  # reads went to followers
        assert [lib.id for lib in shoal.list_libraries()] == [library.id]
        assert [doc.id for doc in shoal.list_documents(library.id)] == [document.id]
        with pytest.raises(BadRequest, match="2 dimensions"):
            shoal.add_document(library.id, chunks=[{"text": "x", "embedding": [1, 2]}])
        with pytest.raises(NotFound, match="library nope does not exist"):
            shoal.get_library("nope")
        shoal.delete_chunk(library.id, added[0].id)
        shoal.delete_document(library.id, document.id)
        shoal.delete_library(library.id)
        with pytest.raises(NotFound):
            shoal.get_library(library.id)
        nodes = shoal.cluster_status()
        assert len(nodes) == 3 and sum(node.role == "leader" for node in nodes) == 1


# Enough that the stream is still going when the leader is killed 0.5 s in.
STREAMED = 400


def test_leader_kill_mid_stream_is_invisible_and_writes_once(make_cluster: Make) -> None:
    cluster = make_cluster(3)
    documents = [{"text": f"document number {n} about topic {n % 5}.",
                  "metadata": {"title": f"doc-{n}"}} for n in range(STREAMED)]  # fmt: skip
    with Client(urls(cluster)) as shoal:
        library = shoal.create_library("stream")
        errors: list[BaseException] = []
        added: list[Any] = []

        def stream() -> None:
            try:
                added.extend(shoal.upsert_documents(library.id, documents, concurrency=2))
            except BaseException as exc:  # noqa: BLE001 - the test reports it
                errors.append(exc)

        writer = threading.Thread(target=stream)
        writer.start()
        time.sleep(0.5)
        assert writer.is_alive(), "the stream ended before the kill: make it longer"
        cluster.kill(cluster.leader())  # in the middle of the stream
        writer.join(120)
        assert not errors, errors
        assert len(added) == STREAMED
        titles = [doc.metadata["title"] for doc in shoal.list_documents(library.id)]
        assert sorted(titles) == sorted(d["metadata"]["title"] for d in documents)  # no duplicates
        # sending the same documents again adds nothing
        shoal.upsert_documents(library.id, documents[:10])
        assert shoal.get_library(library.id).document_count == STREAMED


def test_async_client_matches_the_sync_one(make_cluster: Make) -> None:
    cluster = make_cluster(3)

    def run_sync() -> dict[str, Any]:
        with Client(urls(cluster)) as shoal:
            library = shoal.create_library("sync-twin", dimension=2)
            shoal.add_document(
                library.id,
                chunks=[{"text": "a", "embedding": [1, 0]}, {"text": "b", "embedding": [0, 1]}],
            )
            hits = shoal.query(library.id, query_embedding=[1, 0.2], k=2).results
            return {"library": shoal.get_library(library.id).chunk_count,
                    "texts": [hit.text for hit in hits],
                    "scores": [round(hit.score, 5) for hit in hits],
                    "documents": len(list(shoal.list_documents(library.id)))}  # fmt: skip

    async def run_async() -> dict[str, Any]:
        async with AsyncClient(urls(cluster)) as shoal:
            library = await shoal.create_library("async-twin", dimension=2)
            await shoal.add_document(
                library.id,
                chunks=[{"text": "a", "embedding": [1, 0]}, {"text": "b", "embedding": [0, 1]}],
            )
            hits = (await shoal.query(library.id, query_embedding=[1, 0.2], k=2)).results
            listed = [doc async for doc in shoal.list_documents(library.id)]
            with pytest.raises(NotFound):
                await shoal.get_library("nope")
            return {"library": (await shoal.get_library(library.id)).chunk_count,
                    "texts": [hit.text for hit in hits],
                    "scores": [round(hit.score, 5) for hit in hits],
                    "documents": len(listed)}  # fmt: skip

    assert asyncio.run(run_async()) == run_sync()


def test_async_client_rides_through_a_leader_kill_too(make_cluster: Make) -> None:
    cluster = make_cluster(3)
    documents = [{"text": f"async document {n} on subject {n % 3}.",
                  "metadata": {"title": f"adoc-{n}"}} for n in range(STREAMED)]  # fmt: skip

    async def run() -> tuple[int, list[str]]:
        async with AsyncClient(urls(cluster)) as shoal:
            library = await shoal.create_library("async-stream")
            upsert = asyncio.create_task(shoal.upsert_documents(library.id, documents, 2))
            await asyncio.sleep(0.5)
            assert not upsert.done(), "the stream ended before the kill: make it longer"
            await asyncio.to_thread(lambda: cluster.kill(cluster.leader()))
            added = await upsert
            titles = [doc.metadata["title"] async for doc in shoal.list_documents(library.id)]
            return len(added), titles

    count, titles = asyncio.run(run())
    assert count == STREAMED
    assert sorted(titles) == sorted(d["metadata"]["title"] for d in documents)
