"""Deterministic text, token counting and the prompt-prefix cache.

Output text is a slice of a fixed pseudo-random corpus chosen by a hash of
(model, prompt), so the same request always gets the same answer, streamed or
not, realtime or batch. One output word is one output token. Prompt tokens come
from a regex of words and punctuation: cheap, deterministic, not a real BPE.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

# One word is one output token.
_VOCABULARY = """
the a an of to in for on with by from as at into over after before about across model
request batch token stream cache prompt answer result value signal system data report
summary ticket customer order invoice budget team workload policy provider latency
window deadline cost price ledger record entry usage metric quick careful steady bright
quiet simple clear exact early late small large fast slow new old final partial complete
pending ready stable useful shared run send read write check build route defer retry
cancel merge split count measure compare review return accept refuse update store serve
watch plan and but so because while when where which that this these those each every is
was are were be been has have had will would can could should may might it they we you
he she one two three several many few most more less time day week month hour minute
second night morning evening today tomorrow line file page table column field key list
item group set map queue north south east west river mountain forest garden harbor
bridge station paper glass stone metal water light sound color shape pattern structure
engine circuit network server client socket thread process kernel buffer
""".split()  # noqa: SIM905 - a word list reads better as prose

_CORPUS_WORDS = 1 << 16
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")

# OpenAI caches prompt prefixes from 1024 tokens on, in 128-token steps.
OPENAI_CACHE_MIN_TOKENS = 1024
OPENAI_CACHE_STEP_TOKENS = 128


def _build_corpus() -> tuple[str, list[int]]:
    rng = random.Random(20261123)
    words: list[str] = []
    while len(words) < _CORPUS_WORDS:
        sentence = rng.choices(_VOCABULARY, k=rng.randint(5, 14))
        sentence[0] = sentence[0].capitalize()
        if len(sentence) > 7 and rng.random() < 0.4:
            cut = rng.randint(3, len(sentence) - 3)
            sentence[cut] += ","
        sentence[-1] += "."
        words.extend(sentence)
    del words[_CORPUS_WORDS:]
    text = " ".join(words)
    starts = [0] * (len(words) + 1)
    position = 0
    for index, word in enumerate(words):
        starts[index] = position
        position += len(word) + 1
    starts[len(words)] = position  # one past the final (absent) space
    return text, starts


_CORPUS_TEXT, _CORPUS_STARTS = _build_corpus()


def prompt_seed(model: str, prompt: str) -> int:
    """64-bit seed of a canonical prompt; distinct models answer differently."""
    digest = hashlib.blake2b(f"{model}\x00{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def derive_seed(seed: int, index: int) -> int:
    """Seed of the index-th choice (OpenAI `n`), independent of the others."""
    return (seed + index * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF


def output_length(seed: int, low: int, high: int) -> int:
    # The high bits pick the length and the low bits the corpus offset, so the
    # two are not correlated.
    if high <= low:
        return low
    return low + (seed >> 40) % (high - low + 1)


def corpus_text(seed: int, words: int) -> str:
    """`words` consecutive corpus words starting at a seed-chosen offset."""
    if words <= 0:
        return ""
    offset = (seed & 0xFFFFFFFF) % _CORPUS_WORDS
    end = offset + words
    if end <= _CORPUS_WORDS:
        return _CORPUS_TEXT[_CORPUS_STARTS[offset] : _CORPUS_STARTS[end] - 1]
    parts = [_CORPUS_TEXT[_CORPUS_STARTS[offset] :]]
    remaining = end - _CORPUS_WORDS
    while remaining > _CORPUS_WORDS:
        parts.append(_CORPUS_TEXT)
        remaining -= _CORPUS_WORDS
    parts.append(_CORPUS_TEXT[: _CORPUS_STARTS[remaining] - 1])
    return " ".join(parts)


def pieces(text: str) -> list[str]:
    """Stream deltas of a text: one word each, the separating space leading."""
    if not text:
        return []
    words = text.split(" ")
    return [words[0], *(" " + word for word in words[1:])]


def tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)


def count_tokens(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


@dataclass(slots=True)
class Choice:
    """One generated answer, kept small: the text is re-derived from the seed on demand."""

    seed: int
    words: int  # corpus words generated before any stop-sequence cut
    cut: int  # characters kept after a stop-sequence cut, or -1
    output_tokens: int
    finish: str  # "stop", "length", "stop_sequence" or "tool_calls"
    stop_sequence: str | None = None
    fixed: str | None = None  # a structured answer's text (JSON), not the corpus's
    tool_calls: tuple | None = None  # OpenAI tool_call objects, when the answer calls tools

    @property
    def text(self) -> str:
        if self.fixed is not None:
            return self.fixed
        if self.tool_calls:
            return ""
        text = corpus_text(self.seed, self.words)
        return text if self.cut < 0 else text[: self.cut]


def generate(
    seed: int,
    *,
    wanted: int,
    max_tokens: int | None,
    stop: list[str] | None,
) -> Choice:
    """The answer for a seed: `wanted` words, cut by max_tokens or a stop sequence."""
    words = wanted if max_tokens is None else min(wanted, max_tokens)
    finish = "length" if words < wanted else "stop"
    if stop:
        text = corpus_text(seed, words)
        cut, matched = -1, None
        for sequence in stop:
            at = text.find(sequence)
            if at != -1 and (cut == -1 or at < cut):
                cut, matched = at, sequence
        if matched is not None:
            kept = text[:cut]
            tokens_kept = kept.count(" ") + 1 if kept else 0
            return Choice(seed, words, cut, tokens_kept, "stop_sequence", matched)
    return Choice(seed, words, -1, words, finish)


class PromptCache:
    """Prompt prefixes seen before, per model, as digests of their tokens.

    Prefix digests are built incrementally, so a long prompt costs one pass.
    The table is bounded: when full, the oldest half is forgotten.
    """

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._seen: dict[bytes, None] = {}
        self._max_entries = max_entries

    def clear(self) -> None:
        self._seen.clear()

    def _remember(self, keys: list[bytes]) -> None:
        seen = self._seen
        for key in keys:
            seen[key] = None
        if len(seen) > self._max_entries:
            for key in list(seen)[: len(seen) // 2]:
                del seen[key]

    def openai_cached_tokens(self, model: str, prompt_tokens: list[str]) -> int:
        """Longest remembered prefix at a 1024 + 128k token boundary; remembers this prompt's."""
        total = len(prompt_tokens)
        if total < OPENAI_CACHE_MIN_TOKENS:
            return 0
        hasher = hashlib.blake2b(model.encode(), digest_size=16)
        seen = self._seen
        cached, previous, fresh = 0, 0, []
        for boundary in range(OPENAI_CACHE_MIN_TOKENS, total + 1, OPENAI_CACHE_STEP_TOKENS):
            hasher.update(("\x1f".join(prompt_tokens[previous:boundary]) + "\x1f").encode())
            previous = boundary
            key = hasher.digest()
            if key in seen:
                cached = boundary
            else:
                fresh.append(key)
        self._remember(fresh)
        return cached

    def anthropic_cache(
        self, model: str, segments: list[str], breakpoints: list[int]
    ) -> tuple[int, int]:
        """(read, created) tokens for a prompt whose cache_control blocks end the given segments.

        The longest remembered breakpoint prefix is read; the rest up to the last
        breakpoint is written.
        """
        hasher = hashlib.blake2b(model.encode(), digest_size=16)
        seen = self._seen
        marks: list[tuple[int, bytes]] = []
        wanted = set(breakpoints)
        position = 0
        for index in range(max(breakpoints) + 1):
            segment_tokens = _TOKEN_RE.findall(segments[index])
            position += len(segment_tokens)
            hasher.update(("\x1f".join(segment_tokens) + "\x1e").encode())
            if index in wanted:
                marks.append((position, hasher.digest()))
        read = 0
        for tokens_at, key in marks:
            if key in seen:
                read = tokens_at
        self._remember([key for _, key in marks])
        last = marks[-1][0]
        return read, max(0, last - read)
