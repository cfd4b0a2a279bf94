"""Zero-shot class probabilities from a CLIP-style text tower: a prior with no training.

The text embeddings of class-name prompts ("a photo of a {name}") are the classifier's
weights; the softmax of scaled cosine similarities is the prior. Encoding the prompts
lives in embeddings/; this module only does the arithmetic.
"""

from __future__ import annotations

import numpy as np

from winnow.curation.blocks import release_pages
from winnow.curation.errors import InvalidArray
from winnow.curation.validation import check_unit_embeddings

# CLIP's learned logit scale is 100, i.e. temperature 0.01 on cosine similarities.
CLIP_TEMPERATURE = 0.01


def zero_shot_pred_probs(image_embeddings, class_text_embeddings, *, temperature: float = CLIP_TEMPERATURE,
                         block_size: int = 65536) -> np.ndarray:
    """(N, K) softmax(cos(image, class text) / temperature).

    image_embeddings: (N, D); class_text_embeddings: (K, D), one row per class (average
    several prompts per class before passing them). Both are L2-normalised here, so raw
    encoder outputs are fine. Computed in blocks of `block_size` rows.
    """
    # Raw encoder outputs are documented as fine here (normalised below, no warning); a
    # zero, NaN or inf row is still an error quoting it.
    img = check_unit_embeddings(image_embeddings, name="image_embeddings", warn=False)
    txt = check_unit_embeddings(class_text_embeddings, name="class_text_embeddings", warn=False)
    if img.shape[1] != txt.shape[1]:
        raise InvalidArray(
            f"image_embeddings have {img.shape[1]} dimensions but class_text_embeddings have {txt.shape[1]}"
        )
    if txt.shape[0] < 2:
        raise InvalidArray(f"class_text_embeddings needs at least 2 classes (rows), got {txt.shape[0]}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise InvalidArray(f"temperature must be a positive number, got {temperature!r}")
    txt = txt / np.maximum(np.linalg.norm(txt, axis=1, keepdims=True), 1e-12)
    out = np.empty((img.shape[0], txt.shape[0]), dtype=np.float64)
    for start in range(0, img.shape[0], block_size):
        block = np.asarray(img[start : start + block_size], dtype=np.float64)
        release_pages(img)
        block = block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        logits = block @ txt.T.astype(np.float64) / temperature
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        out[start : start + block_size] = p / p.sum(axis=1, keepdims=True)
    return out
