"""Azure OpenAI Global Batch: OpenAI's Batch API (openai_batches) with Azure's rules.

Checked at validation, each failing the batch (`validating` -> `failed`, `errors.data` as
OpenAI's failed batches have it):
- every line's `body.model` names the same deployment (`model_mismatch`, with the line), one
  that exists (`model_not_found`);
- the file does not start with a UTF-8 byte order mark (`invalid_json_line`, line 1);
- at most 100,000 lines when the input file was uploaded with `expires_after`, else 50,000
  (`too_many_tasks`);
- the enqueued-token quota: the batch's estimated input tokens plus those of the same
  deployment's batches still validating, in progress or finalizing must stay within the
  `enqueued_token_limit` config key (null = none; global, per model, or per deployment:
  `{"model": "llmops-gpt-4o-mini", "enqueued_token_limit": 100000}`), else
  `token_limit_exceeded` with Azure's message.

A deterministic hook for that refusal: a fault of kind `token_limit_exceeded` fails the next
`count` Azure batch creates that way whatever the quota, e.g.

    POST /_sim/faults
    {"provider": "azure", "endpoint": "batches", "kind": "token_limit_exceeded", "count": 1}

(`{"code": "token_limit_exceeded"}` without a kind, or kind `batch_fail` with that code, is
the same fault; `model` may name the deployment or its model). Its message names the
configured limit, or when none is set the tokens already enqueued for the deployment; a
`message` in the fault replaces it. With timings that are not instant the batch shows
`validating` for batch_validating_s, then `failed`.

Endpoints may be given as Azure writes them (`/chat/completions`) or as OpenAI does
(`/v1/chat/completions`), in the batch and in its lines alike. A cancelled batch keeps what
finished (output file) and gives each line that never ran a `batch_cancelled` error-file
line. Output files expire only when the batch has `output_expires_after` (14 to 30 days).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmops.simulator.azure import EXPIRY_BOUNDS
from llmops.simulator.batches import FINALIZING, IN_PROGRESS, VALIDATING
from llmops.simulator.openai_batches import (
    LINE_PARSERS,
    MAX_BATCH_REQUESTS,
    OpenAIBatches,
    ParsedInput,
    estimated_tokens,
)
from llmops.simulator.state import SimFile

MAX_EXPIRING_FILE_REQUESTS = 100_000
BOM = b"\xef\xbb\xbf"
ENQUEUED = (VALIDATING, IN_PROGRESS, FINALIZING)
QUOTA_REFUSAL = (
    "The number of enqueued tokens has surpassed the configured limit of {limit} for the "
    "deployment '{deployment}'. Please either increase the limit or try again once the "
    "current jobs have finished."
)
# OpenAI's validation codes -> Azure's, and Azure's wording where it differs.
CODES = {
    "mismatched_model": "model_mismatch",
    "too_many_requests": "too_many_tasks",
    "invalid_url": "url_mismatch",
    "empty_file": "empty_batch",
}
MESSAGES = {
    "model_mismatch": "The model deployment name on line {line} does not match the rest of the "
    "file: a batch input file may only use one deployment.",
    "model_not_found": "The model deployment name specified in the model property on line "
    "{line} of the input file was not found.",
    "url_mismatch": "The url on line {line} does not match the rest of the file or the "
    "batch's endpoint.",
}


def _error(code: str, message: str, line: int | None) -> dict[str, Any]:
    return {"code": code, "message": message, "line": line, "param": None}


class AzureBatches(OpenAIBatches):
    expiry_bounds = EXPIRY_BOUNDS
    default_output_ttl_s = None
    cancelled_lines = True

    def line_endpoint(self, value: Any) -> str | None:
        if not isinstance(value, str):
            return None
        key = value if value.startswith("/v1/") else f"/v1{value}"
        return key if key in LINE_PARSERS else None

    def line_urls(self, endpoint_value: str) -> tuple[str, ...]:
        key = self.line_endpoint(endpoint_value) or endpoint_value
        return (key, key.removeprefix("/v1"))

    def input_rules(self, source: SimFile) -> tuple[list[dict[str, Any]], int]:
        if source.data.startswith(BOM):
            message = (
                "The input file starts with a UTF-8 byte order mark (BOM); batch input "
                "files must be UTF-8 without one."
            )
            return [_error("invalid_json_line", message, 1)], MAX_BATCH_REQUESTS
        # An Azure file has an expiry only when it was uploaded with expires_after.
        if source.expires_at is not None:
            return [], MAX_EXPIRING_FILE_REQUESTS
        return [], MAX_BATCH_REQUESTS

    def resolver(self) -> Callable[[str], str | None]:
        # A copy: the input may be parsed in a thread while a control call changes the table.
        config = self.state.config
        table = {m: m for m in [*config.models["openai"], *config.embedding_models]}
        table.update(config.azure_deployments)
        return table.get

    def vocabulary(self, errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        translated = []
        for error in errors:
            code = CODES.get(error["code"], error["code"])
            message = error["message"]
            if code in MESSAGES and error.get("line") is not None:
                message = MESSAGES[code].format(line=error["line"])
            elif code == "too_many_tasks":
                message = message.replace("more than", "more requests than the limit of")
            translated.append({**error, "code": code, "message": message})
        return translated

    def admit(self, batch_id: str, parsed: ParsedInput) -> tuple[list[dict[str, Any]] | None, int]:
        state = self.state
        deployment, model = parsed.asked, parsed.model
        tokens = estimated_tokens(parsed)
        if deployment is None or model is None:
            return None, tokens
        now = state.clock.now()
        enqueued = sum(
            batch.enqueued_tokens
            for batch in self.batches.values()
            if batch.deployment == deployment and batch.timeline.at(now).phase in ENQUEUED
        )
        limit = state.config.enqueued_token_limit(deployment, model)
        fault = state.fault("azure", "batches", model, ("token_limit_exceeded",), also=deployment)
        if fault is None and (limit is None or enqueued + tokens <= limit):
            return None, tokens
        message = QUOTA_REFUSAL.format(
            limit=limit if limit is not None else enqueued, deployment=deployment
        )
        if fault is not None and fault.message:
            message = fault.message
        return [_error("token_limit_exceeded", message, None)], tokens
