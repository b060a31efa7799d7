"""Image quality: a few numbers measured on each image in the decoding pass a fit (or ``check``) already runs, and
the rule that turns them into issues a reviewer sees. Pure functions; no second read of any file.

``measure(image)``: ``MEASURES`` of one decoded RGB image, on a copy whose longer side is at most ``MEASURE_SIDE``
(a 12-megapixel photo then costs what a thumbnail costs, and sharpness compares across image sizes):

  luminance_p05, luminance_p95  the 5th / 95th percentile of luminance (ITU-R 601), in [0, 1]
  entropy                       Shannon entropy of the luminance histogram (256 bins), in bits (0: one grey level)
  sharpness                     the standard deviation of the luminance's Laplacian over that of the luminance
                                (edges against contrast: a blur lowers the first far more than the second)
  colour                        mean over pixels of (largest channel - smallest channel), in [0, 1]

``quality_issues(measures, sizes)``: per image and ``config.QUALITY_KINDS`` kind, a score (higher = worse) and whether it
passes the kind's threshold (``THRESHOLDS``, stated and tested on generated images in tests/data/test_quality.py).
Size and aspect ratio are judged against the dataset's own median, and grayscale only in a dataset that is mostly
in colour (MNIST's digits are all gray, and none of them is an issue).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from ..config import QUALITY_KINDS

#: What ``measure`` returns, in order.
MEASURES = ("luminance_p05", "luminance_p95", "entropy", "sharpness", "colour")
#: The longer side, in pixels, an image is measured at (smaller images are measured as they are).
MEASURE_SIDE = 256

#: The score at or above which an image has the issue (each kind's score is defined in ``quality_issues``):
#: dark: even its brightest 5 % under 15 % luminance; light: even its darkest 5 % over 90 %; blurry: a quarter of
#: the dataset's median sharpness or less; low-information: a quarter of the dataset's median entropy or less (a
#: blank or nearly one-colour image); grayscale: under 1 % mean channel spread; odd size: a side (by area) under a
#: quarter, or over 4 times, the dataset's median; odd aspect ratio: over twice as elongated as the dataset's
#: median shape, or half as much. Blur and information are judged against the dataset because their values follow
#: what it holds: on 3,000 images each, the 0.1 % quantile of entropy is 3.1 bits on CIFAR-10's photos, 0.6 on
#: MNIST's digits, 1.4 on Fashion-MNIST (medians 6.8, 1.7, 4.2); sharpness 0.29 on CIFAR-10 (median 0.98), 0.05 on
#: the same photos upscaled to 128 px (median 0.08), where every image is as soft as the next.
THRESHOLDS = {"dark": 0.85, "light": 0.90, "blurry": 4.0, "low-information": 4.0, "grayscale": 0.99,
              "odd-size": 4.0, "odd-aspect-ratio": 2.0}
#: Grayscale images are an issue only where fewer than this share of the dataset's images are grayscale.
GRAYSCALE_DATASET_SHARE = 0.1


def measure(image: Image.Image) -> np.ndarray:
    """(len(MEASURES),) float32 ``MEASURES`` of an RGB image (see the module docstring)."""
    if max(image.size) > MEASURE_SIDE:  # box-averaged by a whole factor: a third of a resampling's cost
        image = image.reduce(-(-max(image.size) // MEASURE_SIDE))
    rgb = np.asarray(image.convert("RGB"))
    luminance = np.asarray(image.convert("L"))
    counts = np.bincount(luminance.ravel(), minlength=256)
    cumulative = np.cumsum(counts) / luminance.size
    p05, p95 = np.searchsorted(cumulative, [0.05, 0.95]) / 255
    shares = counts[counts > 0] / luminance.size
    entropy = max(0.0, float(-(shares * np.log2(shares)).sum()))  # one grey level: 0, not -0 (a score divides by it)
    grey = luminance.astype(np.float32)
    sharpness = _laplacian_std(grey) / max(float(grey.std()), 1.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]  # channel by channel: a max over an axis of 3 is slow
    colour = float((np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)).mean()) / 255
    return np.array([p05, p95, entropy, sharpness, colour], dtype=np.float32)


def _laplacian_std(luminance: np.ndarray) -> float:
    """Standard deviation of the 4-neighbour Laplacian over the interior pixels (0 for an image under 3 px)."""
    if min(luminance.shape) < 3:
        return 0.0
    x = luminance
    laplacian = x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:] - 4 * x[1:-1, 1:-1]
    return float(laplacian.std())


def no_measures(n: int) -> np.ndarray:
    """(n, len(MEASURES)) of NaN: images that were not measured (undecodable, or not yet read)."""
    return np.full((n, len(MEASURES)), np.nan, dtype=np.float32)


def quality_issues(measures: np.ndarray, sizes: np.ndarray) -> pd.DataFrame:
    """Each image's score for every ``QUALITY_KINDS`` kind and whether it has the issue.

    Parameters
    ----------
    measures : (n, len(MEASURES)) array
        ``measure`` of each image (a row of NaN: not measured; it has no issue).
    sizes : (n, 2) array
        (width, height) of each image, as stored.

    Returns
    -------
    DataFrame with columns ``<kind>`` (the score, higher = worse) and ``<kind>_issue`` (bool: score >=
    ``THRESHOLDS[kind]``) for each kind. Scores: dark 1 - luminance_p95; light luminance_p05; blurry the
    dataset's median sharpness over the image's (never an issue for a low-information image, whose edges and
    contrast are both next to nothing); low-information the dataset's median entropy over the image's; grayscale
    1 - colour; odd-size the factor by which the image's side (square root of its area) is off the dataset's
    median, >= 1 either way; odd-aspect-ratio the same for its long / short side ratio.
    """
    m = {name: np.asarray(measures[:, i], dtype=np.float64) for i, name in enumerate(MEASURES)}
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    side = np.sqrt(sizes[:, 0] * sizes[:, 1])
    aspect = sizes.max(axis=1) / np.maximum(sizes.min(axis=1), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = {
            "dark": 1 - m["luminance_p95"],
            "light": m["luminance_p05"],
            "blurry": _median(m["sharpness"]) / m["sharpness"],
            "low-information": _median(m["entropy"]) / m["entropy"],
            "grayscale": 1 - m["colour"],
            "odd-size": _off_median(side),
            "odd-aspect-ratio": _off_median(aspect),
        }
    out = pd.DataFrame(scores)
    for kind in QUALITY_KINDS:
        out[f"{kind}_issue"] = np.nan_to_num(out[kind].to_numpy(), nan=-np.inf) >= THRESHOLDS[kind]
    out["blurry_issue"] &= ~out["low-information_issue"]
    if out["grayscale_issue"].mean() >= GRAYSCALE_DATASET_SHARE:  # a grayscale dataset: nothing is odd
        out["grayscale_issue"] = False
    return out


def _median(values: np.ndarray) -> float:
    """The median of the measured (not NaN) values; NaN when there are none."""
    measured = values[~np.isnan(values)]
    return float(np.median(measured)) if len(measured) else np.nan


def _off_median(values: np.ndarray) -> np.ndarray:
    """How many times each value is above or below the median of the positive ones (>= 1; 1 at the median)."""
    positive = values[values > 0]
    if not len(positive):
        return np.ones(len(values))
    ratio = np.maximum(values, 1e-9) / np.median(positive)
    return np.maximum(ratio, 1 / ratio)
