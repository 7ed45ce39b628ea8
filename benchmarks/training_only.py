"""A Lightning ``Trainer`` that times training alone (benchmarks only)."""

from __future__ import annotations

from typing import Any

#: what the benchmarks that time ``trainer.fit`` leave out, so the clock sees the training
#: steps and Lightning's loop: no logger, checkpoints, progress bar, model summary, sanity
#: check or validation
TRAINING_ONLY: dict[str, Any] = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "num_sanity_val_steps": 0,
    "limit_val_batches": 0,
}


def training_only_trainer(**settings: Any) -> Any:
    """``lightning.Trainer(**settings)`` with :data:`TRAINING_ONLY`."""
    import lightning as L

    return L.Trainer(**TRAINING_ONLY, **settings)
