"""Kilat's data: event Records (`faust.Record`) and database tables (SQLAlchemy Core)."""
