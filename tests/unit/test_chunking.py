"""Server-side chunking: pieces within the size, nothing lost, linear time,
and a cap that stops the work early."""

from __future__ import annotations

import random
import time

from node.chunking import _sentences, chunk_text


def test_long_sentences_are_cut_at_words_within_the_size_and_lose_nothing() -> None:
    rng = random.Random(7)
    for _ in range(300):
        words = ["".join(rng.choice("abcxyz") for _ in range(rng.randint(1, 30)))
                 for _ in range(rng.randint(1, 60))]  # fmt: skip
        text = " ".join(words)
        size = rng.randint(5, 80)
        pieces = _sentences(text, size)
        assert all(0 < len(piece) <= size for piece in pieces), (text, size, pieces)
        assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_a_huge_sentence_is_split_in_linear_time_and_capped_early() -> None:
    text = "a " * 2_000_000  # 4 MB, one sentence: cut 80,000 times
    started = time.perf_counter()
    pieces = _sentences(text, 50)
    assert len(pieces) == 80_000 and time.perf_counter() - started < 2.0
    started = time.perf_counter()
    capped = chunk_text(text, 50, 0, limit=10_000)
    assert len(capped) == 10_001 and time.perf_counter() - started < 3.0
    assert chunk_text("One. Two. Three.", 50, 0, limit=10) == ["One. Two. Three."]
