"""What the gateway knows of the served models: their registry (metadata, labels, readiness), the
info_json they describe themselves with, canary routing between versions, and domain refusals."""
