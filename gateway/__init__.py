"""The Kilat API gateway."""
