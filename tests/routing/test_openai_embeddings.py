"""The embeddings protocol layer: inputs checked as OpenAI checks them, vectors read in input
order."""

from __future__ import annotations

import pytest

from routing.protocols import openai_embeddings as emb


@pytest.mark.parametrize(
    "value, items",
    [
        ("tents", ["tents"]),
        (["a", "b"], ["a", "b"]),
        ([1212, 318], [[1212, 318]]),
        ([[1212, 318], [42]], [[1212, 318], [42]]),
    ],
)
def test_every_input_shape_reads_as_its_items(value, items):
    assert emb.inputs_of(value) == items


@pytest.mark.parametrize(
    "value, words",
    [
        ("", "input 0 is an empty string"),
        ([], "non-empty"),
        (["a", ""], "input 1 is an empty string"),
        (["a", 3], "input 1 must be"),
        ([[1, -2]], "input 0 must be"),
        ([True], "input 0 must be"),
        (["x"] * 2049, "at most 2048 inputs"),
        ([[1] * 8193], "over 8192 tokens"),
        (7, "non-empty string"),
        ([[1, 2], "a"], "not a mix"),
        (None, "non-empty string"),
    ],
)
def test_an_input_openai_refuses_is_refused_in_its_words(value, words):
    with pytest.raises(emb.InputError) as refused:
        emb.inputs_of(value)
    assert words in str(refused.value)


def test_vectors_are_read_in_input_order():
    answer = {
        "data": [
            {"object": "embedding", "index": 1, "embedding": [0.3]},
            {"object": "embedding", "index": 0, "embedding": [0.1]},
        ]
    }
    assert emb.vectors(answer) == [[0.1], [0.3]]
