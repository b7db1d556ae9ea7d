"""Corpora and synthetic data sources."""
