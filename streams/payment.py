"""Agents of the payment domain."""
