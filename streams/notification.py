"""Agents of the notification domain."""
