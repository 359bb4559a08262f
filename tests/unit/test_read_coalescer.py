"""One read-index round trip serves every read waiting for it, and never a
read that arrived after the round started."""

from __future__ import annotations

import asyncio

import pytest

from replication.read_coalescer import ReadCoalescer


class Leader:
    """A fake leader: each round returns the next index once released."""

    def __init__(self) -> None:
        self.started = 0
        self.gates: list[asyncio.Event] = []
        self.fail_next = False

    async def fetch(self) -> int:
        self.started += 1
        number = self.started
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("leader unreachable")
        return number * 100

    async def release(self, round_number: int) -> None:
        while len(self.gates) < round_number:
            await asyncio.sleep(0)
        self.gates[round_number - 1].set()
        for _ in range(5):
            await asyncio.sleep(0)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_reads_arriving_during_a_round_share_the_next_one() -> None:
    async def scenario() -> None:
        leader = Leader()
        reads = ReadCoalescer(leader.fetch)
        first = asyncio.ensure_future(reads.read_index())
        await _settle()
        later = [asyncio.ensure_future(reads.read_index()) for _ in range(20)]
        await _settle()
        assert leader.started == 1  # the later reads wait; they do not join round 1
        await leader.release(1)
        assert first.result() == 100
        assert not any(task.done() for task in later)  # round 1 was too early for them
        assert leader.started == 2
        await leader.release(2)
        assert [task.result() for task in later] == [200] * 20
        assert reads.rounds == 2

    asyncio.run(scenario())


def test_a_failed_round_fails_its_readers_and_the_next_round_runs() -> None:
    async def scenario() -> None:
        leader = Leader()
        reads = ReadCoalescer(leader.fetch)
        leader.fail_next = True
        failing = [asyncio.ensure_future(reads.read_index()) for _ in range(3)]
        await _settle()
        await leader.release(1)
        await leader.release(2)
        # The first read started round 1 alone; the other two waited for round 2.
        with pytest.raises(ConnectionError):
            failing[0].result()
        assert [task.result() for task in failing[1:]] == [200, 200]
        again = asyncio.ensure_future(reads.read_index())
        await leader.release(3)
        assert again.result() == 300

    asyncio.run(scenario())


def test_one_reader_giving_up_does_not_cancel_the_round_for_the_others() -> None:
    async def scenario() -> None:
        leader = Leader()
        reads = ReadCoalescer(leader.fetch)
        first = asyncio.ensure_future(reads.read_index())
        await _settle()
        impatient = asyncio.ensure_future(asyncio.wait_for(reads.read_index(), 0.01))
        patient = asyncio.ensure_future(reads.read_index())
        await asyncio.sleep(0.05)
        assert impatient.done() and isinstance(impatient.exception(), TimeoutError)
        await leader.release(1)
        await leader.release(2)
        assert first.result() == 100
        assert patient.result() == 200

    asyncio.run(scenario())
