"""Sub-commands of ``uploads-api``; each module has ``register(subcommands)``."""
