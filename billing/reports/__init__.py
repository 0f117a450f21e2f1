"""Reads behind the billing pages and /api/v1/reports/: spend, savings, the workload audit,
budgets and the savings calculator, one module per section.

Every dollar figure is an exact sum of ledger entries (LedgerEntry says what each money
column means), never an estimate: saved = counterfactual - cost, split exactly into what
the model choice saved (counterfactual - standard), what batching saved (standard - cost
of batch entries), what flex saved (standard - cost of flex entries) and what the response
cache saved (standard - cost of cache hits). Realtime and streamed entries cost their
standard price, so nothing is left over.
"""

from __future__ import annotations

from billing.reports.audit import (
    ACTION_LABELS,
    FLEX_MIN_DEADLINE,
    AuditRow,
    Recommendation,
    repeated_requests,
    workload_audit,
)
from billing.reports.calculator import Calculation, calculate
from billing.reports.export import ledger_csv_page, ledger_csv_stream
from billing.reports.scope import (
    DEFAULT_RANGE,
    DEFAULT_RANGE_DAYS,
    MAX_RANGE_DAYS,
    RANGE_PRESETS,
    Scope,
    ScopeError,
    entries_for,
    ledger_page_entries,
    preset_bounds,
    scope_build,
)
from billing.reports.spend import (
    GRANULARITIES,
    BudgetLine,
    CacheRate,
    Savings,
    budget_lines,
    cache_hit_rates,
    overview,
    savings,
    savings_total,
)

__all__ = [
    "ACTION_LABELS",
    "DEFAULT_RANGE",
    "DEFAULT_RANGE_DAYS",
    "FLEX_MIN_DEADLINE",
    "GRANULARITIES",
    "MAX_RANGE_DAYS",
    "RANGE_PRESETS",
    "AuditRow",
    "BudgetLine",
    "CacheRate",
    "Calculation",
    "Recommendation",
    "Savings",
    "Scope",
    "ScopeError",
    "budget_lines",
    "cache_hit_rates",
    "calculate",
    "entries_for",
    "ledger_csv_page",
    "ledger_csv_stream",
    "ledger_page_entries",
    "overview",
    "preset_bounds",
    "repeated_requests",
    "savings",
    "savings_total",
    "scope_build",
    "workload_audit",
]
