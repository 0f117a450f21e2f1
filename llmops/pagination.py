"""The API's page bounds: DRF's limit/offset pagination with a ceiling on both."""

from __future__ import annotations

from rest_framework import pagination

MAX_LIMIT = 1_000
# Past any table's length, and far inside the 64-bit integer that SQLite and PostgreSQL take
# for LIMIT/OFFSET.
MAX_OFFSET = 10**12


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    # DRF passes ?limit= and ?offset= to SQL as parsed, however large: the fuzzer's
    # ?limit=165541341060602703777529593856 was a 500 ("datatype mismatch" on SQLite, "bigint
    # out of range" on PostgreSQL). A limit past the ceiling is served at the ceiling (DRF's
    # max_limit, which also keeps one page from loading a whole table); an offset past it
    # answers the empty page any offset past the end answers.
    max_limit = MAX_LIMIT

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)
