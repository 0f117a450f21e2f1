from django.urls import path

from billing import apis

urlpatterns = [
    path("budgets", apis.BudgetListApi.as_view(), name="api-budgets"),
    path("budgets/<int:pk>", apis.BudgetDetailApi.as_view(), name="api-budget"),
    path("pricing/estimate", apis.PricingEstimateApi.as_view(), name="api-pricing-estimate"),
    path("ledger", apis.LedgerListApi.as_view(), name="api-ledger"),
]
