"""Agents of the booking domain."""
