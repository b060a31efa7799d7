"""The CLI as a user runs it: a real subprocess for an error path (one line, no traceback), CliRunner for the rest."""

import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from crust_clean.cli import cli

from .conftest import QUICK


def crust_clean(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "crust_clean.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def test_a_bad_source_in_a_real_process_is_one_line_on_stderr_and_exit_2(tmp_path):
    result = crust_clean("fit", tmp_path / "images", "--out", tmp_path / "run")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"Error: dataset path does not exist: {tmp_path / 'images'}"]
    assert not (tmp_path / "run").exists()


# in-process from here (the same click main, without a Python start-up per case)
@pytest.mark.parametrize("make,message", [
    (lambda root: root.mkdir(), "no class folders"),
    (lambda root: Image.new("RGB", (8, 8)).save((root / "cats").mkdir(parents=True) or root / "cats" / "a.png"),
     "only one class"),
])
def test_bad_sources_exit_2_with_one_line_and_no_traceback(tmp_path, make, message):
    root = tmp_path / "images"
    make(root)
    result = CliRunner().invoke(cli, ["fit", str(root), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)  # raised nothing else
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_bad_option_value_is_a_usage_error(noisy_colours, tmp_path):
    result = CliRunner().invoke(cli, ["fit", str(noisy_colours), "--out", str(tmp_path / "run"),
                                      "--coreset-fraction", "1.5"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: crust.coreset_fraction must be in (0, 1]"
    result = CliRunner().invoke(cli, ["fit", str(noisy_colours), "--selector", "random"])
    assert result.exit_code == 2 and "Invalid value for '--selector'" in result.stderr


def test_help_does_not_import_torch():
    code = "import sys; from crust_clean.cli import cli; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_fit_prints_a_summary_and_honours_config_and_flags(noisy_colours, tmp_path):
    config = tmp_path / "quick.yaml"
    config.write_text("train:\n  epochs: 3\n  lr: 0.02\n  hflip: 0.0\ncrust:\n  warmup_epochs: 1\n")
    out = tmp_path / "run"
    args = ["fit", str(noisy_colours), "--out", str(out), "--config", str(config), "--quiet", "--epochs", "4",
            "--img-size", str(QUICK["img_size"]), "--batch-size", "32", "--selector", "facility-location",
            "--lr-decay-at", "0.5"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"run folder:      {out}" in result.output
    assert "top 10 suspects" in result.output and "never selected:" in result.output
    issues = pd.read_csv(out / "issues.csv")["issue"].value_counts(sort=False)
    assert ("other issues:    " + (", ".join(f"{i} {n}" for i, n in issues.items()) or "none")) in result.output
    import yaml

    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 4 and saved["train"]["lr"] == 0.02  # flag beats file, file beats default
    assert saved["crust"]["selector"] == "facility-location" and saved["crust"]["warmup_epochs"] == 1
    assert saved["train"]["lr_decay_at"] == [0.5]
    rerun = CliRunner().invoke(cli, args)
    assert rerun.exit_code == 2 and "already exists" in rerun.output


def test_a_fit_that_ends_within_the_warm_up_says_it_runs_no_crust(noisy_colours, tmp_path):
    out = tmp_path / "short"
    args = ["fit", str(noisy_colours), "--out", str(out), "--quiet", "--config", "default", "--img-size", "24",
            "--batch-size", "32", "--epochs", "2", "--warmup-epochs", "2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "Warning: epochs (2) <= warmup_epochs (2): no CRUST selection epoch runs, so the scores are plain "
        "training's and no sample is 'never selected'; give --epochs above --warmup-epochs"]
    assert "never selected:  0" in result.output  # what the warning is about
    for flags in (["--epochs", "3", "--warmup-epochs", "2"], ["--epochs", "2", "--selector", "none"]):
        dry = CliRunner().invoke(cli, ["fit", str(noisy_colours), "--dry-run", *flags])
        assert dry.exit_code == 0 and dry.stderr == ""  # selection runs, or none is asked for
    from crust_clean.config import resolve_config
    from crust_clean.errors import CrustCleanWarning

    with pytest.warns(CrustCleanWarning, match=r"epochs \(1\) <= warmup_epochs \(3\)"):  # the API warns too
        resolve_config(epochs=1, warmup_epochs=3)


def test_dry_run_prints_config_and_dataset_without_training(noisy_colours, tmp_path):
    result = CliRunner().invoke(cli, ["fit", str(noisy_colours), "--dry-run", "--config", "cpu-quick",
                                      "--out", str(tmp_path / "run"), "--epochs", "7"])
    assert result.exit_code == 0, result.output
    import yaml

    config_text = result.output.split("\n# dataset:")[0]
    config = yaml.safe_load(config_text)
    assert config["train"]["epochs"] == 7 and config["model"]["img_size"] == 32  # flag, then cpu-quick.yaml
    assert "160 samples, 4 classes, 0 skipped" in result.output and "24x24 (160)" in result.output
    augmentation = result.output.split("# train augmentation, on every epoch:\n")[1].split("# eval transform")[0]
    assert "RandomResizedCropAndInterpolation(size=(32, 32), scale=(0.35, 1.0)" in augmentation
    assert "RandomHorizontalFlip" not in augmentation  # cpu-quick: digits are not mirrored
    assert "CenterCrop(size=(32, 32))" in result.output.split("# eval transform")[1]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("config, crop, flips", [("default", "scale=(0.35, 1.0)", True),
                                                 ("digits", "scale=(0.8, 1.0)", False)])
def test_dry_run_names_the_augmentation_each_config_runs(noisy_colours, tmp_path, config, crop, flips):
    result = CliRunner().invoke(cli, ["fit", str(noisy_colours), "--dry-run", "--config", config])
    assert result.exit_code == 0, result.output
    augmentation = result.output.split("# train augmentation, on every epoch:\n")[1].split("# eval transform")[0]
    assert crop in augmentation
    assert ("RandomHorizontalFlip(p=0.5)" in augmentation) is flips


def test_configs_lists_the_shipped_configs():
    result = CliRunner().invoke(cli, ["configs"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines() if line and not line.startswith("(")]
    assert {"default", "cpu-quick", "cifar10-paper"} <= set(names)


def test_fit_help_lists_every_option_in_its_section():
    import dataclasses
    import re

    from crust_clean.config import RunConfig

    result = CliRunner().invoke(cli, ["fit", "--help"])
    assert result.exit_code == 0, result.output
    section_of, current = {}, None
    for line in result.output.splitlines():
        header = re.match(r"^(\w+) options:$", line)
        current = header.group(1) if header else current
        flag = re.match(r"^  (?:-\w, )?(--[\w-]+)", line)
        if flag:
            section_of[flag.group(1)] = current
    assert list(dict.fromkeys(section_of.values())) == ["Run", "Data", "Model", "CRUST", "Training"]
    assert {section_of[f] for f in ("--out", "--config", "--resume", "--nproc", "--help")} == {"Run"}
    names = {"data": "Data", "model": "Model", "crust": "CRUST", "train": "Training"}
    defaults = RunConfig()
    for section in dataclasses.fields(defaults):
        for field in dataclasses.fields(getattr(defaults, section.name)):
            flag = "--model" if (section.name, field.name) == ("model", "name") else "--" + field.name.replace("_", "-")
            assert section_of[flag] == names[section.name], flag
