"""The reports layer: what vaultd tells a person about the vault (the CEO briefing, the
dashboard, `vaultd status`), read from the ledger, the audit log, the vault and Odoo."""
