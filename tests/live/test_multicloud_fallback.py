"""A workload whose chain spans three clouds (Gemini → Azure OpenAI → Claude): with the first
two down, the third answers, each failure recorded as an attempt; the circuits open for the
two that failed. Its own module: it opens circuits."""

from __future__ import annotations

from tests.live.test_azure_gemini import globex, unique


def test_gemini_and_azure_down_claude_answers(llmops, sim):
    sim.fault(provider="gemini", status=503, count=100)
    sim.fault(provider="azure", status=500, count=100)
    llmops = globex(llmops)
    client = llmops.openai("exec-briefings")

    answer = client.chat.completions.create(
        model="auto",
        max_tokens=30,
        messages=[{"role": "user", "content": unique("What moved revenue today?")}],
    )

    assert answer.choices[0].message.content
    request = llmops.request_of(answer)
    attempts = [
        (a["provider"], a["model"], a["outcome"], a["status_code"]) for a in request["attempts"]
    ]
    assert attempts == [
        ("sim-gemini", "gemini-2.5-flash", "error", 503),
        ("sim-azure", "gpt-4.1-mini", "error", 500),
        ("sim-anthropic", "claude-haiku-4-5", "ok", None),
    ]
    assert request["provider"] == "sim-anthropic" and request["status"] == "completed"
    assert sim.usage()["anthropic"]["claude-haiku-4-5"]["realtime"]["requests"] == 1
