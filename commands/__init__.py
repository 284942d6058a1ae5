"""Operator commands on the Faust app (`kilat <command>` / `faust -A kilat <command>`)."""

from commands import demo, docs, identity, ops, sagas  # noqa: F401
