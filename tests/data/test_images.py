"""Image stores and the decoded uint8 cache: same pixels as decoding the source, downscaled only when larger."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import crust_clean
from crust_clean.data.images import DecodedCache, FileImages, cached_size

from ..conftest import QUICK


def test_cached_size_only_downscales_to_the_shorter_side():
    assert cached_size(32, 32, 64) == (32, 32)
    assert cached_size(200, 100, 50) == (100, 50)
    assert cached_size(75, 300, 50) == (50, 200)


@pytest.mark.parametrize("where", ["memory", "disk"])
@pytest.mark.parametrize("workers", [0, 2])
def test_cache_holds_the_decoded_pixels(tmp_path, where, workers):
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(12, 10), (10, 12), (40, 20), (9, 9)]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    Image.open(paths[3]).convert("L").save(paths[3])  # grayscale becomes RGB like any decode
    store = FileImages(paths)
    file = tmp_path / "cache" / "pixels.u8" if where == "disk" else None
    cache = DecodedCache.build(store, 10, file=file, workers=workers)
    assert len(cache) == 4
    for i in (0, 1, 3):  # no larger than the cache size: lossless
        assert np.array_equal(np.asarray(cache[i]), np.asarray(store[i]))
    assert cache[2].size == (20, 10)  # downscaled, aspect kept
    expected = store[2].resize((20, 10), Image.Resampling.BICUBIC, reducing_gap=3.0)
    assert np.array_equal(np.asarray(cache[2]), np.asarray(expected))
    taken = cache.take([3, 0]).take([1])
    assert np.array_equal(np.asarray(taken[0]), np.asarray(store[0]))
    if where == "disk":
        assert isinstance(cache.pixels, np.memmap) and file.stat().st_size == (12 * 10 * 2 + 20 * 10 + 81) * 3


def test_a_fit_from_the_cache_equals_a_fit_from_the_files(noisy_colours, tmp_path):
    options = {**QUICK, "epochs": 3, "warmup_epochs": 1}
    plain = crust_clean.fit(noisy_colours, out=tmp_path / "plain", cache="none", **options)
    cached = crust_clean.fit(noisy_colours, out=tmp_path / "cached", cache="disk", **options)
    pd.testing.assert_frame_equal(plain.scores, cached.scores)
    assert not (cached.path / "cache").exists()  # removed once the run is finished
    assert plain.metrics["summary"]["cache"] == "none" and cached.metrics["summary"]["cache"] == "disk"


def test_auto_cache_is_memory_only_when_lossless_and_small(monkeypatch):
    from crust_clean.data import images

    sizes = [(24, 24)] * 160
    assert images.resolve_cache("auto", sizes, 24) == "memory"
    monkeypatch.setattr(images, "AUTO_CACHE_BYTES", 24 * 24 * 3 * len(sizes) - 1)  # one byte too few
    assert images.resolve_cache("auto", sizes, 24) == "none"
    monkeypatch.undo()
    assert images.resolve_cache("auto", sizes, 16) == "none"  # the cache would downscale: not lossless
    assert images.resolve_cache("auto", sizes + [(40, 30)], 24) == "none"  # one image would be downscaled
    assert images.resolve_cache("disk", sizes, 16) == "disk"
