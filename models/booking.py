"""Records and tables of the booking domain."""
