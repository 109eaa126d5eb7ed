"""Command bodies: one module per command group, each function returning an `output.Result`."""
