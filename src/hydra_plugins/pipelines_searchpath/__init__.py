"""Hydra discovers this package by its namespace (``hydra_plugins``); see ``searchpath``."""
