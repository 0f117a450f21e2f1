"""What the apps' admins share."""

from __future__ import annotations

from django import forms
from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """For records written only by the application (requests, the ledger, batch jobs): view,
    never edit. Not deleted either: the ledger points at them and history stays."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def team_label(row) -> str:
    return f"{row.team.slug} / {row}"


def team_choices(form: forms.ModelForm, name: str, model, *, team_id: int | None) -> None:
    """The `name` picker of `form`: rows of `model` labelled `team / name`, and only the
    team's once the team is known. Every team names its policies and workloads freely, so
    names repeat across teams (the demo's overnight-batch is in both)."""
    field = form.fields.get(name)
    if field is None:
        return
    rows = model.objects.select_related("team")
    field.queryset = rows.filter(team_id=team_id) if team_id else rows
    field.label_from_instance = team_label
