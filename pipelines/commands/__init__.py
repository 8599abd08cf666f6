"""CLI subcommands: one module per command, each with ``register(subparsers)``.

Each module defines ``register(subparsers) -> None`` which adds its parser and sets
``func=handler`` where ``handler(args) -> int`` returns the exit code.
"""
