"""Messy real folders: every bad file is skipped and reported, odd but valid images load as a viewer shows
them, and sources that cannot make a run fail with one line before any training. Each case is built on disk."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

import crust_clean
from crust_clean.cli import cli
from crust_clean.data.images import TRANSPARENT_BACKGROUND, open_rgb

from ..conftest import QUICK, write_colour_dataset


def _jpeg(pixels: np.ndarray, **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95, **save)
    return buffer.getvalue()


def _truncated_jpeg() -> bytes:
    """A JPEG cut inside its scan data: the header opens, decoding fails (what a header check misses)."""
    whole = _jpeg(np.random.default_rng(0).integers(0, 255, (30, 30, 3), dtype=np.uint8))
    return whole[: int(len(whole) * 0.6)]


def _exif_rotated(path: Path) -> None:
    """A 30 x 20 JPEG (red left half) whose EXIF says: rotate 90 degrees clockwise to view (orientation 6)."""
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[:, :15] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path.write_bytes(_jpeg(pixels, exif=exif.tobytes()))


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


#: sample id -> start of the reason it is skipped with
EXPECTED_SKIPPED = {
    "red/truncated.jpg": "cannot decode image",
    "red/corrupt.jpg": "UnidentifiedImageError",
    "red/zero-byte.jpg": "UnidentifiedImageError",
    "red/notes.jpg": "UnidentifiedImageError",
    "yellow/broken-link.png": "file not found",
    "blue/huge.png": "DecompressionBombError",
}


@pytest.fixture
def messy(tmp_path, monkeypatch) -> Path:
    """The colour dataset (4 classes x 8) plus one of every bad or odd file a real folder holds."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # bomb limit 2000 px: 24x24 images pass, 100x100 not
    root = write_colour_dataset(tmp_path / "data", per_class=8)
    (root / "red" / "truncated.jpg").write_bytes(_truncated_jpeg())
    (root / "red" / "corrupt.jpg").write_bytes(os.urandom(500))
    (root / "red" / "zero-byte.jpg").write_bytes(b"")
    (root / "red" / "notes.jpg").write_text("not an image\n")
    (root / "red" / "readme.txt").write_text("ignored: not an image extension\n")
    (root / "red" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "red" / "._red_000.png").write_bytes(b"\0\5\26\7 AppleDouble")
    Image.new("L", (24, 24), 120).save(root / "green" / "gray.png")
    rgba = np.zeros((24, 24, 4), np.uint8)
    rgba[..., 1], rgba[:12, :, 3] = 180, 255  # green, top half opaque, bottom half transparent
    Image.fromarray(rgba).save(root / "green" / "half-transparent.png")
    palette = Image.new("P", (24, 24), 0)
    palette.putpalette([0, 180, 0, 9, 9, 9] + [0] * 762)
    palette.info["transparency"] = 1
    palette.paste(1, (0, 12, 24, 24))
    palette.save(root / "green" / "palette.png", transparency=1)
    Image.fromarray(np.full((24, 24), 65535, np.uint16)).save(root / "blue" / "deep-16bit.png")
    Image.new("CMYK", (24, 24), (200, 150, 0, 0)).save(root / "blue" / "cmyk.jpg")
    Image.new("1", (100, 100)).save(root / "blue" / "huge.png")
    _exif_rotated(root / "yellow" / "rotated.jpg")
    Image.new("RGB", (24, 24), (220, 210, 40)).save(root / "yellow" / "ünïcode name with spaces.png")
    (root / "yellow" / "link.png").symlink_to(root / "yellow" / "yellow_000.png")
    (root / "yellow" / "loop").symlink_to(root / "yellow", target_is_directory=True)
    (root / "yellow" / "broken-link.png").symlink_to(root / "nowhere.png")
    (root / "empty").mkdir()
    (root / "single").mkdir()
    Image.new("RGB", (24, 24), (128, 128, 128)).save(root / "single" / "only.png")
    shutil.copy(root / "red" / "red_000.png", root / "green" / "copy-of-red.png")  # a duplicate, other label
    return root


