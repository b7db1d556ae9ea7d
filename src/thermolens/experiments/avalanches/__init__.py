"""The avalanche study: unit events to cascades (``cascades``), their statistics (``fits``), the command (``measure``)."""
