"""Pure domain rules (no I/O): state machines, pricing, fees, validation."""
