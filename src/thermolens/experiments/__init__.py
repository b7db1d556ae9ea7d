"""Studies built from the library parts (no new physics here)."""
