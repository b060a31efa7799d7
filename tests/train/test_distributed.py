"""Two processes (``fit --nproc 2``: DDP over gloo on CPU) against one process: the same coresets and ledger
to float rounding until a near-tie goes the other way, rank 0 alone writing and speaking."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import crust_clean
from crust_clean.cli import cli
from crust_clean.train.distributed import SMALLEST_LAST_BATCH, Ranks, batch_plan, eval_shards

from ..conftest import write_colour_dataset

# a timm test model without BatchNorm (per-rank batch statistics would differ from one process's, see
# crust_clean.train.distributed), no augmentation (each rank draws its own stream), warm-up then selection epochs
OPTIONS = ["--model", "test_convnext", "--img-size", "32", "--epochs", "4", "--warmup-epochs", "1",
           "--batch-size", "16", "--lr", "0.02", "--no-augment", "--quiet"]


def fit_cli(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "crust_clean", "fit", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    images = write_colour_dataset(root, per_class=25, noise=0.2, seed=5)
    one = CliRunner().invoke(cli, ["fit", str(images), "--out", str(root / "one"), *OPTIONS])  # in this process
    assert one.exit_code == 0, one.output
    two = fit_cli(images, "--out", root / "two", "--nproc", "2", *OPTIONS, cwd=root)
    assert two.returncode == 0, two.stderr
    return crust_clean.Run(root / "one"), crust_clean.Run(root / "two"), two


def test_two_processes_match_one_until_float_rounding_decides_a_near_tie(one_and_two):
    one, two, _ = one_and_two
    a, b = one.ledger(), two.ledger()
    assert len(a) == len(b) and (a["sample_id"] == b["sample_id"]).all()
    # warm-up (epoch 0) and the first coreset epoch (1): the same coreset, weights and partners, losses to
    # float rounding; a wrong gradient average or a shard out of order would show here at once
    early = a["epoch"] <= 1
    for column in ("selected", "medoid", "weight", "predicted_label"):
        pd.testing.assert_series_equal(a.loc[early, column], b.loc[early, column])
    for column in ("loss", "prob_given", "margin"):
        np.testing.assert_allclose(a.loc[early, column], b.loc[early, column], rtol=1e-4, atol=1e-5)
    assert a.loc[a["epoch"] == 1, "selected"].astype(bool).any()
    # later epochs drift apart once a near-tie goes the other way (crust_clean.train.distributed), no further
    # than runs of one process do: the coresets still overlap almost entirely
    selected_a, selected_b = a["selected"].fillna(False).astype(bool), b["selected"].fillna(False).astype(bool)
    assert (selected_a == selected_b).mean() > 0.9
    assert np.corrcoef(one.scores.sort_values("sample_id")["score"],
                       two.scores.sort_values("sample_id")["score"])[0, 1] > 0.95
    assert two.metrics["summary"]["processes"] == 2 and one.metrics["summary"]["processes"] == 1
    # the saved model's embeddings: each rank wrote its own rows of the one file
    embeddings_one, embeddings_two = (np.asarray(run.embeddings(), dtype=np.float32) for run in (one, two))
    assert embeddings_two.shape == embeddings_one.shape == (100, 64) and (np.abs(embeddings_two).sum(1) > 0).all()
    assert np.corrcoef(embeddings_one.ravel(), embeddings_two.ravel())[0, 1] > 0.95


def test_rank_zero_alone_speaks(one_and_two):
    _, two, result = one_and_two
    assert result.stdout.count("run folder:") == 1  # the summary once, not once per rank
    assert sorted(p.name for p in two.path.iterdir()) == sorted(p.name for p in one_and_two[0].path.iterdir())


def test_a_bad_source_under_torchrun_is_one_error_line(tmp_path):
    result = fit_cli(tmp_path / "missing", "--nproc", "2", *OPTIONS, cwd=tmp_path)
    assert result.returncode != 0
    assert [line for line in result.stderr.splitlines() if line.startswith("Error:")] == \
        [f"Error: dataset path does not exist: {tmp_path / 'missing'}"]


@pytest.mark.parametrize("n,batch,world", [(50, 16, 2), (50, 16, 3), (33, 8, 4), (7, 16, 2), (129, 128, 1),
                                            (145, 128, 8), (12, 4, 2), (3, 4, 4)])
def test_batch_plan_splits_the_single_process_batches(n, batch, world):
    whole, sizes = batch_plan(n, batch, seed=3, ranks=Ranks())
    parts = [batch_plan(n, batch, seed=3, ranks=Ranks(r, world)) for r in range(world)]
    for step, sizes_r in enumerate(zip(*(p[1] for p in parts))):
        assert len(set(sizes_r)) == 1
        joined = np.concatenate([p[0][step] for p in parts])
        assert joined.tolist() == whole[step].tolist() and len(joined) == sizes_r[0] == sizes[step]
    trained = np.concatenate(parts[0][0] + [p for part in parts[1:] for p in part[0]]) if parts[0][0] else []
    if n >= world:  # every row once (a remainder joins the batch before it); else no rank could take a sample
        assert sorted(np.asarray(trained).tolist()) == list(range(n))
        assert all(size == batch for size in sizes[:-1])
        assert min(n, batch, SMALLEST_LAST_BATCH) <= sizes[-1] < batch + SMALLEST_LAST_BATCH
        if n >= SMALLEST_LAST_BATCH:  # BatchNorm needs two samples per rank
            assert all(len(b) >= 2 for part in parts for b in part[0])
    else:
        assert trained == [] and all(not part[0] for part in parts)


@pytest.mark.parametrize("n,batch,world", [(10, 3, 3), (2, 4, 4), (9, 2, 1), (100, 8, 3)])
def test_eval_shards_deal_out_whole_batches_and_cover_every_row_once(n, batch, world):
    shards = eval_shards(n, batch, world)
    assert sorted(np.concatenate(shards).tolist()) == list(range(n))
    for rank, rows in enumerate(shards):
        for start in range(0, len(rows), batch):  # each rank's own batches are single-process batches
            chunk = rows[start:start + batch]
            assert chunk[0] % batch == 0 and (chunk[0] // batch) % world == rank
            assert chunk.tolist() == list(range(chunk[0], min(chunk[0] + batch, n)))


def test_a_head_fit_under_two_processes_shares_the_feature_pass_and_ends_as_one_process(tmp_path, backbone):
    """--train head with --nproc 2: each rank computes half the feature batches into one cache entry, identical to
    a single process's, then rank 0 trains the head alone: the same run as one process, to the bit."""
    images = write_colour_dataset(tmp_path, per_class=25, noise=0.2, seed=5)
    head = ["--train", "head", "--model", "resnet10t", "--pretrained-weights", backbone, "--img-size", "24",
            "--epochs", "3", "--warmup-epochs", "1", "--batch-size", "16", "--feature-views", "1", "--quiet"]
    one = CliRunner().invoke(cli, ["fit", str(images), "--out", str(tmp_path / "one"), "--feature-cache",
                                   str(tmp_path / "cache-one"), *head])  # in this process
    assert one.exit_code == 0, one.output
    two = fit_cli(images, "--out", tmp_path / "two", "--feature-cache", tmp_path / "cache-two", "--nproc", "2", *head,
                  cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("run folder:") == 1
    (entry_one,), (entry_two,) = (list((tmp_path / f"cache-{n}").iterdir()) for n in ("one", "two"))
    assert entry_one.name == entry_two.name  # one entry, keyed as one process keys it
    features_one, features_two = np.load(entry_one / "features.npy"), np.load(entry_two / "features.npy")
    assert features_one.shape == (2, 100, 512) and np.abs(features_one).sum() > 0
    np.testing.assert_array_equal(features_two, features_one)
    assert json.loads((entry_two / "meta.json").read_text())["processes"] == 2
    a, b = crust_clean.Run(tmp_path / "one"), crust_clean.Run(tmp_path / "two")
    pd.testing.assert_frame_equal(a.ledger(), b.ledger())
    pd.testing.assert_frame_equal(a.scores, b.scores)
