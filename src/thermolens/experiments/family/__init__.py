"""The model-family study: one LM (``lm``), the family of them (``train``), its scaling laws (``scaling``)."""
