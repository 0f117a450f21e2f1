"""Batch files: streamed reading with line-numbered errors, and splitting at provider limits."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batches import jsonl


def read_lines(
    chunks: Iterable[bytes], *, endpoint: str = jsonl.CHAT_ENDPOINT, one_model: bool = True
) -> Iterator[jsonl.BatchLine]:
    """The lines of a file, validated as they stream by, raising BatchFileError at the first bad
    line: the strict reader built of `raw_lines` and `parse_line` (here, as only tests use it;
    the app reports every problem with `scan` first)."""
    seen: set[str] = set()
    model = None
    for number, raw in jsonl.raw_lines(chunks):
        line = jsonl.parse_line(number, raw, endpoint=endpoint)
        if line.custom_id in seen:
            raise jsonl.BatchFileError(
                [jsonl.LineError(number, f"duplicate custom_id {line.custom_id!r}")]
            )
        seen.add(line.custom_id)
        if one_model and model is not None and line.model != model:
            raise jsonl.BatchFileError(
                [
                    jsonl.LineError(
                        number,
                        f"model {line.model!r} differs from {model!r} on earlier lines "
                        "(one model per batch file)",
                    )
                ]
            )
        model = model or line.model
        yield line


def line(custom_id="r-1", model="gpt-4o-mini", **overrides) -> bytes:
    value = {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": "hi"}]},
    }
    value.update(overrides)
    return json.dumps(value).encode()


def chunks(data: bytes, size: int):
    return (data[i : i + size] for i in range(0, len(data), size))


def errors_of(data: bytes, **kwargs) -> list[str]:
    with pytest.raises(jsonl.BatchFileError) as raised:
        jsonl.scan([data], **kwargs)
    return [str(e) for e in raised.value.errors]


@given(
    lines=st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    size=st.integers(min_value=1, max_value=64),
    trailing=st.booleans(),
)
def test_lines_are_the_same_however_the_stream_is_chunked(lines, size, trailing):
    data = b"\n".join(lines) + (b"\n" if trailing and lines else b"")
    expected = list(jsonl.raw_lines([data]))
    assert list(jsonl.raw_lines(chunks(data, size))) == expected
    # The model: split at newlines; a final newline ends the last line rather than
    # starting an empty one.
    model = data.split(b"\n")
    if model[-1] == b"":
        model.pop()
    assert expected == [(i, x.removesuffix(b"\r")) for i, x in enumerate(model, start=1)]


def test_a_valid_file_streams_its_lines_and_a_bom_on_line_one_is_stripped():
    data = jsonl.BOM + line("a") + b"\r\n" + line("b") + b"\n"
    scan = jsonl.scan(chunks(data, 7))
    assert (scan.lines, scan.models) == (2, {"gpt-4o-mini"})
    read = list(read_lines(chunks(data, 5)))
    assert [(x.number, x.custom_id, x.model) for x in read] == [
        (1, "a", "gpt-4o-mini"),
        (2, "b", "gpt-4o-mini"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (line("a") + b"\n" + jsonl.BOM + line("b"), "line 2: a byte-order mark inside the file"),
        (line("a") + b"\n{not json", "line 2: not valid JSON"),
        (line("a") + b"\n\n" + line("b"), "line 2: empty line"),
        (line("a") + b"\n" + line("a"), "line 2: duplicate custom_id 'a'"),
        (line("a b"), "line 1: custom_id 'a b' must be 1 to 64 letters"),
        (line("x" * 65), "line 1: custom_id"),
        (line("a", method="GET"), "line 1: method must be POST"),
        (line("a", url="/v1/completions"), "line 1: url must be one of /v1/chat/completions"),
        (
            line("a") + b"\n" + line("b", url="/v1/embeddings"),
            "line 2: url '/v1/embeddings' differs from '/v1/chat/completions'",
        ),
        (line("a", body=[]), "line 1: body must be a JSON object"),
        (line("a", body={"messages": []}), "line 1: body.model is missing"),
        (line("a", body={"model": "m", "stream": True}), "line 1: body.stream is not allowed"),
        (b'{"custom_id": "a", "x": NaN}', "line 1: x: NaN is not a finite number"),
        (line("a", body={"model": "m", "t": 1e308}).replace(b"1e+308", b"1e999"), "line 1: body.t"),
        (b"[1]", "line 1: must be a JSON object"),
        (b"\xff\xfe", "line 1: not UTF-8"),
        (line("a", metadata="nul \u0000 here"), "line 1: metadata contains a NUL"),
        (line("a") + b"\n" + line("b", model="gpt-4o"), "line 2: model 'gpt-4o' differs"),
        (b"", "line 1: the file is empty"),
        (b"[" * 100_000, "line 1: nested too deeply"),
    ],
)
def test_bad_files_are_refused_naming_the_line(data, message):
    assert any(e.startswith(message) for e in errors_of(data)), errors_of(data)


def test_every_problem_is_reported_up_to_a_cap():
    data = b"\n".join([line("ok"), b"{", line("ok"), b"[]", line("bad id")])
    assert errors_of(data) == [
        "line 2: not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)",
        "line 3: duplicate custom_id 'ok'",
        "line 4: must be a JSON object",
        "line 5: custom_id 'bad id' must be 1 to 64 letters, digits, _ or - "
        "(the rule both providers accept)",
    ]
    many = b"\n".join(b"{" for _ in range(100))
    with pytest.raises(jsonl.BatchFileError) as raised:
        jsonl.scan([many])
    assert len(raised.value.errors) == jsonl.MAX_REPORTED_ERRORS and raised.value.truncated


def test_mixed_models_are_allowed_where_the_provider_allows_them():
    data = line("a") + b"\n" + line("b", model="claude-haiku-4-5")
    assert jsonl.scan([data], one_model=False).models == {"gpt-4o-mini", "claude-haiku-4-5"}


def test_reading_stops_at_the_first_bad_line():
    data = line("a") + b"\n" + line("a")
    lines = read_lines([data])
    assert next(lines).custom_id == "a"
    with pytest.raises(jsonl.BatchFileError, match="line 2: duplicate custom_id"):
        next(lines)


def test_request_lines_round_trip_and_refuse_ids_a_provider_would_refuse():
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "héllo"}]}
    encoded = jsonl.request_line(custom_id="job7-req1", body=body)
    [parsed] = read_lines([encoded])
    assert (parsed.custom_id, parsed.body) == ("job7-req1", body)
    with pytest.raises(ValueError, match="does not match"):
        jsonl.request_line(custom_id="job 7", body=body)


def test_split_keeps_order_and_every_part_within_both_limits():
    lines = [(f"r{i}", b"x" * (10 + i % 7) + b"\n") for i in range(100)]
    parts = list(jsonl.split(lines, max_lines=9, max_bytes=100))
    assert [cid for p in parts for cid in p.custom_ids] == [cid for cid, _ in lines]
    for part in parts:
        content = part.file.read()
        assert len(part.custom_ids) <= 9 and len(content) == part.bytes <= 100
        assert content == b"".join(enc for cid, enc in lines if cid in set(part.custom_ids))
        part.file.close()
    with pytest.raises(ValueError, match="over the limit"):
        list(jsonl.split([("big", b"y" * 101)], max_lines=9, max_bytes=100))


def test_a_line_past_the_limit_ends_the_stream_without_reading_the_rest(monkeypatch):
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 16)
    read = []

    def stream():
        for chunk in (b'{"a": 1}\n', b"x" * 10, b"x" * 10, b"never read", b"\n{}\n"):
            read.append(chunk)
            yield chunk

    found = list(jsonl.raw_lines(stream()))

    assert found == [(1, b'{"a": 1}'), (2, b"x" * 20)]
    assert b"never read" not in read
    with pytest.raises(jsonl.BatchFileError, match="longer than 16 bytes"):
        jsonl.parse_line(*found[1])


def test_a_line_of_the_limit_whose_newline_is_in_the_next_chunk_is_whole(monkeypatch):
    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 16)
    line = b'{"a": "' + b"y" * 7 + b'"}'  # 16 bytes
    assert len(line) == 16

    found = list(jsonl.raw_lines([line + b"\r", b'\n{"b": 2}\r\n']))

    assert found == [(1, line), (2, b'{"b": 2}')]
