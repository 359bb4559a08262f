"""Many linearizable reads served by one read-index round trip.

A read is linearizable if its read index was obtained after the read
arrived. So a read joins the next round that has not started yet, never one
already under way; while one round runs, every read that arrives waits for
the round after it, and that round starts the moment the running one ends.
However many reads arrive, at most one round runs and one waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class ReadCoalescer:
    def __init__(self, fetch: Callable[[], Awaitable[int]]) -> None:
        self._fetch = fetch
        self._waiting: asyncio.Future[int] | None = None  # the round not started yet
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0  # round trips made (for tests and metrics)

    async def read_index(self) -> int:
        future = self._waiting
        if future is None:
            future = self._waiting = asyncio.get_running_loop().create_future()
            future.add_done_callback(_consume_error)
            if not self._running:
                self._start()
        # Shielded: one reader giving up must not cancel the round for the rest.
        return await asyncio.shield(future)

    def _start(self) -> None:
        future, self._waiting = self._waiting, None
        assert future is not None
        self._running = True
        self.rounds += 1
        self._task = asyncio.ensure_future(self._round(future))

    async def _round(self, future: asyncio.Future[int]) -> None:
        try:
            index = await self._fetch()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:  # every reader of this round gets it
            future.set_exception(exc)
        else:
            future.set_result(index)
        finally:
            self._running = False
            if self._waiting is not None:
                self._start()


def _consume_error(future: asyncio.Future[int]) -> None:
    """Mark an exception as seen: all readers of a round may have given up."""
    if not future.cancelled():
        future.exception()
