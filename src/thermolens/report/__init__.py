"""Figures and reports: draw results, never compute physics."""
