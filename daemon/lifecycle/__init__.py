"""The lifecycle layer: the stages a task file goes through (design §3), from intake to
`Done/`, `Failed/` or `Rejected/`, using the connectors and the core."""
