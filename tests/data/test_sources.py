import numpy as np
import pytest
from PIL import Image

from crust_clean.data.sources import scan_image_folder, stratified_split
from crust_clean.errors import BadInputError


def image(path, colour=(10, 20, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


def test_scan_is_sorted_recursive_and_skips_what_it_cannot_read(tmp_path):
    image(tmp_path / "b" / "z.png")
    image(tmp_path / "b" / "sub" / "a.jpg")
    image(tmp_path / "a" / "x.bmp")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / ".hidden.png").write_bytes(b"")
    (tmp_path / "a" / "broken.jpg").write_bytes(b"this is not a jpeg")
    (tmp_path / "empty_class").mkdir()
    samples = scan_image_folder(tmp_path)
    assert samples.class_names == ["a", "b"]
    assert samples.sample_ids == ["a/x.bmp", "b/sub/a.jpg", "b/z.png"]
    assert samples.labels.tolist() == [0, 1, 1]
    assert [path for path, _ in samples.skipped] == ["a/broken.jpg"]


@pytest.mark.parametrize("make,message", [
    (lambda root: None, "does not exist"),
    (lambda root: root.mkdir(), "no class folders"),
    (lambda root: (root / "only").mkdir(parents=True), "no readable images"),
    (lambda root: image(root / "only" / "x.png"), "only one class"),
])
def test_meaningless_inputs_raise_one_clear_error(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(BadInputError, match=message):
        scan_image_folder(root)


def test_stratified_split_takes_the_share_from_every_class():
    labels = np.repeat([0, 1, 2], [50, 20, 1])
    train, val = stratified_split(labels, 0.1, seed=0)
    assert np.bincount(labels[val], minlength=3).tolist() == [5, 2, 0]
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(71))
    assert stratified_split(labels, 0.1, seed=0)[1].tolist() == val.tolist()
    assert len(stratified_split(labels, 0.0, seed=0)[1]) == 0


def write_manifests(tmp_path):
    """Two classes of images under tmp_path/imgs, and the same rows as manifest.csv and manifest.jsonl."""
    import json

    rows = []
    for i in range(3):
        for label, colour in (("cat", (200, 0, 0)), ("dog", (0, 0, 200))):
            image(tmp_path / "imgs" / f"{label}{i}.png", colour)
            rows.append({"path": f"imgs/{label}{i}.png", "label": label})
    rows.append({"path": "imgs/gone.png", "label": "cat"})  # missing file: skipped, not fatal
    (tmp_path / "manifest.csv").write_text("path,label\n" + "".join(f"{r['path']},{r['label']}\n" for r in rows))
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_csv_and_jsonl_manifests_read_the_same_samples(tmp_path):
    from crust_clean.data.sources import load_source

    write_manifests(tmp_path)
    csv_samples, jsonl_samples = load_source(tmp_path / "manifest.csv"), load_source(tmp_path / "manifest.jsonl")
    for samples in (csv_samples, jsonl_samples):
        assert samples.class_names == ["cat", "dog"]
        assert samples.sample_ids == [f"imgs/{c}{i}.png" for i in range(3) for c in ("cat", "dog")]
        assert samples.labels.tolist() == [0, 1] * 3
        assert samples.paths[0] == tmp_path / "imgs" / "cat0.png"
        assert samples.skipped == [("imgs/gone.png", "file not found")]
        assert samples.root is None and samples.sizes == [(8, 8)] * 6
    assert csv_samples.name == "manifest"


@pytest.mark.parametrize("text,message", [
    ("path,class\nimgs/a.png,cat\n", "needs columns path,label"),
    ("", "needs columns path,label"),
    ("path,label\nimgs/a.png,cat\nimgs/a.png,dog\n", "lists 'imgs/a.png' more than once"),
])
def test_manifest_errors_are_clear(tmp_path, text, message):
    from crust_clean.data.sources import load_source

    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(BadInputError, match=message):
        load_source(tmp_path / "bad.csv")
    with pytest.raises(BadInputError, match="manifest not found"):
        load_source(tmp_path / "nope.jsonl")
