"""A run killed with SIGKILL, or stopped with Ctrl-C, resumes and ends exactly like an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import crust_clean
from crust_clean.cli import cli

from ..conftest import QUICK

EPOCHS = 8
OPTIONS = {**QUICK, "epochs": EPOCHS, "warmup_epochs": 2}
# the model named, as QUICK does: a CLI fit without a config or a network starts from the photos-cpu recipe
FLAGS = ["--model", QUICK["model"], "--img-size", "24", "--epochs", str(EPOCHS), "--warmup-epochs", "2",
         "--batch-size", "32", "--lr", "0.02", "--hflip", "0", "--quiet"]


@pytest.fixture(scope="module")
def uninterrupted(noisy_colours, tmp_path_factory):
    return crust_clean.fit(noisy_colours, out=tmp_path_factory.mktemp("resume") / "whole", **OPTIONS)


def _start(noisy_colours, out: Path, *flags: str) -> subprocess.Popen:
    # SIGINT as a terminal's Ctrl-C finds it: a test runner started in the background (nohup, `cmd &`) passes
    # SIGINT on ignored, and a Python started that way never raises KeyboardInterrupt
    return subprocess.Popen([sys.executable, "-m", "crust_clean", "fit", str(noisy_colours), "--out", str(out),
                             *FLAGS, *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_epochs(process: subprocess.Popen, out: Path, finished: int) -> None:
    """Until the run's metrics list ``finished`` epochs (the checkpoint follows within milliseconds)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if len(json.loads((out / "metrics.json").read_text())["epochs"]) >= finished:
                time.sleep(0.05)  # into the next epoch: the stop lands mid-epoch
                return
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.01)
    pytest.fail(f"the run did not reach epoch {finished} (exit code {process.poll()})")


def _assert_same_outputs(resumed, whole) -> None:
    pd.testing.assert_frame_equal(resumed.ledger(), whole.ledger())
    pd.testing.assert_frame_equal(resumed.scores, whole.scores)
    weights = load_file(str(resumed.path / "model.safetensors"))
    reference = load_file(str(whole.path / "model.safetensors"))
    assert weights.keys() == reference.keys()
    assert all(torch.equal(weights[k], reference[k]) for k in weights)
    assert not (resumed.path / "checkpoint.safetensors").exists() and not (resumed.path / "ledger").exists()


def test_a_killed_run_resumes_to_the_same_ledger_scores_and_weights(noisy_colours, tmp_path, uninterrupted):
    out = tmp_path / "killed"
    process = _start(noisy_colours, out)
    _wait_for_epochs(process, out, 4)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "scores.csv").exists(), "the run finished before it was killed: the test proves nothing"
    assert (out / "checkpoint.safetensors").exists()
    result = CliRunner().invoke(cli, ["fit", "--resume", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    resumed = crust_clean.Run(out)
    assert resumed.metrics["summary"]["resumed"] is True and len(resumed.metrics["epochs"]) == EPOCHS
    _assert_same_outputs(resumed, uninterrupted)


def test_ctrl_c_stops_with_a_resume_hint_and_the_run_resumes_identically(noisy_colours, tmp_path, uninterrupted):
    out = tmp_path / "interrupted"
    process = _start(noisy_colours, out)
    _wait_for_epochs(process, out, 3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("Error: interrupted; ") and "Traceback" not in stderr
    assert f"crust-clean fit --resume {out}" in stderr
    _assert_same_outputs(crust_clean.resume(out, progress=False), uninterrupted)


def test_resume_refuses_what_it_cannot_continue(noisy_colours, tmp_path, uninterrupted):
    with pytest.raises(crust_clean.BadInputError, match="already finished"):
        crust_clean.resume(uninterrupted.path)
    with pytest.raises(crust_clean.BadInputError, match="not a crust-clean run folder"):
        crust_clean.resume(tmp_path)
    started = tmp_path / "started"
    started.mkdir()
    for name in ("config.yaml", "source.json", "samples.csv"):
        (started / name).write_bytes((uninterrupted.path / name).read_bytes())
    with pytest.raises(crust_clean.BadInputError, match="before its first epoch ended"):
        crust_clean.resume(started)
    (started / "checkpoint.safetensors").write_bytes(b"half a checkpoint")
    with pytest.raises(crust_clean.BadInputError, match="cannot read checkpoint"):
        crust_clean.resume(started, progress=False)
    result = CliRunner().invoke(cli, ["fit", str(noisy_colours), "--resume", str(started)])
    assert result.exit_code == 2 and "give no SOURCE" in result.output
    result = CliRunner().invoke(cli, ["fit", str(noisy_colours), "--out", str(uninterrupted.path), "--quiet"])
    assert result.exit_code == 2 and "already exists" in result.output and "--resume" in result.output


def _stop_after_epoch(monkeypatch, last: int) -> None:
    """Recorder.record raises KeyboardInterrupt once epoch ``last`` is recorded (its checkpoint written), as
    Ctrl-C in the next epoch would (the real signal: test_ctrl_c_stops_with_a_resume_hint...)."""
    from crust_clean.run.recorder import Recorder

    record = Recorder.record

    def record_then_stop(self, result, model, optimisation):
        record(self, result, model, optimisation)
        if result.epoch == last:
            raise KeyboardInterrupt

    monkeypatch.setattr(Recorder, "record", record_then_stop)


def test_a_run_with_loader_workers_resumes_identically(noisy_colours, tmp_path, monkeypatch):
    """With workers the loaders persist across epochs; a resumed run starts new ones, which must augment
    the remaining epochs as the persistent ones would have (data.PairImages reseeds per epoch)."""
    from crust_clean.errors import Interrupted

    options = {**OPTIONS, "epochs": 6, "workers": 2}
    whole = crust_clean.fit(noisy_colours, out=tmp_path / "whole", **options)
    _stop_after_epoch(monkeypatch, 2)
    with pytest.raises(Interrupted):
        crust_clean.fit(noisy_colours, out=tmp_path / "run", **options)
    monkeypatch.undo()
    assert not (tmp_path / "run" / "scores.csv").exists()
    _assert_same_outputs(crust_clean.resume(tmp_path / "run", progress=False), whole)


def test_a_coreset_sized_to_the_noise_resumes_with_the_same_shares(noisy_colours, tmp_path, monkeypatch):
    from crust_clean.errors import Interrupted

    options = {**QUICK, "coreset_from_noise": True}
    whole = crust_clean.fit(noisy_colours, out=tmp_path / "whole", **options)
    _stop_after_epoch(monkeypatch, 3)  # the shares were sized at epoch 2
    with pytest.raises(Interrupted):
        crust_clean.fit(noisy_colours, out=tmp_path / "run", **options)
    monkeypatch.undo()
    resumed = crust_clean.resume(tmp_path / "run", progress=False)
    assert [e.get("coreset_fractions") for e in resumed.metrics["epochs"]] == \
        [e.get("coreset_fractions") for e in whole.metrics["epochs"]]
    _assert_same_outputs(resumed, whole)