def test_odd_but_valid_images_decode_as_a_viewer_shows_them(messy):
    assert open_rgb(messy / "yellow" / "rotated.jpg", "x").size == (20, 30)  # EXIF orientation applied
    rotated = np.asarray(open_rgb(messy / "yellow" / "rotated.jpg", "x"))
    assert rotated[:15, :, 0].mean() > 200 and rotated[15:, :, 0].mean() < 60  # red half now on top
    assert np.asarray(open_rgb(messy / "blue" / "deep-16bit.png", "x")).min() == 255  # scaled, not clipped
    for name in ("half-transparent.png", "palette.png"):
        pixels = np.asarray(open_rgb(messy / "green" / name, "x"))
        assert tuple(pixels[0, 0]) == (0, 180, 0) and tuple(pixels[-1, -1]) == TRANSPARENT_BACKGROUND
    assert np.asarray(open_rgb(messy / "green" / "gray.png", "x")).shape == (24, 24, 3)
    assert np.asarray(open_rgb(messy / "blue" / "cmyk.jpg", "x")).shape == (24, 24, 3)
    with pytest.raises(crust_clean.CrustCleanError, match="cannot decode image .*truncated"):
        open_rgb(messy / "red" / "truncated.jpg", str(messy / "red" / "truncated.jpg"))


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_fit_skips_and_lists_every_bad_file_and_never_writes_into_the_source(messy, tmp_path, cache):
    before = _tree_digest(messy)
    run = crust_clean.fit(messy, out=tmp_path / "run", cache=cache, **{**QUICK, "epochs": 3, "warmup_epochs": 1})
    assert _tree_digest(messy) == before
    skipped = pd.read_csv(run.path / "skipped.csv")
    assert sorted(skipped["sample_id"]) == sorted(EXPECTED_SKIPPED)
    for sample_id, reason in zip(skipped["sample_id"], skipped["reason"]):
        assert reason.startswith(EXPECTED_SKIPPED[sample_id]) or EXPECTED_SKIPPED[sample_id] in reason, reason
    summary = run.metrics["summary"]
    assert summary["n_skipped"] == len(EXPECTED_SKIPPED) and summary["empty_classes"] == ["empty"]
    used = set(run.samples["sample_id"])
    assert {"single/only.png", "yellow/ünïcode name with spaces.png", "yellow/link.png", "yellow/rotated.jpg",
            "blue/deep-16bit.png", "blue/cmyk.jpg", "green/palette.png", "green/copy-of-red.png"} <= used
    assert not any("readme" in s or "/." in s or "loop/" in s for s in used)  # non-images, hidden, no loop
    assert len(used) == 4 * 8 + 10 and run.model_info["class_names"] == ["blue", "green", "red", "single", "yellow"]


def test_check_reports_counts_skips_duplicates_and_empty_classes(messy):
    result = CliRunner().invoke(cli, ["check", str(messy), "--quiet"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"42 samples, 5 classes, {len(EXPECTED_SKIPPED)} skipped" in out
    assert "#   single               1" in out and "#   green                12" in out
    for sample_id in EXPECTED_SKIPPED:
        assert f"# skipped {sample_id}: " in out
    assert "classes without a readable image (not trained on): empty" in out
    assert "2 groups of identical images (4 samples), 1 with different labels" in out
    assert "green/copy-of-red.png [green], red/red_000.png [red]" in out  # listed first: labels differ
    assert "yellow/link.png [yellow], yellow/yellow_000.png [yellow]" in out  # a symlink is a copy too
    assert out.strip().endswith(f"ok: fit can train on 42 samples in 5 classes ({len(EXPECTED_SKIPPED)} skipped)")


def _only_one_class(root: Path) -> None:
    write_colour_dataset(root / "data", per_class=3)
    for name in ("green", "blue", "yellow"):
        shutil.rmtree(root / "data" / "images" / name)


def _all_unreadable(root: Path) -> None:
    for name in ("a", "b"):
        (root / "data" / "images" / name).mkdir(parents=True)
        (root / "data" / "images" / name / "x.jpg").write_text("text")


def _undecodable_but_one_class(root: Path) -> None:
    _only_one_class(root)
    (root / "data" / "images" / "other").mkdir()
    (root / "data" / "images" / "other" / "cut.jpg").write_bytes(_truncated_jpeg())


@pytest.mark.parametrize("make,message", [
    (lambda root: None, "dataset path does not exist"),
    (lambda root: (root / "data" / "images").mkdir(parents=True), "no class folders"),
    (_only_one_class, "only one class with images"),
    (_all_unreadable, "no readable images"),
    (_undecodable_but_one_class, "only one class has images left"),
])
@pytest.mark.parametrize("command", ["check", "fit"])
def test_sources_that_cannot_make_a_run_exit_2_with_one_line_before_training(tmp_path, make, message, command):
    make(tmp_path)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [command, str(tmp_path / "data" / "images"), "--quiet"]
                                + (["--out", str(out)] if command == "fit" else []))
    assert result.exit_code == 2 and message in result.output, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert not (out / "ledger.parquet").exists() and not (out / "metrics.json").exists()
