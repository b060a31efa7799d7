"""crust-clean: find mislabeled images with CRUST coresets and train a noise-robust timm model.

Public API (heavy libraries load on first use, so ``import crust_clean`` is fast)::

    run = crust_clean.fit("images/", out="runs/first", epochs=20)
    run.scores            # suspects first: higher score = more likely mislabeled
    run.load_model()      # a timm model with the robust weights
"""

from .errors import BadInputError, CrustCleanError

__version__ = "0.1.0"
__all__ = ["fit", "describe", "Run", "RunConfig", "CrustCleanError", "BadInputError", "__version__"]


def __getattr__(name: str):
    if name in ("fit", "describe", "Run"):
        from . import run

        return getattr(run, name)
    if name == "RunConfig":
        from .config import RunConfig

        return RunConfig
    raise AttributeError(f"module 'crust_clean' has no attribute {name!r}")
