"""Records and tables of the identity domain."""
