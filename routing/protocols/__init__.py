"""What clients send and receive, one module per protocol (llmops' side of the wire, as
routing/providers is the providers' side)."""
