"""Signed completion webhooks (issue 14): a durable outbox in the ledger (outbox.py) and the
delivery of what it owes (delivery.py), run by a supervised worker (worker.py)."""
