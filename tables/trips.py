"""Trip state per active booking (RocksDB table keyed by booking id)."""
