from __future__ import annotations

import pytest


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
