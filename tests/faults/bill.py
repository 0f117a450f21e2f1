"""The ledger reconciled against what the provider would bill: the simulator's `/_sim/usage`
book (its own count of every token it served, per provider, model and mode).

Both sides are grouped by (provider, model, mode) and compared in tokens and in dollars; the
simulator's tokens are priced with the price versions in force now, which are the ones the
ledger used as long as no price changes during the test (billing.pricing is linear per token
kind, so pricing a sum equals summing the prices). Entries of mode `cache`
cost nothing and reached no provider; `estimate` entries (a stream cut before the provider's
usage arrived) are counted apart, since their tokens are llmops' estimate and not the
provider's count.
"""

from __future__ import annotations

import json
from decimal import Decimal

from tests.live.stack import Llmops

# The simulator's book names each provider; the ledger's rows name its kind.
KIND_OF_BOOK = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure": "azure_openai",
    "gemini": "gemini",
}


def usage_delta(before: dict, after: dict) -> dict:
    """The simulator's book between two `/_sim/usage` snapshots, by "kind|model|mode"."""
    rows = {}
    for provider, kind in KIND_OF_BOOK.items():
        for model, modes in after.get(provider, {}).items():
            for mode, counts in modes.items():
                old = before.get(provider, {}).get(model, {}).get(mode, {})
                delta = {k: v - old.get(k, 0) for k, v in counts.items()}
                if any(delta.values()):
                    rows[f"{kind}|{model}|{mode}"] = delta
    return rows


RECONCILE = """
import json
from decimal import Decimal
from django.db.models import Count, Sum
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from billing.models import LedgerEntry
from billing.pricing import Usage, price_usage
from billing.selectors import price_in_force
from billing.services import processing_for
from routing.models import LlmModel
billed = json.loads({billed!r})
since = parse_datetime({since!r}) if {since!r} else None
entries = LedgerEntry.objects.exclude(mode="cache")
if since:
    entries = entries.filter(occurred_at__gte=since)
def empty():  # [requests, uncached input, cached input, cache writes, output, USD]
    return {{"charged": [0, 0, 0, 0, 0, Decimal(0)], "estimated": [0, 0, 0, 0, 0, Decimal(0)]}}
ledger = {{}}
for row in entries.values("model__provider__kind", "model__model_id", "mode", "kind").annotate(
    n=Count("id"), i=Sum("input_tokens"), c=Sum("cached_input_tokens"),
    w=Sum("cache_write_tokens"), o=Sum("output_tokens"), usd=Sum("cost_usd")):
    key = f"{{row['model__provider__kind']}}|{{row['model__model_id']}}|{{row['mode']}}"
    side = ledger.setdefault(key, empty())
    slot = side["estimated" if row["kind"] == "estimate" else "charged"]
    # a reversal's count is not a request: it takes its entry's tokens and cost back
    slot[0] += row["n"] if row["kind"] != "reversal" else -row["n"]
    for index, name in enumerate("icwo", start=1):
        slot[index] += row[name] or 0
    slot[5] += row["usd"] or 0
now = timezone.now()
out = {{}}
for key in sorted(set(ledger) | set(billed)):
    provider, model_id, mode = key.split("|")
    counts = billed.get(key, {{}})
    prompt = counts.get("input_tokens", 0)
    cached = counts.get("cached_input_tokens", 0)
    written = counts.get("cache_creation_tokens", 0)
    usage = Usage(input_tokens=prompt - cached - written, cached_input_tokens=cached,
                  cache_write_tokens=written, output_tokens=counts.get("output_tokens", 0))
    model = LlmModel.objects.filter(provider__kind=provider, model_id=model_id).first()
    billed_usd = (price_usage(usage, price_in_force(model, processing_for(mode), now)).total
                  if model and counts else Decimal(0))
    side = ledger.get(key) or empty()
    ch, es = side["charged"], side["estimated"]
    out[key] = {{
        "billed": [counts.get("requests", 0), usage.input_tokens, cached, written,
                   usage.output_tokens, str(billed_usd)],
        "charged": [*ch[:5], str(ch[5])],
        "estimated": [*es[:5], str(es[5])],
    }}
print(json.dumps(out))
"""


def reconcile(llmops: Llmops, billed: dict, since: str = "") -> dict:
    """Per "provider|model|mode": the simulator's bill, the ledger's charges and its estimates,
    each [requests, uncached input, cached input, cache writes, output, USD]."""
    return json.loads(llmops.shell(RECONCILE.format(billed=json.dumps(billed), since=since)))


def drift(rows: dict) -> dict:
    """Totals of a reconciliation: what the provider billed, what the ledger holds, and the
    difference in requests, tokens and USD between the bill and the ledger's charges and
    estimates together (0 everywhere is "drift 0")."""
    billed_usd = sum(Decimal(r["billed"][5]) for r in rows.values())
    charged_usd = sum(Decimal(r["charged"][5]) for r in rows.values())
    estimated_usd = sum(Decimal(r["estimated"][5]) for r in rows.values())
    token_drift = sum(
        abs(r["billed"][i] - r["charged"][i] - r["estimated"][i])
        for r in rows.values()
        for i in range(1, 5)
    )
    request_drift = sum(
        abs(r["billed"][0] - r["charged"][0] - r["estimated"][0]) for r in rows.values()
    )
    usd_drift = sum(
        abs(Decimal(r["billed"][5]) - Decimal(r["charged"][5]) - Decimal(r["estimated"][5]))
        for r in rows.values()
    )
    return {
        "billed_usd": billed_usd,
        "ledger_usd": charged_usd + estimated_usd,
        "estimated_usd": estimated_usd,
        "request_drift": request_drift,
        "token_drift": token_drift,
        "usd_drift": usd_drift,
    }
