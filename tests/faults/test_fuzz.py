"""T6: the API fuzzed, on whichever database the run uses (SQLite, or PostgreSQL + Redis).

1. schemathesis generates requests for every operation of the project's OpenAPI schema
   (drf-spectacular's /api/schema), schema-valid and schema-violating alike, and sends them
   in-process to the WSGI app: once with an admin API key of a team whose workloads point at
   the simulator, once as a staff session (staff see every team's rows and pass `team`).
   Path ids are drawn from real rows as well as generated ones, and serving bodies often name
   a real workload and model, so cases get past the 404 to the code behind it. Proves: no
   generated case is answered 5xx. Status-code and content-type conformance are measured and
   recorded; the hard requirement is the absence of server errors.
2. hypothesis writes hostile JSONL batch files (BOMs, bad JSON, NaN, NUL, lone surrogates,
   bad or duplicate custom_ids, mixed and unknown models, bad max_tokens, deep nesting, huge
   lines, blank lines, CRLF, non-UTF-8, missing fields, wrong url/method) and sends them
   through the real upload path, /v1/files then /v1/batches (llmops has no other batch
   upload; the worker's admission runs inline). Proves: every answer is 2xx or a 4xx naming the
   problem (its line), never 5xx; a refused upload leaves no row behind; a batch whose lines
   the worker refuses ends `failed` naming them, with nothing admitted; an accepted batch holds
   one request per line.

Both fuzzers run with a fixed seed and no example database, so a run is reproducible.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core import signals
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from schemathesis.checks import content_type_conformance, status_code_conformance
from schemathesis.core.failures import Failure, FailureGroup

from batches import services as batch_services
from batches.models import BatchItem, BatchJob, ClientBatch, ClientBatchLine, StoredFile
from batches.services.client_batches import client_batch_admit
from billing.models import Budget, LedgerEntry
from llmops.demo import demo_seed
from routing.models import LlmModel, Request, Workload

SEED = 6_2026
KEY = "llm_t6-fuzz-key-0123456789abcdef"
SCHEMA_EXAMPLES = 25  # per operation, per generation mode, per caller
JSONL_EXAMPLES = 300

FUZZ_SETTINGS = settings(
    max_examples=SCHEMA_EXAMPLES,
    deadline=None,
    database=None,  # no replay of stored examples: the run is what the seed makes it
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


@pytest.fixture
def world(db, sim, settings):
    """The demo world against the session simulator, a few real rows for path ids, and a
    staff session."""
    # The per-key throttle would answer most of the fuzz 429 and hide the handlers behind it.
    settings.LLMOPS_API_RATE = "1000000/minute"
    demo_seed(simulator_url=sim.base_url, api_key=KEY)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {KEY}")
    realtime = api.post(
        "/api/v1/requests",
        {
            "workload": "product-search",
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "hi"}],
        },
        format="json",
    )
    assert realtime.status_code == 200, realtime.content
    for i in range(3):
        deferred = api.post(
            "/api/v1/requests",
            {
                "workload": "review-moderation",
                "max_tokens": 20,
                "messages": [{"role": "user", "content": f"review {i}"}],
            },
            format="json",
        )
        assert deferred.status_code == 202, deferred.content
    sim.config(batch_turnaround_s=100)
    batch_services.batches_flush(force=True)
    staff = User.objects.create_user("t6-staff", password="pw-t6-0123456789", is_staff=True)
    browser = Client()
    browser.force_login(staff)
    csrf = _get_new_csrf_string()
    return {
        "key": {"headers": {"Authorization": f"Bearer {KEY}"}, "cookies": {}},
        "staff": {
            "headers": {"X-CSRFToken": csrf},
            "cookies": {"sessionid": browser.cookies["sessionid"].value, "csrftoken": csrf},
        },
    }


@pytest.fixture
def wsgi_app():
    """The project's WSGI handler: the same views and middleware daphne serves (async views
    through async_to_sync, CSRF enforced), run in this thread, so inside the test's
    transaction."""
    # Django closes the connection when a request ends; that would close the test's
    # transaction, so the connection is kept as Django's own test client keeps it.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def real_path_ids() -> dict[str, list]:
    return {
        "id": [
            *BatchJob.objects.values_list("pk", flat=True),
            *Budget.objects.values_list("pk", flat=True),
            *(str(pk) for pk in Request.objects.values_list("pk", flat=True)),
        ],
        "slug": list(Workload.objects.values_list("slug", flat=True)),
    }


@dataclass
class Outcome:
    cases: int = 0
    statuses: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    nonconforming: Counter = field(default_factory=Counter)  # "check operation" → cases
    examples: dict[str, str] = field(default_factory=dict)  # the first of each


def fuzz_operation(operation, mode, auth: dict, real: dict, outcome: Outcome) -> None:
    workloads = real["slug"]
    models = list(LlmModel.objects.values_list("model_id", flat=True))
    path_names = {p.name for p in operation.path_parameters}
    strategies = [operation.as_strategy(generation_mode=mode)]
    for name in path_names & {"id", "slug"}:
        strategies.append(
            st.sampled_from(real[name]).flatmap(
                lambda value, name=name: operation.as_strategy(
                    generation_mode=mode, path_parameters={name: value}
                )
            )
        )

    @FUZZ_SETTINGS
    @seed(SEED)
    @given(case=st.one_of(strategies), data=st.data())
    def run(case, data):
        # Serving bodies name a real workload and model often enough to reach the router.
        if isinstance(case.body, dict) and data.draw(st.booleans()):
            if "workload" in case.body or data.draw(st.booleans()):
                case.body["workload"] = data.draw(st.sampled_from(workloads))
            if "model" in case.body:
                case.body["model"] = data.draw(st.sampled_from([*models, case.body["model"]]))
        headers = dict(auth["headers"])
        if auth["cookies"] and case.headers:
            # The session caller is a browser: a generated bearer header would make it a key.
            case.headers.pop("Authorization", None)
        if operation.path == "/v1/chat/completions" and data.draw(st.booleans()):
            headers["X-Workload"] = data.draw(st.sampled_from(workloads))
        response = case.call(headers=headers, cookies=auth["cookies"])
        outcome.cases += 1
        outcome.statuses[response.status_code] += 1
        if response.status_code >= 500:
            outcome.server_errors.append(
                f"{operation.label} {mode.value}: {response.status_code} "
                f"{case.as_curl_command(headers=headers)}\n{response.text[:2000]}"
            )
            return
        for check in (status_code_conformance, content_type_conformance):
            try:
                case.validate_response(response, checks=[check], headers=headers)
            except (FailureGroup, Failure) as exc:  # a conformance finding: counted, not raised
                name = f"{check.__name__} {operation.label}"
                outcome.nonconforming[name] += 1
                outcome.examples.setdefault(
                    name,
                    f"{response.status_code} {response.headers.get('content-type')}: {exc}"[:600],
                )

    run()


# Past the suite's 120 s default: about a minute and a half alone on SQLite, longer on
# PostgreSQL or on a shared machine.
@pytest.mark.timeout(600)
# Streams (stream: true) are async iterators that daphne serves as they come; the WSGI
# handler has to drain them first and says so.
@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators")
def test_schemathesis_finds_no_server_error(world, wsgi_app, figures):
    schema = schemathesis.openapi.from_wsgi("/api/schema", wsgi_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    real = real_path_ids()
    outcome = Outcome()
    for auth in world.values():
        for operation in operations:
            for mode in schemathesis.GenerationMode:
                fuzz_operation(operation, mode, auth, real, outcome)
    figures.record(
        "T6",
        "schemathesis",
        operations=len(operations),
        callers=len(world),
        cases=outcome.cases,
        server_errors=len(outcome.server_errors),
        seed=SEED,
        status_codes=dict(sorted(outcome.statuses.items())),
        nonconforming={
            check: sum(n for name, n in outcome.nonconforming.items() if name.startswith(check))
            for check in ("status_code_conformance", "content_type_conformance")
        },
    )
    for name, count in outcome.nonconforming.most_common():
        print(f"non-conforming x{count}: {name}\n  {outcome.examples[name]}")
    assert outcome.server_errors == [], "\n\n".join(outcome.server_errors[:10])


# --- hostile JSONL batch files through /v1/files and /v1/batches -------------------------

BATCH_WORKLOAD = "product-descriptions"  # overnight-batch: claude-sonnet-4-6 → gpt-4o
CHAIN_MODEL, OTHER_CHAIN_MODEL, UNKNOWN_MODEL = "claude-sonnet-4-6", "gpt-4o", "gpt-9-nowhere"
BOM = b"\xef\xbb\xbf"

# Where a line must be refused: "file" by the upload's scan, "body" by /v1/batches (the
# chat.completions rules); "maybe" for the limits the interpreter sets (nesting depth).
OK, FILE, BODY, MAYBE = "ok", "file", "body", "maybe"

clean_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
)


VALID_KINDS = ["valid"] * 5 + ["id_64", "deep_ok", "huge", "extra_keys"]
HOSTILE_KINDS = [
    "bom", "invalid_json", "duplicate_id", "bad_id", "other_model", "nul", "surrogate_escape",
    "surrogate_bytes", "nan", "deep", "max_tokens_bad", "max_tokens_huge", "too_long", "blank",
    "non_utf8", "missing_field", "no_model", "no_messages", "wrong_url", "wrong_method",
    "stream", "bad_role", "tools", "not_object",
]  # fmt: skip


@dataclass
class Line:
    raw: bytes
    stage: str
    custom_id: object = None  # what the line's custom_id is, when its JSON parses
    model: object = None


def request_value(custom_id, model, **body) -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": "hi"}], **body},
    }


def encoded(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


@st.composite
def batch_line(draw, custom_id: str, model: str, earlier: list[str], hostile: bool) -> Line:
    """One line of a file whose lines name `model`: valid, or broken in one drawn way."""
    kind = draw(st.sampled_from(HOSTILE_KINDS if hostile else VALID_KINDS))
    # (a BOM is valid on line 1 only: the caller settles "bom")
    content = draw(clean_text)
    value = request_value(custom_id, model)
    value["body"]["messages"][0]["content"] = content or "hi"
    if draw(st.booleans()):
        # Within every chain model's output limit (gpt-4o's 16,384 is the smallest).
        value["body"]["max_tokens"] = draw(st.integers(min_value=1, max_value=16_384))
    if kind == "valid":
        return Line(encoded(value), OK, custom_id, model)
    if kind == "bom":
        # Stripped on line 1 (as OpenAI does); the caller marks a BOM on a later line FILE.
        return Line(BOM + encoded(value), "bom", custom_id, model)
    if kind == "invalid_json":
        raw = draw(st.sampled_from([encoded(value)[:-1], b"{not json", b'{"custom_id": "x",}']))
        return Line(raw, FILE)
    if kind == "duplicate_id":
        again = draw(st.sampled_from(earlier)) if earlier else custom_id
        value["custom_id"] = again
        return Line(encoded(value), OK, again, model)  # the file model flags the repeat
    if kind == "bad_id":
        value["custom_id"] = draw(
            st.sampled_from(["", "a b", "x" * 65, "é", "a/b", "a\u200bb", 7, None, ["a"]])
        )
        return Line(encoded(value), FILE)
    if kind == "id_64":
        value["custom_id"] = custom_id.ljust(64, "z")
        return Line(encoded(value), OK, value["custom_id"], model)
    if kind == "other_model":
        other = OTHER_CHAIN_MODEL if model != OTHER_CHAIN_MODEL else CHAIN_MODEL
        value["body"]["model"] = other
        return Line(encoded(value), OK, custom_id, other)  # the file model flags the mix
    if kind == "nul":
        where = draw(st.sampled_from(["content", "key", "raw"]))
        if where == "content":
            value["body"]["messages"][0]["content"] = "a\u0000b"
        elif where == "key":
            value["body"]["metadata"] = {"k\u0000": "v"}
        else:  # a raw NUL byte inside a JSON string is a control character: invalid JSON
            value["body"]["messages"][0]["content"] = "hi"
            return Line(encoded(value).replace(b'"hi"', b'"h\x00i"', 1), FILE)
        return Line(encoded(value), FILE)
    if kind == "surrogate_escape":
        raw = encoded(value)[:-2] + b', "metadata": {"s": "\\ud800"}}}'
        return Line(raw, FILE)
    if kind == "surrogate_bytes":
        return Line(encoded(value)[:-3] + b'\xed\xa0\x80"}]}}', FILE)
    if kind == "nan":
        constant = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity"]))
        return Line(encoded(value)[:-2] + b', "temperature": ' + constant + b"}}", FILE)
    if kind in ("deep", "deep_ok"):
        depth = 100_000 if kind == "deep" else draw(st.integers(min_value=2, max_value=60))
        nested = b'{"a": ' * depth + b"1" + b"}" * depth
        raw = encoded(value)[:-2] + b', "metadata": ' + nested + b"}}"
        return Line(raw, FILE if kind == "deep" else MAYBE, custom_id, model)
    if kind == "max_tokens_bad":
        value["body"]["max_tokens"] = draw(st.sampled_from([0, -1, 1.5, True, "10", [1]]))
        return Line(encoded(value), BODY, custom_id, model)
    if kind == "max_tokens_huge":
        # Above the output limit of every model of the chain (claude-sonnet-4-6's 64,000); past
        # 64 bits no JSON parser downstream carries the number, so the upload refuses the line.
        tokens = draw(st.sampled_from([64_001, 10**9, 2**63, 10**30]))
        value["body"]["max_tokens"] = tokens
        return Line(encoded(value), BODY if tokens < 2**63 else FILE, custom_id, model)
    if kind in ("huge", "too_long"):
        size = draw(st.sampled_from([100_000, 1_500_000])) if kind == "huge" else 8 << 20
        value["body"]["messages"][0]["content"] = "x" * size
        return Line(encoded(value), OK if kind == "huge" else FILE, custom_id, model)
    if kind == "blank":
        return Line(draw(st.sampled_from([b"", b" ", b"\t"])), FILE)
    if kind == "non_utf8":
        value["body"]["messages"][0]["content"] = "hi"
        return Line(encoded(value).replace(b'"hi"', b'"h\xffi"', 1), FILE)
    if kind == "missing_field":
        del value[draw(st.sampled_from(["custom_id", "method", "url", "body"]))]
        return Line(encoded(value), FILE)
    if kind == "no_model":
        del value["body"]["model"]
        return Line(encoded(value), FILE)
    if kind == "no_messages":
        del value["body"]["messages"]
        return Line(encoded(value), BODY, custom_id, model)
    if kind == "wrong_url":
        value["url"] = draw(st.sampled_from(["/v1/completions", "/v1/chat/completions/", "", None]))
        return Line(encoded(value), FILE)
    if kind == "wrong_method":
        value["method"] = draw(st.sampled_from(["GET", "post", "", None]))
        return Line(encoded(value), FILE)
    if kind == "stream":
        value["body"]["stream"] = True
        return Line(encoded(value), FILE)
    if kind == "bad_role":
        value["body"]["messages"][0] = draw(
            st.sampled_from(
                [{"role": "robot", "content": "x"}, {"role": "user", "content": None}, "hi"]
            )
        )
        return Line(encoded(value), BODY, custom_id, model)
    if kind == "tools":
        key = draw(st.sampled_from(["tools", "n", "temperature"]))
        value["body"][key] = 5
        # Five choices are an OpenAI model's to give, and more than a Claude model can.
        stage = OK if key == "n" and model == OTHER_CHAIN_MODEL else BODY
        return Line(encoded(value), stage, custom_id, model)
    if kind == "not_object":
        return Line(draw(st.sampled_from([b"[1, 2]", b"42", b'"line"', b"null"])), FILE)
    assert kind == "extra_keys"
    value["extra"] = {"anything": [1, 2]}
    value["body"]["user"] = "u-1"
    return Line(encoded(value), OK, custom_id, model)


@st.composite
def batch_file(draw) -> tuple[bytes, list[Line]]:
    """A file and its lines, each marked with the stage that must refuse it (if any)."""
    model = draw(st.sampled_from([CHAIN_MODEL, OTHER_CHAIN_MODEL, UNKNOWN_MODEL]))
    count = draw(st.integers(min_value=1, max_value=8))
    # Up to three hostile lines among valid ones; none in about a third of the files, so
    # acceptance is fuzzed too.
    hostile = draw(st.sets(st.integers(min_value=0, max_value=count - 1), max_size=3))
    lines: list[Line] = []
    for i in range(count):
        earlier = [x.custom_id for x in lines if isinstance(x.custom_id, str)]
        lines.append(draw(batch_line(f"r-{i}", model, earlier, i in hostile)))
    if sum(len(x.raw) > 1_000_000 for x in lines) > 1:
        # One huge line a file keeps a run inside its time; many add nothing.
        lines = [x for x in lines if len(x.raw) <= 1_000_000] or lines[:1]
    for number, line in enumerate(lines, start=1):
        if line.stage == "bom":
            line.stage = OK if number == 1 else FILE
    # Line ends: LF or CRLF; the last line may have none (an empty one always has one, or
    # it would not be a line at all).
    ends = [draw(st.sampled_from([b"\n", b"\r\n"])) for _ in lines]
    if lines and lines[-1].raw.strip() and draw(st.booleans()):
        ends[-1] = b""
    data = b"".join(line.raw + end for line, end in zip(lines, ends, strict=True))
    if lines and not lines[-1].raw and ends[-1] == b"":
        lines.pop()
    return data, lines


def expected_file_errors(lines: list[Line]) -> set[int]:
    """The line numbers the upload's scan must refuse (duplicates and a second model are
    errors of the file, found at the line where they appear)."""
    bad, seen, first_model = set(), set(), None
    for number, line in enumerate(lines, start=1):
        if line.stage == FILE:
            bad.add(number)
            continue
        if line.custom_id in seen:
            bad.add(number)
        seen.add(line.custom_id)
        if first_model is None:
            first_model = line.model
        elif line.model != first_model:
            bad.add(number)
    return bad


def row_counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (StoredFile, ClientBatch, ClientBatchLine, Request, BatchJob, BatchItem)
    } | {"LedgerEntry": LedgerEntry.objects.count()}


def named_lines(message: str) -> set[int]:
    # "line 7: ..." (not the "line 1 column 9" inside a quoted JSON parser message)
    return {int(n) for n in re.findall(r"\bline (\d+):", message)}


@pytest.fixture
def batch_api(db, sim, settings):
    settings.LLMOPS_API_RATE = "1000000/minute"
    demo_seed(simulator_url=sim.base_url, api_key=KEY)
    # Accepted files hold money until their batch ends, which no run here waits for: a
    # budget the fuzz cannot exhaust keeps every refusal about the file, not the money.
    Budget.objects.filter(team__slug="acme").update(limit_usd=1_000_000)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {KEY}", HTTP_X_WORKLOAD=BATCH_WORKLOAD)
    return api


@pytest.mark.timeout(600)
def test_hostile_batch_files_are_refused_by_line_or_accepted_whole(batch_api, figures):
    tally = Counter()
    problems: list[str] = []

    @settings(
        max_examples=JSONL_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @seed(SEED)
    @given(
        file=batch_file(),
        filename=st.sampled_from(["in.jsonl", "ü🙂.jsonl", "../../etc/passwd", "a" * 300]),
    )
    def upload(file, filename):
        data, lines = file
        tally["files"] += 1
        before = row_counts()
        response = batch_api.post(
            "/v1/files",
            {"purpose": "batch", "file": SimpleUploadedFile(filename, data)},
            format="multipart",
        )
        stage, step = "upload", response
        file_errors = expected_file_errors(lines)
        if response.status_code == 200:
            if file_errors or not lines:
                problems.append(
                    f"upload accepted, expected a refusal of {sorted(file_errors)}: "
                    f"{[(x.stage, x.raw[:200]) for x in lines]}"
                )
            before = row_counts()
            step = batch_api.post(
                "/v1/batches",
                {
                    "input_file_id": response.json()["id"],
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                },
                format="json",
            )
            stage = "batch"
        status = step.status_code
        tally[f"{stage} {status}"] += 1
        body_errors = {n for n, x in enumerate(lines, start=1) if x.stage == BODY}
        maybe = {n for n, x in enumerate(lines, start=1) if x.stage == MAYBE}
        if status >= 500:
            tally["server_errors"] += 1
            problems.append(f"{stage} {status}: {data[:300]!r}\n{step.content[:1000]!r}")
            return
        if stage == "batch" and lines and lines[0].model == UNKNOWN_MODEL:
            # The model is the client's: one llmops does not know is a 404 at creation.
            tally["refused_4xx"] += 1
            if status != 404 or step.json()["error"]["code"] != "model_not_found":
                problems.append(f"batch naming {UNKNOWN_MODEL}: {status} {step.content[:300]!r}")
            if row_counts() != before:
                problems.append(f"batch {status} left rows: {before} → {row_counts()}")
            return
        if stage == "batch" and status == 200:
            # Created at once ("validating"); a worker checks the lines and admits the file
            # whole, or fails the batch naming its lines with nothing admitted.
            batch_id = step.json()["id"]
            while client_batch_admit(batch_id=batch_id).more:
                pass
            batch = ClientBatch.objects.get(pk=batch_id)
            created = row_counts()["Request"] - before["Request"]
            if batch.status == ClientBatch.Status.IN_PROGRESS:
                tally["accepted"] += 1
                if body_errors or created != len(lines):
                    problems.append(
                        f"batch accepted with {created} requests for {len(lines)} lines "
                        f"(lines that must be refused: {sorted(body_errors)}): {data[:300]!r}"
                    )
                return
            tally[f"batch {batch.status}"] += 1
            if batch.status != ClientBatch.Status.FAILED or created:
                problems.append(
                    f"batch {batch.status} with {created} requests: {batch.errors}\n{data[:300]!r}"
                )
                return
            tally["refused_4xx"] += 1
            named = {e["line"] for e in batch.errors if e["line"]}
            expected = body_errors | maybe
            if not named or not named <= expected:
                problems.append(
                    f"failed batch names lines {sorted(named)}, expected some of "
                    f"{sorted(expected)}: {batch.errors}\n{data[:300]!r}"
                )
            return
        if status == 200:
            problems.append(f"upload refused with a 200?: {step.content[:300]!r}")
            return
        tally["refused_4xx"] += 1
        message = step.json()["error"]["message"]
        named = named_lines(message)
        expected = (file_errors if stage == "upload" else body_errors) | maybe
        if not lines:
            expected = {1}  # "line 1: the file is empty"
        if not named or not named <= expected:
            problems.append(
                f"{stage} {status} names lines {sorted(named)}, expected some of "
                f"{sorted(expected)}: {message[:300]}\n{data[:300]!r}"
            )
        if row_counts() != before:
            problems.append(f"{stage} {status} left rows: {before} → {row_counts()}")

    upload()
    figures.record(
        "T6",
        "JSONL fuzz",
        files=tally["files"],
        accepted=tally["accepted"],
        refused_4xx=tally["refused_4xx"],
        server_errors=tally["server_errors"],
        seed=SEED,
        outcomes={k: v for k, v in sorted(tally.items()) if " " in k},
    )
    assert problems == [], "\n\n".join(problems[:10])
