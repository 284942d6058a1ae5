"""Records and tables of the payment domain."""
