"""The exceptions a Shoal client raises.

    ShoalError
    ├── ConnectionFailed          no node could be reached
    └── ApiError                  a node answered with a problem (status, type, detail)
        ├── BadRequest            400, 422: the request is wrong; nothing was written
        ├── Unauthorized          401: missing or wrong API key
        ├── Forbidden             403: the key's role does not allow the request
        ├── NotFound              404
        ├── Conflict              409: a name or id is already in use
        ├── PayloadTooLarge       413
        ├── TooManyRequests       429 after the client's waits and retries ran out
        └── ServiceUnavailable    503 after the client's retries ran out
            ├── NoLeader
            ├── OutcomeUnknown    the write may or may not be applied
            └── FollowerBehind

Every message carries the server's own sentence (the problem's ``detail``).
"""

from __future__ import annotations

from typing import Any


class ShoalError(Exception):
    pass


class ConnectionFailed(ShoalError):
    pass


class ApiError(ShoalError):
    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.type = str(problem.get("type", ""))
        self.detail = str(problem.get("detail") or problem.get("title") or "no detail")
        super().__init__(f"{status}: {self.detail}")


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class PayloadTooLarge(ApiError):
    pass


class TooManyRequests(ApiError):
    pass


class ServiceUnavailable(ApiError):
    pass


class NoLeader(ServiceUnavailable):
    pass


class OutcomeUnknown(ServiceUnavailable):
    pass


class FollowerBehind(ServiceUnavailable):
    pass


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest, 422: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
    409: Conflict, 413: PayloadTooLarge, 429: TooManyRequests,
}  # fmt: skip
_BY_TYPE: dict[str, type[ApiError]] = {
    "no-leader": NoLeader,
    "outcome-unknown": OutcomeUnknown,
    "follower-behind": FollowerBehind,
}


def error_for(status: int, problem: dict[str, Any]) -> ApiError:
    """The exception for a problem answer, chosen by its type, then its status."""
    kind = str(problem.get("type", "")).rsplit("/", 1)[-1]
    if kind in _BY_TYPE:
        return _BY_TYPE[kind](status, problem)
    if status >= 500:
        return ServiceUnavailable(status, problem)
    return _BY_STATUS.get(status, ApiError)(status, problem)
