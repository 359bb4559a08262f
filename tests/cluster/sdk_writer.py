"""A user's writes through the SDK, for drills: one-chunk documents added in
a loop, each acknowledged one remembered with how long it took."""

from __future__ import annotations

import threading
import time


class SdkWriter:
    """Adds one-chunk documents through the SDK (every node's URL, as a user
    gives them); remembers every document it was told is stored, and every
    write the SDK gave up on (after its own retries)."""

    def __init__(
        self, urls: str, library_name: str, timeout: float = 5.0, api_key: str | None = None
    ) -> None:
        from shoal_client import Client

        self.client = Client(urls, timeout=timeout, api_key=api_key)
        self.library = self.client.create_library(library_name, dimension=3).id
        self.acknowledged: set[str] = set()
        self.failures: list[str] = []
        # (when it was sent, seconds it took) for each acknowledged write
        self.latencies: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SdkWriter:
        self._thread.start()
        return self

    def _run(self) -> None:
        from shoal_client import ShoalError

        n = 0
        while not self._stop.is_set():
            n += 1
            sent = time.monotonic()
            try:
                document = self.client.add_document(
                    self.library, chunks=[{"text": f"w{n}", "embedding": [1.0, n % 7, 0.5]}]
                )
            except (ShoalError, OSError) as exc:
                self.failures.append(repr(exc))  # the SDK gave up: not acknowledged
                time.sleep(0.2)
                continue
            self.latencies.append((sent, time.monotonic() - sent))
            self.acknowledged.add(document.id)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def stop_and_check(self) -> int:
        """Stop, then require every acknowledged document to be there."""
        self.stop()
        present = {document.id for document in self.client.list_documents(self.library)}
        lost = self.acknowledged - present
        assert not lost, f"{len(lost)} acknowledged documents are gone: {sorted(lost)[:5]}"
        self.client.close()
        return len(self.acknowledged)
