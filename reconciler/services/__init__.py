"""Use cases: apply a report, register a payment, ingest a webhook, sweep due payments."""
