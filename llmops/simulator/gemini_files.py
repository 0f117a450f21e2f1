"""Gemini's File API, as google-genai 3.6.1 uses it (files.py, _api_client.upload_file).

Upload is resumable, in two steps:
  POST {base}/upload/{v}/files    X-Goog-Upload-Protocol: resumable, X-Goog-Upload-Command:
      start, X-Goog-Upload-Header-Content-Length / -Content-Type, JSON {"file": {displayName,
      mimeType, name?}} (camelCase or, as the SDK sends it, snake_case). Answers 200 with
      an `X-Goog-Upload-URL` header (this same path plus `?upload_id=…`) and status `active`.
  POST {upload URL}               X-Goog-Upload-Command: `upload` (more to come, answered
      `active`) or `upload, finalize`, X-Goog-Upload-Offset: bytes sent so far; the body is the
      next chunk (the SDK sends 8 MB ones). Finalizing answers status `final` and
      {"file": File}. The upload id is the credential here, as on Google's upload server: the
      SDK sends no API key with the chunks.
Then GET {v}/files/{id}, GET {v}/files (pageSize 1-100, default 10; pageToken; newest first),
DELETE {v}/files/{id}, and GET [download/]{v}/files/{id}:download?alt=media: the bytes,
streamed, of a file the API generated (a batch's results; uploads cannot be downloaded, as on
Google). A missing file is 403 PERMISSION_DENIED, Google's answer for a file one cannot see.

Uploaded files expire 48 hours after upload (on the sim clock); generated ones are kept.
Files are capped at 2 GB. Faults with provider `gemini` and endpoint `files` hit every route
but the chunk uploads.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from llmops.simulator.gemini_api import NATIVE, google_endpoint, google_json, read_body
from llmops.simulator.gemini_generate import GoogleError, invalid, pick
from llmops.simulator.state import SimState
from llmops.simulator.wire import rfc3339

MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024
FILE_TTL_S = 48 * 3600
DOWNLOAD_CHUNK = 1024 * 1024
FILE_ID = re.compile(r"[a-z0-9-]{1,40}")


@dataclass(slots=True)
class GeminiFile:
    id: str  # the name is files/{id}
    display_name: str | None
    mime_type: str
    data: bytes
    created: float
    expires_at: float | None
    source: str  # UPLOADED or GENERATED
    sha256: str = ""

    @property
    def name(self) -> str:
        return f"files/{self.id}"

    def as_json(self, origin: str) -> dict[str, Any]:
        found: dict[str, Any] = {
            "name": self.name,
            "mimeType": self.mime_type,
            "sizeBytes": str(len(self.data)),  # int64: a string in proto JSON
            "createTime": rfc3339(self.created),
            "updateTime": rfc3339(self.created),
            "sha256Hash": base64.b64encode(self.sha256.encode()).decode(),
            "uri": f"{origin}/gemini/v1beta/{self.name}",
            "state": "ACTIVE",
            "source": self.source,
        }
        if self.display_name is not None:
            found["displayName"] = self.display_name
        if self.expires_at is not None:
            found["expirationTime"] = rfc3339(self.expires_at)
        if self.source == "GENERATED":
            found["downloadUri"] = f"{origin}/gemini/download/v1beta/{self.name}:download?alt=media"
        return found


@dataclass(slots=True)
class Upload:
    """A resumable upload under way."""

    file_id: str
    display_name: str | None
    mime_type: str
    size: int | None
    data: bytearray = field(default_factory=bytearray)


def store_file(state: SimState, stored: GeminiFile) -> GeminiFile:
    stored.sha256 = hashlib.sha256(stored.data).hexdigest()
    state.gemini_files[stored.id] = stored
    return stored


def find_file(state: SimState, name: str) -> GeminiFile | None:
    """A live file by name (files/{id}) or id."""
    file_id = name.removeprefix("files/")
    found = state.gemini_files.get(file_id)
    if found is not None and found.expires_at is not None and found.expires_at <= state.clock.now():
        del state.gemini_files[file_id]
        return None
    return found


def no_file(name: str) -> GoogleError:
    return GoogleError(
        403,
        f"You do not have permission to access the File {name.removeprefix('files/')} or it "
        "may not exist.",
    )


def origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


class GeminiFiles:
    """`before_list` catches batches up first: a results file appears when somebody looks."""

    def __init__(self, state: SimState, before_list: Callable[[], Awaitable[None]]) -> None:
        self.state = state
        self.before_list = before_list

    def routes(self) -> list[web.RouteDef]:
        state = self.state
        upload = f"/gemini/upload/{NATIVE.removeprefix('/gemini/')}/files"
        return [
            web.post(upload, self.upload),
            web.get(f"{NATIVE}/files", google_endpoint(state, "files", self.list_files)),
            web.get(f"{NATIVE}/files/{{file}}", google_endpoint(state, "files", self.get_file)),
            web.delete(
                f"{NATIVE}/files/{{file}}", google_endpoint(state, "files", self.delete_file)
            ),
            web.get(
                f"/gemini/download/{NATIVE.removeprefix('/gemini/')}/files/{{file}}",
                google_endpoint(state, "files", self.get_file),
            ),
        ]

    async def upload(self, request: web.Request) -> web.StreamResponse:
        # The chunks carry no key (the upload id is theirs); starting one needs it.
        if "upload_id" in request.query:
            answer = await google_endpoint(self.state, None, self._chunk, auth=False)(request)
            if answer.status >= 400:
                # Ends the upload: the SDK retries a chunk answer that has no upload status.
                answer.headers["X-Goog-Upload-Status"] = "final"
            return answer
        return await google_endpoint(self.state, "files", self._start)(request)

    async def _start(self, request: web.Request) -> web.Response:
        headers = request.headers
        if headers.get("X-Goog-Upload-Protocol", "").lower() != "resumable":
            raise invalid(
                "Only resumable uploads are simulated: send X-Goog-Upload-Protocol: resumable."
            )
        if headers.get("X-Goog-Upload-Command", "").lower() != "start":
            raise invalid("A resumable upload starts with X-Goog-Upload-Command: start.")
        body = await read_body(request)
        meta = pick(body, "file") or {}
        if not isinstance(meta, dict):
            raise invalid("Invalid JSON payload received. 'file' must be an object.")
        size = pick(meta, "sizeBytes") or headers.get("X-Goog-Upload-Header-Content-Length")
        try:
            size = int(size) if size is not None else None
        except ValueError:
            raise invalid(f"Invalid value at 'file.size_bytes', {size!r}") from None
        if size is not None and size > MAX_FILE_BYTES:
            raise invalid(f"The file is {size} bytes; files may be at most 2 GB.")
        mime = pick(meta, "mimeType") or headers.get("X-Goog-Upload-Header-Content-Type")
        if not mime:
            raise invalid("* File.mime_type: mime_type is required.")
        file_id = self.state.ids.make("")
        wanted = pick(meta, "name")
        if wanted:
            file_id = str(wanted).removeprefix("files/")
            if not FILE_ID.fullmatch(file_id):
                raise invalid(
                    "* File.name: may contain only lowercase letters, digits and dashes, up to "
                    "40 characters."
                )
            if file_id in self.state.gemini_files:
                raise GoogleError(409, f"File files/{file_id} already exists.")
        display = pick(meta, "displayName")
        upload_id = self.state.ids.make("")
        self.state.gemini_uploads[upload_id] = Upload(file_id, display, str(mime), size)
        url = f"{origin(request)}{request.path}?upload_id={upload_id}&upload_protocol=resumable"
        return web.Response(
            headers={
                "X-Goog-Upload-URL": url,
                "X-Goog-Upload-Status": "active",
                "X-Goog-Upload-Chunk-Granularity": str(8 * 1024 * 1024),
            }
        )

    async def _chunk(self, request: web.Request) -> web.Response:
        state = self.state
        upload_id = request.query["upload_id"]
        session = state.gemini_uploads.get(upload_id)
        if session is None:
            raise GoogleError(404, "The upload session does not exist or has ended.")
        command = {c.strip() for c in request.headers.get("X-Goog-Upload-Command", "").split(",")}
        received = len(session.data)
        if "query" in command:
            return web.Response(
                headers={
                    "X-Goog-Upload-Status": "active",
                    "X-Goog-Upload-Size-Received": str(received),
                }
            )
        if "upload" not in command:
            raise invalid("X-Goog-Upload-Command must be upload, or upload, finalize.")
        offset = request.headers.get("X-Goog-Upload-Offset", str(received))
        if offset != str(received):
            raise invalid(f"X-Goog-Upload-Offset is {offset}, but {received} bytes were received.")
        chunk = await request.read()
        if received + len(chunk) > MAX_FILE_BYTES:
            del state.gemini_uploads[upload_id]
            raise invalid("The file is larger than 2 GB.")
        session.data.extend(chunk)
        if "finalize" not in command:
            return web.Response(headers={"X-Goog-Upload-Status": "active"})
        del state.gemini_uploads[upload_id]
        if session.size is not None and session.size != len(session.data):
            raise invalid(f"The upload declared {session.size} bytes but sent {len(session.data)}.")
        now = state.clock.now()
        stored = store_file(
            state,
            GeminiFile(
                id=session.file_id,
                display_name=session.display_name,
                mime_type=session.mime_type,
                data=bytes(session.data),
                created=now,
                expires_at=now + FILE_TTL_S,
                source="UPLOADED",
            ),
        )
        return google_json(
            {"file": stored.as_json(origin(request))}, headers={"X-Goog-Upload-Status": "final"}
        )

    async def list_files(self, request: web.Request) -> web.Response:
        await self.before_list()
        size = _page_size(request, default=10, most=100)
        now = self.state.clock.now()
        files = [
            f
            for f in reversed(list(self.state.gemini_files.values()))
            if f.expires_at is None or f.expires_at > now
        ]
        page, token = page_after(files, request.query.get("pageToken"), size)
        body: dict[str, Any] = {"files": [f.as_json(origin(request)) for f in page]}
        if token:
            body["nextPageToken"] = token
        return google_json(body)

    async def get_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        if name.endswith(":download"):
            return await self._download(request, name.removesuffix(":download"))
        if request.path.startswith("/gemini/download/"):
            raise GoogleError(404, "Not found.")
        found = find_file(self.state, name)
        if found is None:
            raise no_file(name)
        return google_json(found.as_json(origin(request)))

    async def _download(self, request: web.Request, name: str) -> web.StreamResponse:
        found = find_file(self.state, name)
        if found is None:
            raise no_file(name)
        if found.source != "GENERATED":
            raise invalid(f"Only generated files can be downloaded; files/{found.id} was uploaded.")
        if request.query.get("alt") != "media":
            raise invalid("Downloads take alt=media.")
        content = found.mime_type if "/" in found.mime_type else "application/octet-stream"
        resp = web.StreamResponse(
            headers={"Content-Type": content, "Content-Length": str(len(found.data))}
        )
        await resp.prepare(request)
        data = memoryview(found.data)
        for start in range(0, len(data), DOWNLOAD_CHUNK):
            await resp.write(data[start : start + DOWNLOAD_CHUNK])
        await resp.write_eof()
        return resp

    async def delete_file(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        found = find_file(self.state, name)
        if found is None:
            raise no_file(name)
        del self.state.gemini_files[found.id]
        return google_json({})


def _page_size(request: web.Request, *, default: int, most: int) -> int:
    raw = request.query.get("pageSize")
    if raw is None:
        return default
    try:
        size = int(raw)
    except ValueError:
        raise invalid(f"Invalid value at 'page_size' (TYPE_INT32), {raw!r}") from None
    if size < 0:
        raise invalid("* page_size: must not be negative.")
    return min(size or default, most)


def page_after(items: list[Any], token: str | None, size: int) -> tuple[list[Any], str | None]:
    """The page after the item named by `token` (the last name of the previous page), and the
    token of the next page (None on the last one)."""
    start = 0
    if token:
        names = [item.name for item in items]
        if token not in names:
            return [], None  # gone since: an empty last page, so paging stops
        start = names.index(token) + 1
    page = items[start : start + size]
    more = start + size < len(items)
    return page, (page[-1].name if more and page else None)
