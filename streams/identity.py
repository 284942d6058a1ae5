"""Agents of the identity domain."""
