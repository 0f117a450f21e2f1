from django.urls import path

from billing import apis

urlpatterns = [
    path("budgets", apis.BudgetListApi.as_view(), name="api-budgets"),
    path("budgets/<int:pk>", apis.BudgetDetailApi.as_view(), name="api-budget"),
    path("pricing/estimate", apis.PricingEstimateApi.as_view(), name="api-pricing-estimate"),
    path("ledger", apis.LedgerListApi.as_view(), name="api-ledger"),
    path("reports/overview", apis.ReportOverviewApi.as_view(), name="api-report-overview"),
    path("reports/ledger", apis.ReportLedgerApi.as_view(), name="api-report-ledger"),
    path("reports/ledger.csv", apis.ReportLedgerCsvApi.as_view(), name="api-report-ledger-csv"),
    path("reports/savings", apis.ReportSavingsApi.as_view(), name="api-report-savings"),
    path("reports/audit", apis.ReportAuditApi.as_view(), name="api-report-audit"),
    path("reports/budgets", apis.ReportBudgetsApi.as_view(), name="api-report-budgets"),
    path("reports/calculator", apis.ReportCalculatorApi.as_view(), name="api-report-calculator"),
]
