"""The SDK's body encoding: what it sends is what the caller meant."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from shoal_client._calls import upsert_key
from shoal_client._protocol import Call
from shoal_client._wire import EncodeError, decode, encode


def test_numpy_embeddings_are_sent_as_the_same_float32_values() -> None:
    vectors = np.random.default_rng(3).standard_normal((5, 16)).astype(np.float32)
    body = {"chunks": [{"embedding": vector} for vector in vectors]}
    sent = json.loads(encode(body))
    received = np.array([chunk["embedding"] for chunk in sent["chunks"]], dtype=np.float32)
    assert np.array_equal(received, vectors)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused_not_turned_into_null(bad: float) -> None:
    with pytest.raises(EncodeError, match="NaN or an infinity"):
        encode({"metadata": {"score": bad}})
    with pytest.raises(EncodeError):
        encode({"embedding": np.array([0.5, bad], dtype=np.float32)})
    with pytest.raises(EncodeError):
        Call("POST", "/x", {"chunks": [{"embedding": [1.0, bad]}]}, write=True)


def test_a_real_null_is_sent() -> None:
    assert decode(encode({"metadata": {"author": None}, "k": [1.5]})) == {
        "metadata": {"author": None},
        "k": [1.5],
    }


def test_unencodable_values_get_a_sentence() -> None:
    with pytest.raises(EncodeError, match="cannot be sent as JSON"):
        encode({"metadata": {"when": object()}})


def test_the_upsert_key_ignores_key_order() -> None:
    first = {"metadata": {"a": 1, "b": 2}, "chunks": [{"text": "t", "embedding": [0.25]}]}
    second = {"chunks": [{"embedding": [0.25], "text": "t"}], "metadata": {"b": 2, "a": 1}}
    assert upsert_key("lib", first) == upsert_key("lib", second)
    assert upsert_key("lib", first) != upsert_key("other", first)


def test_a_call_encodes_its_body_once_and_sends_it_as_json() -> None:
    call = Call("POST", "/libraries", {"name": "x"}, write=True)
    assert call.content == b'{"name":"x"}'
