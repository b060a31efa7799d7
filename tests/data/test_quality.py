import numpy as np
import pytest
from PIL import Image, ImageFilter

from crust_clean.data.quality import MEASURES, QUALITY_KINDS, THRESHOLDS, measure, quality_issues


def photo(seed: int, size=(48, 48)) -> Image.Image:
    """A sharp colour image: blocks of random colours with noise, like a small photo's texture."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(30, 225, (6, 6, 3)).astype(np.float64)
    pixels = np.kron(blocks, np.ones((size[1] // 6 + 1, size[0] // 6 + 1, 1)))[:size[1], :size[0]]
    pixels += rng.normal(scale=12, size=pixels.shape)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def dataset_with(odd: dict[str, Image.Image], normal: int = 40):
    images = [photo(seed) for seed in range(normal)] + list(odd.values())
    measures = np.stack([measure(image) for image in images])
    sizes = np.array([image.size for image in images])
    return quality_issues(measures, sizes), {name: normal + i for i, name in enumerate(odd)}


def test_measures_of_a_known_image():
    half = np.zeros((20, 40, 3), np.uint8)
    half[:, 20:] = 255  # half black, half white: 1 bit
    got = dict(zip(MEASURES, measure(Image.fromarray(half))))
    assert got["luminance_p05"] == 0 and got["luminance_p95"] == 1
    assert got["entropy"] == pytest.approx(1.0) and got["colour"] == 0
    gray = Image.fromarray(np.full((10, 10, 3), 128, np.uint8))
    assert measure(gray)[MEASURES.index("entropy")] == 0
    big = photo(0, size=(1200, 900))  # measured at MEASURE_SIDE: what a thumbnail of it measures, near enough
    np.testing.assert_allclose(measure(big)[:3], measure(big.reduce(5))[:3], atol=0.05)


def test_each_kind_is_found_on_the_generated_image_that_has_it_and_on_no_normal_image():
    base = photo(99)
    odd = {
        "dark": Image.eval(base, lambda v: v // 8),
        "light": Image.eval(base, lambda v: 235 + v // 12),
        "blurry": base.resize((192, 192), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(4)).resize(
            (48, 48), Image.Resampling.NEAREST),
        "low-information": Image.fromarray(np.full((48, 48, 3), (90, 140, 60), np.uint8)),
        "grayscale": base.convert("L").convert("RGB"),
        "odd-size": photo(7, size=(8, 8)),
        "odd-aspect-ratio": photo(8, size=(150, 40)),
    }
    issues, row = dataset_with(odd)
    for kind in QUALITY_KINDS:
        flagged = np.nonzero(issues[f"{kind}_issue"].to_numpy())[0].tolist()
        assert flagged == [row[kind]], (kind, flagged, issues[kind].round(2).tolist())
        assert issues[kind].iloc[row[kind]] >= THRESHOLDS[kind]


def test_blank_images_are_low_information_not_blurry_and_a_grayscale_dataset_has_no_grayscale_issue():
    gray = [photo(seed).convert("L").convert("RGB") for seed in range(20)]
    blank = Image.fromarray(np.full((48, 48, 3), 200, np.uint8))
    measures = np.stack([measure(image) for image in gray + [blank]])
    issues = quality_issues(measures, np.array([(48, 48)] * 21))
    assert not issues["grayscale_issue"].any()
    assert issues["low-information_issue"].tolist() == [False] * 20 + [True]
    assert not issues["blurry_issue"].any()


def test_an_image_that_was_not_measured_has_no_issue():
    measures = np.stack([measure(photo(seed)) for seed in range(10)] + [np.full(len(MEASURES), np.nan)])
    issues = quality_issues(measures, np.array([(48, 48)] * 11))
    assert not issues.filter(like="_issue").iloc[10].any()
