"""The cli layer: `vaultd` and its commands, one module each (each with `register`).

It parses arguments, opens the service layer and prints; nothing below it imports it.
"""
