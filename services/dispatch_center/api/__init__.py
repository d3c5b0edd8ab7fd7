"""The center's HTTP API: integrations (intake) and operators."""
