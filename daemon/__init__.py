"""vaultd — an AI Employee that lives in an Obsidian vault."""

__version__ = "0.1.0"
