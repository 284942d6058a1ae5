"""Operator commands on the Faust app (`kilat <command>` / `faust -A kilat <command>`)."""
