"""Agents of the tracking domain."""
