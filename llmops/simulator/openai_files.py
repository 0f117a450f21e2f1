"""OpenAI Files API: uploads for batches, and the batch output and error files; through a
Dialect also an Azure OpenAI resource's (azure.AzureFiles adds its rules)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from llmops.simulator.openai_api import (
    OPENAI,
    Dialect,
    OpenAIError,
    endpoint,
    invalid_type,
    json_response,
    missing,
)
from llmops.simulator.state import SimFile, SimState
from llmops.simulator.wire import is_int, page_window

FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
DEFAULT_FILE_TTL_S = 30 * 86_400
EXPIRY_BOUNDS = (3600, 2_592_000)  # what `expires_after.seconds` may be, in seconds


def expires_after(value: Any, param: str, bounds: tuple[int, int] = EXPIRY_BOUNDS) -> int | None:
    """Seconds from an `expires_after` object ({anchor: created_at, seconds})."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_type(param, "an object", value)
    if value.get("anchor") != "created_at":
        raise OpenAIError(
            400,
            f"Invalid value for '{param}.anchor': expected 'created_at'.",
            param=f"{param}.anchor",
            code="invalid_value",
        )
    seconds = value.get("seconds")
    if isinstance(seconds, str) and seconds.isdigit():
        seconds = int(seconds)
    low, high = bounds
    if not is_int(seconds) or not low <= seconds <= high:
        raise OpenAIError(
            400,
            f"Invalid '{param}.seconds': expected an integer between {low} and {high}.",
            param=f"{param}.seconds",
            code="invalid_value",
        )
    return seconds


class OpenAIFiles:
    """`files` is the store (state.files for OpenAI; an Azure resource keeps its own)."""

    expiry_bounds = EXPIRY_BOUNDS

    def __init__(
        self,
        state: SimState,
        before_list: Callable[[], Awaitable[None]],
        dialect: Dialect = OPENAI,
        files: dict[str, SimFile] | None = None,
    ) -> None:
        self.state = state
        # Output files appear when somebody looks at an ended batch; a file
        # listing is such a look.
        self.before_list = before_list
        self.dialect = dialect
        self.files = state.files if files is None else files

    def routes(self) -> list[web.RouteDef]:
        s, d = self.state, self.dialect
        base = f"{d.base}/files"
        return [
            web.post(base, endpoint(s, "files", self.upload, d)),
            web.get(base, endpoint(s, "files", self.list_files, d)),
            web.get(f"{base}/{{file_id}}", endpoint(s, "files", self.get_file, d)),
            web.delete(f"{base}/{{file_id}}", endpoint(s, "files", self.delete_file, d)),
            web.get(f"{base}/{{file_id}}/content", endpoint(s, "files", self.file_content, d)),
        ]

    def default_ttl(self, purpose: str) -> int | None:
        """How long a file uploaded without `expires_after` lives (None: until deleted)."""
        return DEFAULT_FILE_TTL_S if purpose == "batch" else None

    def admit(self, purpose: str, data: bytes, ttl_given: bool) -> None:
        """Refuse an upload the provider would (OpenAI: none here; Azure has limits)."""

    def _file(self, file_id: str) -> SimFile:
        found = self.state.file(file_id, self.files)
        if found is None:
            raise OpenAIError(404, f"No such File object: {file_id}", param="id")
        return found

    async def upload(self, request: web.Request, rid: str) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            raise OpenAIError(400, "Files must be uploaded as multipart/form-data.", param="file")
        fields: dict[str, str] = {}
        filename, data = None, None
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if part.name == "file":
                filename = part.filename or "upload"
                data = bytes(await part.read())
            elif part.name:
                fields[part.name] = await part.text()
        if data is None:
            raise missing("file")
        purpose = fields.get("purpose")
        if purpose is None:
            raise missing("purpose")
        if purpose not in FILE_PURPOSES:
            raise OpenAIError(
                400,
                f"Invalid value for 'purpose': {purpose!r}. Supported values are: "
                + ", ".join(repr(p) for p in FILE_PURPOSES)
                + ".",
                param="purpose",
                code="invalid_value",
            )
        given = "expires_after[anchor]" in fields or "expires_after[seconds]" in fields
        if given:
            ttl = expires_after(
                {
                    "anchor": fields.get("expires_after[anchor]"),
                    "seconds": fields.get("expires_after[seconds]"),
                },
                "expires_after",
                self.expiry_bounds,
            )
        else:
            ttl = self.default_ttl(purpose)
        self.admit(purpose, data, given)
        now = int(self.state.clock.now())
        stored = SimFile(
            id=self.state.ids.make("file-"),
            filename=filename or "upload",
            purpose=purpose,
            data=data,
            created_at=now,
            expires_at=None if ttl is None else now + ttl,
        )
        self.files[stored.id] = stored
        return json_response(stored.as_json(), rid)

    async def list_files(self, request: web.Request, rid: str) -> web.Response:
        query = request.query
        purpose = query.get("purpose")
        limit = query_int(query.get("limit"), "limit", 1, 10_000, 10_000)
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise OpenAIError(
                400, "Invalid value for 'order': expected 'asc' or 'desc'.", param="order"
            )
        await self.before_list()
        now = self.state.clock.now()
        files = [
            f
            for f in list(self.files.values())
            if (purpose is None or f.purpose == purpose)
            and (f.expires_at is None or f.expires_at > now)
        ]
        if order == "desc":
            files.reverse()
        page, has_more = page_after(files, query.get("after"), limit)
        return json_response(list_json([f.as_json() for f in page], has_more), rid)

    async def get_file(self, request: web.Request, rid: str) -> web.Response:
        return json_response(self._file(request.match_info["file_id"]).as_json(), rid)

    async def delete_file(self, request: web.Request, rid: str) -> web.Response:
        found = self._file(request.match_info["file_id"])
        del self.files[found.id]
        return json_response({"id": found.id, "object": "file", "deleted": True}, rid)

    async def file_content(self, request: web.Request, rid: str) -> web.Response:
        found = self._file(request.match_info["file_id"])
        return web.Response(
            body=found.data,
            content_type="application/octet-stream",
            headers={"x-request-id": rid},
        )


def query_int(raw: str | None, name: str, low: int, high: int, default: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise OpenAIError(400, f"Invalid '{name}': expected an integer.", param=name) from None
    if not low <= value <= high:
        raise OpenAIError(
            400,
            f"Invalid '{name}': expected a value between {low} and {high}, got {value}.",
            param=name,
            code="invalid_value",
        )
    return value


def page_after(items: list[Any], after: str | None, limit: int) -> tuple[list[Any], bool]:
    """The page following the item with id `after` (exclusive)."""
    start, end, has_more = page_window([item.id for item in items], after, None, limit)
    return items[start:end], has_more


def list_json(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
