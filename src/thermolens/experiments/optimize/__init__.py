"""The optimizer study: the criticality-aware optimizer against AdamW on equal budgets (``compare``)."""
