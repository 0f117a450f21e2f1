"""Provider simulator: a small aiohttp server speaking the OpenAI, Anthropic, Azure OpenAI
(with Entra ID sign-in) and Gemini (native and OpenAI-compatible) wire protocols.

Start it with `python manage.py simulator`, or in tests with
`llmops.simulator.testing.running_simulator()`. It never imports Django. Where each provider
lives is in server.urls(); the control API (/_sim) in control.
"""
