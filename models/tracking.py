"""Records and tables of the tracking domain."""
