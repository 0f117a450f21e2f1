from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

KEY = "llm_batch-test-key-0123456789"


@pytest.fixture
def demo(sim):
    call_command(
        "seed_demo", "--simulator-url", sim.base_url, "--api-key", KEY, stdout=io.StringIO()
    )


@pytest.fixture
def api(demo) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {KEY}")
    return client


@pytest.fixture
def defer(api):
    """POST deferred requests for a workload; returns their ids (each answered 202)."""

    def make(workload: str, n: int, prefix: str = "q") -> list[str]:
        ids = []
        for i in range(n):
            response = api.post(
                "/api/v1/requests",
                {
                    "workload": workload,
                    "messages": [{"role": "user", "content": f"{prefix} {i}: summarise"}],
                    "max_tokens": 30,
                },
                format="json",
            )
            assert response.status_code == 202, response.content
            ids.append(response.json()["id"])
        return ids

    return make
