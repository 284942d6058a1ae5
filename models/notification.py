"""Records and tables of the notification domain."""
