"""Built-in model plugins (LightningModules), one module per family."""
