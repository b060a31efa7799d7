"""timm's pretrained weights through the Hugging Face cache, without a network: a small timm model's weights are
written into a temporary cache laid out as the hub client lays it out, and every run sets HF_HUB_OFFLINE=1.
huggingface_hub reads its environment when imported, so each case that asks the hub runs in its own process."""

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest
import timm
import torch
from safetensors.torch import save_file

from ..conftest import write_colour_dataset

NAME, REPO = "resnet10t.c3_in1k", "timm/resnet10t.c3_in1k"  # its pretrained input size is 176 px


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A HF cache holding REPO's model.safetensors (random weights of the architecture: what is loaded must be
    exactly these), an empty cache, and a dataset to fit."""
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(7)
    weights = {k: v.contiguous() for k, v in timm.create_model("resnet10t", num_classes=1000).state_dict().items()}
    blob = root / "weights.safetensors"
    save_file(weights, str(blob))
    digest, commit = hashlib.sha256(blob.read_bytes()).hexdigest(), "0123456789abcdef0123456789abcdef01234567"
    repo = root / "cache" / f"models--{REPO.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    blob.rename(repo / "blobs" / digest)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "model.safetensors").symlink_to(f"../../blobs/{digest}")
    (root / "empty").mkdir()
    return {"cache": root / "cache", "empty": root / "empty", "file": repo / "blobs" / digest,
            "images": write_colour_dataset(root / "data", per_class=8)}


def offline(code: str, cache, *, cwd=None, **env_vars) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", **env_vars}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          cwd=cwd)


def crust_clean(*args, cache, cwd=None, **env_vars) -> subprocess.CompletedProcess:
    return offline(f"import sys; from crust_clean.cli import main; sys.argv = ['crust-clean', *{list(map(str, args))!r}]"
                   "; main()", cache, cwd=cwd, **env_vars)


def test_pretrained_loads_exactly_the_cached_tensors_and_a_new_head_starts_at_zero(hub):
    result = offline(f"""
        from pathlib import Path

        import torch
        from safetensors.torch import load_file
        from crust_clean.config import ModelConfig
        from crust_clean.train.models import create_model, fetch_pretrained

        cfg = ModelConfig(name={NAME!r}, pretrained=True)
        assert fetch_pretrained(cfg).resolve() == Path({str(hub['file'])!r}).resolve()  # the cache's blob
        cached = load_file({str(hub['file'])!r})
        four = create_model(cfg, 4).state_dict()
        body = [k for k in cached if not k.startswith("fc.")]
        assert len(body) > 50 and all(torch.equal(four[k], cached[k]) for k in body)
        assert not four["fc.weight"].any() and not four["fc.bias"].any()  # 4 classes: a new head, at zero
        same = create_model(cfg, 1000).state_dict()  # as many classes as the weights: their head is kept
        assert all(torch.equal(same[k], cached[k]) for k in cached)
        print("ok")
    """, hub["cache"])
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_a_pretrained_fit_runs_offline_at_the_models_own_size(hub, tmp_path):
    dry = crust_clean("fit", hub["images"], "--pretrained", "--model", NAME, "--dry-run", cache=hub["cache"])
    assert dry.returncode == 0, dry.stderr
    assert "pretrained: true" in dry.stdout and "img_size: 176" in dry.stdout  # the tag's input size
    out = tmp_path / "run"
    fitted = crust_clean("fit", hub["images"], "--pretrained", "--model", NAME, "--img-size", "32", "--epochs", "1",
                         "--warmup-epochs", "0", "--batch-size", "16", "--out", out, "--quiet", cache=hub["cache"])
    assert fitted.returncode == 0, fitted.stderr
    assert (out / "scores.csv").is_file() and "img_size: 32" in (out / "config.yaml").read_text()


def test_weights_that_are_not_cached_offline_are_one_error_line_before_any_work(hub, tmp_path):
    out = tmp_path / "run"
    result = crust_clean("fit", hub["images"], "--pretrained", "--model", NAME, "--out", out, cache=hub["empty"])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: the pretrained weights of {NAME} ({REPO}) are not in "
                                                    f"the Hugging Face cache {hub['empty']}"), result.stderr
    assert "HF_HUB_OFFLINE=1" in lines[0] and "--pretrained-weights FILE" in lines[0] and "--no-pretrained" in lines[0]
    assert not out.exists()  # nothing was started


def test_without_a_network_the_error_comes_at_once_not_after_retries(hub, tmp_path):
    import time

    start = time.monotonic()  # HF_HUB_OFFLINE unset; the hub's host (a .invalid name) never resolves
    result = crust_clean("fit", hub["images"], "--pretrained", "--model", NAME, "--out", tmp_path / "run",
                         cache=hub["empty"], HF_HUB_OFFLINE="0", HF_ENDPOINT="https://hub.invalid")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "the hub cannot be reached (no network)" in result.stderr
    assert time.monotonic() - start < 20  # huggingface_hub's own retries would take about a minute


def test_a_local_weights_file_wins_over_the_hub(hub, tmp_path):
    """In this process: with a local file the hub is never asked, so its environment does not matter."""
    from safetensors.torch import load_file

    from crust_clean.config import ModelConfig
    from crust_clean.train.models import create_model, fetch_pretrained

    local = tmp_path / "local.safetensors"
    local.write_bytes(hub["file"].read_bytes())
    cfg = ModelConfig(name=NAME, pretrained=True, pretrained_weights=str(local))
    assert fetch_pretrained(cfg) is None  # the hub is not asked
    stem = create_model(cfg, 4).state_dict()["conv1.0.weight"]
    assert torch.equal(stem, load_file(local)["conv1.0.weight"]) and stem.abs().sum() > 0


def test_a_model_without_hub_weights_is_refused_by_name():
    from crust_clean.config import ModelConfig
    from crust_clean.errors import BadInputError
    from crust_clean.train.models import prepare

    with pytest.raises(BadInputError, match="timm lists no pretrained weights on the Hugging Face hub for "
                                            "'coatnet_0_224': use --pretrained-weights FILE or --no-pretrained"):
        prepare(ModelConfig(name="coatnet_0_224", pretrained=True))
    scratch = ModelConfig(name="resnet10t")
    prepare(scratch)
    assert scratch.img_size == 64  # from scratch: the default size, and no hub involved
