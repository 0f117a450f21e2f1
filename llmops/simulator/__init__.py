"""Provider simulator: a small aiohttp server speaking the OpenAI and Anthropic wire protocols.

Start it with `python manage.py simulator`, or in tests with
`llmops.simulator.testing.running_simulator()`. It never imports Django.
"""
