from __future__ import annotations

from django.apps import AppConfig


class BatchesConfig(AppConfig):
    """The buffer, provider batch jobs from submit to ingest, and clients' own batches."""

    name = "batches"
