"""Figures and reports: draw results, never compute physics."""

from __future__ import annotations

from typing import Any


def html_table(frame: Any) -> str:
    """A pandas DataFrame as a compact HTML table for the self-contained reports."""
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0, classes="t")
