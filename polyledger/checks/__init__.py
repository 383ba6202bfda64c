"""What `audit` checks: completeness from the ledger (`audit`), the files against the ledger
(`files`, `--deep`), the stored bars (`quality`, `--quality`; `grouped` for grouped daily)."""
