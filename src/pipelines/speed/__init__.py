"""What makes a step cheaper without changing its result: the speed settings, the engine's
Strategy."""
