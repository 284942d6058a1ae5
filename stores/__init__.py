"""Database queries of each domain that more than one layer (or domain) needs."""
