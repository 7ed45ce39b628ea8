"""Built-in pipeline stages."""
