"""Records and tables of the review domain."""
