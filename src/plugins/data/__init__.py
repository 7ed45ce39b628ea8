"""Built-in data plugins (LightningDataModules), one module per domain."""
