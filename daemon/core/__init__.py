"""The core layer: the vault's folders and notes, task files, the ledger, the audit log,
the policy and the configuration. It imports nothing else of vaultd."""
