"""Python client for Shoal: ``Client`` and ``AsyncClient``.

from shoal_client import Client

with Client(["http://127.0.0.1:7701", "http://127.0.0.1:7702"]) as shoal:
    library = shoal.create_library("papers")
    shoal.add_document(library.id, text="Shoal keeps every acknowledged write.")
    print(shoal.query(library.id, query_text="acknowledged writes", k=3).results)
"""

from shoal_client._async_client import AsyncClient
from shoal_client._client import Client
from shoal_client._errors import (
    ApiError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    FollowerBehind,
    Forbidden,
    NoLeader,
    NotFound,
    OutcomeUnknown,
    PayloadTooLarge,
    ServiceUnavailable,
    ShoalError,
    TooManyRequests,
    Unauthorized,
)
from shoal_client._models import (
    Answer,
    Chunk,
    Document,
    Hit,
    Library,
    NodeStatus,
    Peer,
    QueryResult,
    Source,
)

__all__ = [
    "Answer",
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Chunk",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Document",
    "FollowerBehind",
    "Forbidden",
    "Hit",
    "Library",
    "NoLeader",
    "NodeStatus",
    "NotFound",
    "OutcomeUnknown",
    "PayloadTooLarge",
    "Peer",
    "QueryResult",
    "ServiceUnavailable",
    "ShoalError",
    "Source",
    "TooManyRequests",
    "Unauthorized",
]
