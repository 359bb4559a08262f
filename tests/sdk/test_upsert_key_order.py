"""An upsert sent again with its metadata in another key order is the same
write: the SDK sends a write's body with sorted keys, and the node ties an
Idempotency-Key to the body's bytes."""

from __future__ import annotations

import uuid

from tests.harness import NodeProcess


def test_an_upsert_with_reordered_metadata_adds_nothing(shared_node: NodeProcess) -> None:
    from shoal_client import Client

    with Client(shared_node.url) as shoal:
        library = shoal.create_library(f"order-{uuid.uuid4().hex[:8]}", dimension=2)
        chunk = {"text": "same", "embedding": [1.0, 2.0]}
        first = {"chunks": [chunk], "metadata": {"title": "t", "author": "a"}}
        again = {"metadata": {"author": "a", "title": "t"}, "chunks": [chunk]}
        one = shoal.upsert_documents(library.id, [first])
        two = shoal.upsert_documents(library.id, [again])
        assert [d.id for d in one] == [d.id for d in two]
        assert len(list(shoal.list_documents(library.id))) == 1
