"""Output parity of a compiled engine against PyTorch: the same input must give the same segmentation."""

from __future__ import annotations

import numpy as np

from nasseg.errors import MeasurementFailed

# FP16 engines shift logits slightly; what must survive is the per-pixel class decision.
MIN_LABEL_AGREEMENT = 0.99


def check_parity(reference: np.ndarray, engine_output: np.ndarray, backend: str) -> dict[str, float]:
    """Compare logits (N, C, H, W); raise ``MeasurementFailed`` when the engine's labels differ from PyTorch's."""
    if reference.size != engine_output.size:
        raise MeasurementFailed(
            f"{backend} output has {engine_output.size} values, PyTorch's has {reference.size} {reference.shape}"
        )
    engine_output = engine_output.reshape(reference.shape)
    scale = float(np.abs(reference).max()) or 1.0
    max_rel_error = float(np.abs(engine_output - reference).max()) / scale
    agreement = float((engine_output.argmax(axis=1) == reference.argmax(axis=1)).mean()) if reference.ndim == 4 else 1.0
    if agreement < MIN_LABEL_AGREEMENT or not np.isfinite(engine_output).all():
        raise MeasurementFailed(
            f"{backend} engine disagrees with PyTorch: {agreement:.2%} of pixels get the same class "
            f"(need {MIN_LABEL_AGREEMENT:.0%}), max error {max_rel_error:.3g} of the largest logit"
        )
    return {"label_agreement": agreement, "max_rel_error": max_rel_error}
