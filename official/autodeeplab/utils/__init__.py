"""Complexity counts and visualisation."""
