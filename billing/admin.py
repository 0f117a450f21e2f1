from django.contrib import admin

from billing.models import Budget


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["__str__", "team", "workload", "period", "limit_usd", "enforcement"]
    list_filter = ["team", "period", "enforcement"]
    search_fields = ["team__slug", "workload__slug"]
    list_select_related = ["team", "workload"]
    autocomplete_fields = ["workload"]
