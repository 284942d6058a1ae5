"""Operator commands on the Faust app (`kilat <command>` / `faust -A kilat <command>`)."""

from commands import ops  # noqa: E402,F401
