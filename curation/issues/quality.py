"""`image_quality`: dark, over-exposed, blurry, blank, grayscale-in-colour, odd-shaped, odd-sized images.

cleanvision's issue types, from the decode-time statistics the embedder took while decoding
(embeddings/signals.py: no second pass over the files). Each reason has a score column
(higher = worse) and a cut that is relative to the dataset AND past an absolute floor: a
sample is flagged only when it is far in its dataset's tail (median +/- z * robust sigma, z
set so a clean dataset would flag about `EXPECTED_FALSE` samples per reason) and also past
the floor a user would call that defect anywhere (so a uniformly dark dataset of night
photos flags nothing, and a folder of identical sizes does not flag a 1-pixel difference).
Kept by default (`policy.on_image_quality = "drop"` drops them).

Provenance: the floors were chosen on the scikit-learn digits (dev set) and checked on the
held-out MNIST folder of benchmarks/duplicates_quality.py against planted defects.
"""

from __future__ import annotations

import numpy as np

from winnow.curation.issues.base import IssueContext, IssueFindings, IssueType, ReportSection

# Expected flags per reason on a clean dataset (sets z of the relative cut; a design choice).
EXPECTED_FALSE = 0.5
# z never below this, however many samples (the tails of these statistics are heavy).
MIN_Z = 3.5
# Floors: what counts as the defect in any dataset.
DARK_FLOOR = 0.25  # the brightest 1% of the pixels below 25% luminance
LIGHT_FLOOR = 0.75  # the darkest 1% of the pixels above 75% luminance
BLUR_FLOOR = 0.02  # Laplacian variance / luminance variance at 128 px (sharp digits ~0.05-0.3)
ENTROPY_FLOOR = 1.0  # bits of the luminance histogram (a flat colour: 0; a digit: ~1.5-3)
GRAY_COLOURFULNESS = 0.04  # 95th percentile of max(R,G,B) - min(R,G,B) below this: grayscale (JPEG chroma noise ~0.02)
COLOUR_DATASET = 0.9  # grayscale is flagged only when at least this share of the dataset is in colour
ASPECT_FLOOR = float(np.log(2.0))  # at least 2x wider (or taller) than the dataset's typical shape
SIZE_FLOOR = float(np.log(3.0))  # sides at least 3x longer or shorter than the dataset's typical size

_STATS = ("brightness_p01", "brightness_p99", "blur", "entropy", "colourfulness", "width", "height")


def _relative_cut(values: np.ndarray, n: int) -> tuple[float, float]:
    """(median, z * robust sigma) of the finite `values`."""
    from scipy.special import ndtri

    ok = values[np.isfinite(values)]
    if not len(ok):
        return float("nan"), float("inf")
    med = float(np.median(ok))
    sigma = 1.4826 * float(np.median(np.abs(ok - med)))
    z = max(MIN_Z, float(ndtri(1.0 - EXPECTED_FALSE / max(n, 2))))
    return med, z * sigma


def find_quality_issues(stats: dict[str, np.ndarray], measured: np.ndarray) -> IssueFindings:
    """Flags, scores and cut-offs over M rows from their decode-time statistics (NaN: not measured)."""
    m = len(measured)
    s = {k: np.where(measured, np.asarray(stats[k], dtype=np.float64), np.nan) for k in _STATS}
    n = int(measured.sum())
    flags, scores, cuts = {}, {}, {}

    def tail(score: np.ndarray, floor: float, code: str, eligible=None) -> None:
        med, width = _relative_cut(score, n)
        cut = max(med + width, floor)
        scores[f"{code}_score"] = score
        ok = np.isfinite(score) & (score > cut)
        flags[code] = ok if eligible is None else ok & eligible
        cuts[code] = round(float(cut), 4)

    flat = s["entropy"] < 0.5
    # Scores oriented so that higher = worse; each floor on the same scale.
    tail(1.0 - s["brightness_p99"], 1.0 - DARK_FLOOR, "dark")
    tail(s["brightness_p01"], LIGHT_FLOOR, "light")
    tail(-np.log(s["blur"] + 1e-6), -np.log(BLUR_FLOOR + 1e-6), "blurry", eligible=~flat)  # flat: no edges to blur
    tail(-s["entropy"], -ENTROPY_FLOOR, "low_information")
    log_aspect = np.log(s["width"] / s["height"])
    tail(np.abs(log_aspect - np.nanmedian(log_aspect)) if n else log_aspect, ASPECT_FLOOR, "odd_aspect_ratio")
    log_side = 0.5 * np.log(s["width"] * s["height"])
    tail(np.abs(log_side - np.nanmedian(log_side)) if n else log_side, SIZE_FLOOR, "odd_size")
    colour = s["colourfulness"]
    colour_share = float(np.mean(colour[np.isfinite(colour)] >= GRAY_COLOURFULNESS)) if n else 0.0
    scores["grayscale_score"] = GRAY_COLOURFULNESS - colour
    flags["grayscale"] = (np.isfinite(colour) & (colour < GRAY_COLOURFULNESS)
                          & (colour_share >= COLOUR_DATASET) & ~flat)
    cuts["grayscale"] = GRAY_COLOURFULNESS
    for code in flags:
        flags[code] = np.asarray(flags[code], dtype=bool) & measured
    return IssueFindings(flags=flags, columns=scores,
                         facts={"image_quality_cutoffs": cuts,
                                "image_quality_flags": {c: int(f.sum()) for c, f in flags.items()},
                                "image_quality_measured": n if m else 0})


_CODES = ("dark", "light", "blurry", "low_information", "grayscale", "odd_aspect_ratio", "odd_size")


class ImageQuality(IssueType):
    name = "image_quality"
    reasons = {
        "dark": "too dark: even its brightest pixels are dim (relative to the dataset, and under 25% luminance)",
        "light": "over-exposed: even its darkest pixels are bright (relative to the dataset, and over 75%)",
        "blurry": "no sharp edges (Laplacian variance far below the dataset's)",
        "low_information": "almost no information: a flat colour or near-blank image (luminance entropy)",
        "grayscale": "grayscale in a colour dataset",
        "odd_aspect_ratio": "its shape is at least 2x wider or taller than the dataset's typical image",
        "odd_size": "its sides are at least 3x longer or shorter than the dataset's typical image",
    }
    columns = {f"{c}_score": "float64" for c in _CODES}  # higher = worse; NaN where not measured
    default_action = "keep"
    rank_for_pruning = True  # a dark image is still data for the pruning ranking
    sections = {c: ReportSection(sort_by=f"{c}_score", descending=True, order="worst first", title="image quality",
                                 card_columns=(f"{c}_score",)) for c in _CODES}

    def find(self, ctx: IssueContext) -> IssueFindings:
        if not all(k in ctx.sample_stats for k in _STATS):  # embedded without decode-time signals
            return IssueFindings(flags={})
        measured = ctx.measured & np.isfinite(ctx.stat("entropy"))
        found = find_quality_issues({k: ctx.stat(k) for k in _STATS}, measured)
        return IssueFindings(flags=found.flags, columns={c: found.columns[c] for c in self.columns},
                             facts=found.facts)
