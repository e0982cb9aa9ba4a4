"""The `vaultd` commands beside `run` and `init`: one module each, each with `register`."""
