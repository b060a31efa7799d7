"""crust-clean: find mislabeled images with CRUST coresets and train a noise-robust timm model.

Public API (heavy libraries load on first use, so ``import crust_clean`` is fast)::

    run = crust_clean.fit("images/", out="runs/first", epochs=20)
    run = crust_clean.resume("runs/first")       # after a crash or Ctrl-C: continue from the last epoch
    run.scores            # suspects first: higher score = more likely mislabeled
    run.load_model()      # a timm model with the robust weights
    crust_clean.export_to_fiftyone(run)                    # review in the FiftyOne App
    crust_clean.export_manifest(run, "cleaned/", policy="reviewed")   # the cleaned dataset
    crust_clean.write_report(run)                          # RUN/report/index.html: dataset health at a glance
"""

from .errors import BadInputError, CrustCleanError

__version__ = "0.1.0"
__all__ = ["fit", "resume", "describe", "Run", "RunConfig", "load_source", "export_to_fiftyone", "export_manifest",
           "write_report", "CrustCleanError", "BadInputError", "__version__"]
_LAZY = {"fit": "run", "resume": "run", "describe": "run", "Run": "run", "RunConfig": "config", "load_source": "sources",
         "export_to_fiftyone": "fiftyone_export", "export_manifest": "manifest",
         "write_report": "report"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'crust_clean' has no attribute {name!r}")
