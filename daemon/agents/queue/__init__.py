"""The durable run queue: skill runs executed in the background by supervised workers."""
