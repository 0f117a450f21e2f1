"""M5: ledger write rate. How many priced usage events a second `ledger_record_usage` records,
with the demo's budgets on (a team budget and, for product-descriptions, a workload budget:
every write also moves their period counters), on a throwaway database.

    .venv/bin/python bench/ledger_writes.py [--quick] [--json OUT]

Two paths, in interleaved rounds: the bare write (`ledger_record_usage`), and the way a
request is billed (`budget_reserve` at admission, then `hold_settle`). Figures are the median
over rounds with the spread (min-max); queries per write come from Django's query log.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
COMMAND = ".venv/bin/python bench/ledger_writes.py"


def setup_django(data_dir: str) -> None:
    os.environ["LLMOPS_DATA_DIR"] = data_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.settings")
    for name in [n for n in os.environ if n.startswith(("DATABASE_URL", "REDIS_URL"))]:
        del os.environ[name]  # M5 is the embedded default: SQLite
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("seed_demo", "--simulator-url", "http://127.0.0.1:9", stdout=io.StringIO())
    from django.conf import settings

    # The development default logs every query in memory; production does not.
    settings.DEBUG = False


def measure(rounds: int, per_round: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from billing.pricing import Usage
    from billing.services import budget_reserve, hold_settle, ledger_record_usage
    from routing.models import LlmModel, Workload

    workload = Workload.objects.select_related("team", "policy").get(slug="product-descriptions")
    model = LlmModel.objects.get(model_id="claude-sonnet-4-6")
    usage = Usage(input_tokens=1200, output_tokens=300)
    counter = iter(range(10**9))

    def bare() -> None:
        ledger_record_usage(
            key=f"bench:{next(counter)}",
            team=workload.team,
            workload=workload,
            model=model,
            mode="batch",
            usage=usage,
        )

    def billed() -> None:
        n = next(counter)
        admission = budget_reserve(
            key=f"bench-hold:{n}", team=workload.team, workload=workload, amount=Decimal("0.05")
        )
        hold_settle(hold=admission.hold, key=f"bench:{n}", model=model, mode="batch", usage=usage)

    paths = {"ledger_record_usage": bare, "budget_reserve + hold_settle": billed}
    for fn in paths.values():  # warm up: imports, caches, the periods' rows
        for _ in range(50):
            fn()
    rates: dict[str, list[float]] = {name: [] for name in paths}
    queries: dict[str, int] = {}
    for _ in range(rounds):
        for name, fn in paths.items():
            started = time.perf_counter()
            for _ in range(per_round):
                fn()
            rates[name].append(per_round / (time.perf_counter() - started))
    for name, fn in paths.items():
        with CaptureQueriesContext(connection) as captured:
            fn()
        queries[name] = len(captured.captured_queries)
    return {
        name: {
            "writes_per_s_median": round(statistics.median(values), 1),
            "writes_per_s_min": round(min(values), 1),
            "writes_per_s_max": round(max(values), 1),
            "ms_per_write_median": round(1000 / statistics.median(values), 3),
            "queries_per_write": queries[name],
        }
        for name, values in rates.items()
    }


def markdown(figures: dict, rounds: int, per_round: int) -> str:
    lines = [
        f"`{COMMAND}`: {rounds} interleaved rounds of {per_round} writes per path, one thread, "
        "SQLite (WAL) on a throwaway database seeded with the demo; each write is a batch-priced "
        "usage of the `product-descriptions` workload, so two budget periods (team and workload) "
        "move with it.",
        "",
        "| path | writes/s (median) | spread (min to max) | ms per write | queries per write |",
        "|---|---|---|---|---|",
    ]
    for name, f in figures.items():
        lines.append(
            f"| `{name}` | {f['writes_per_s_median']:,} | {f['writes_per_s_min']:,} to "
            f"{f['writes_per_s_max']:,} | {f['ms_per_write_median']} | {f['queries_per_write']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run, for development")
    parser.add_argument("--json", metavar="OUT", help="write the result here as JSON")
    args = parser.parse_args()
    # Rounds of 1,000 writes per path were within a few per cent of their median when the
    # machine was quiet; what moves a round is others' CPU on the machine, which more (and
    # shorter) rounds show and the median over them withstands better than fewer, longer ones.
    rounds, per_round = (3, 100) if args.quick else (8, 200)
    with tempfile.TemporaryDirectory(prefix="llmops-bench-m5-") as data_dir:
        setup_django(data_dir)
        figures = measure(rounds, per_round)
    result = {
        "id": "M5",
        "title": "Ledger write rate",
        "command": COMMAND,
        "figures": figures,
        "markdown": markdown(figures, rounds, per_round),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(result["markdown"])


if __name__ == "__main__":
    main()
