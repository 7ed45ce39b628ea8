"""Built-in plugins. Registered in pyproject.toml like any third-party plugin package."""
