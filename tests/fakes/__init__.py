"""Local stand-ins for third-party services, spoken to over real HTTP."""
