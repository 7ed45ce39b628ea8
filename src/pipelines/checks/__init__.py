"""Checks that refuse a run before it costs anything: the config before the run opens
(:mod:`.before_run`), the stages once the model and data exist (:mod:`.later_stages`)."""
