"""Using a finished run's model: rebuilt from its record (:mod:`.rebuild`), fed raw inputs
(:mod:`.predictor`), and packaged as an MLflow model that takes them (:mod:`.served`)."""
