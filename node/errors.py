"""The one error tree of the node, rendered as RFC 9457 problem+json.

Every error carries a sentence a person understands in ``detail``. Routes
raise these; :func:`install_error_handlers` is the only place they become
HTTP responses.
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://shoal.dev/problems/"


class ShoalError(Exception):
    status = 500
    slug = "internal-error"
    title = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {}

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class InvalidRequest(ShoalError):
    status = 422
    slug = "invalid-request"
    title = "The request is not valid"


class DimensionMismatch(InvalidRequest):
    slug = "dimension-mismatch"
    title = "Vector dimension does not match the library"


class InvalidFilter(InvalidRequest):
    slug = "invalid-filter"
    title = "The filter is not valid"


class MalformedBody(ShoalError):
    status = 400
    slug = "malformed-body"
    title = "The request body could not be read"


class NotFound(ShoalError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(ShoalError):
    status = 409
    slug = "conflict"
    title = "Conflict with the current state"


class AlreadyApplied(Conflict):
    """A retried keyed write whose first answer was too large to remember."""

    slug = "already-applied"
    title = "This write was already applied"


class IdempotencyKeyReused(InvalidRequest):
    """A key already used for another request (the IETF draft's 422)."""

    slug = "idempotency-key-reused"
    title = "This Idempotency-Key was used for a different request"


class PayloadTooLarge(ShoalError):
    status = 413
    slug = "payload-too-large"
    title = "Request body too large"


class Unauthorized(ShoalError):
    status = 401
    slug = "unauthorized"
    title = "Missing or wrong API key"


class RoleTooLow(ShoalError):
    status = 403
    slug = "role-too-low"
    title = "The API key's role does not allow this request"


class PeerCertificateMissing(ShoalError):
    status = 403
    slug = "peer-certificate-missing"
    title = "Cluster endpoints need a peer certificate"


class Unavailable(ShoalError):
    status = 503
    slug = "unavailable"
    title = "The node cannot serve this request now"

    def __init__(self, detail: str, retry_after: int = 1, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["Retry-After"] = str(retry_after)


class TooManyRequests(ShoalError):
    status = 429
    slug = "too-many-requests"
    title = "Too many requests; slow down"

    def __init__(self, detail: str, retry_after: int = 1, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["Retry-After"] = str(retry_after)


class NotLeaderError(ShoalError):
    """Writes (and linearizable reads) go to the leader: answered 307."""

    status = 307
    slug = "not-leader"
    title = "This node is a follower; the leader takes writes"

    def __init__(self, leader_id: str, leader_url: str) -> None:
        super().__init__(
            f"this node does not lead; send the request to the leader {leader_id} at {leader_url}",
            leader_id=leader_id,
            leader_url=leader_url,
        )
        self.leader_url = leader_url


class NoLeader(Unavailable):
    slug = "no-leader"
    title = "No leader is known right now"


class OutcomeUnknown(Unavailable):
    """The write may still be applied: retry with the same Idempotency-Key."""

    slug = "outcome-unknown"
    title = "The write may or may not have been applied"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, outcome="unknown")


class WriteNotApplied(Unavailable):
    slug = "write-not-applied"
    title = "The write was not applied"


class FollowerBehind(Unavailable):
    slug = "follower-behind"
    title = "This node has not caught up to the requested index"


class EmbeddingUnavailable(Unavailable):
    slug = "embedding-unavailable"
    title = "The embedding provider is not answering"


class StorageFailure(Unavailable):
    slug = "storage-failure"
    title = "The node could not make the write durable"


class NodeFailed(Unavailable):
    slug = "node-failed"
    title = "This node has failed and stopped serving; use another node"


class ApplyFailed(ShoalError):
    """A logged write that failed while applying: a bug, recorded alike on every node."""

    slug = "apply-failed"
    title = "The write was logged but could not be applied"


# Errors a committed command can produce deterministically while applying.
# The state machine records them by name; the service re-raises them.
APPLY_ERRORS: dict[str, type[ShoalError]] = {
    cls.__name__: cls
    for cls in (
        NotFound,
        Conflict,
        InvalidRequest,
        DimensionMismatch,
        ApplyFailed,
        AlreadyApplied,
        IdempotencyKeyReused,
    )  # fmt: skip
}
