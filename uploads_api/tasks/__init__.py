"""The background pipeline: one module per task, a runner that executes task rows."""
