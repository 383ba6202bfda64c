"""Alembic migrations for the polyledger ledger (installed as `polyledger.migrations`)."""
