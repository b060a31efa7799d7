"""crust-clean: find mislabeled images with CRUST coresets and train a noise-robust timm model.

Conventions, stated once for the whole package:

- A dataset has N samples in K classes; labels are integers 0..K-1 that index ``class_names`` (sorted
  names, or a Hugging Face ClassLabel's order). The *given* label is the one in the source, possibly wrong.
- Every sample has a ``sample_id``, stable across runs, that keys every output (ledger, scores, exports,
  decisions): the path relative to an ImageFolder root, the path as a manifest writes it, an id column or
  the row index of a Hugging Face dataset, the FiftyOne sample id.
- ``score`` is in [0, 1] and a higher score means *more likely mislabeled*; suspects are the top of that
  ranking (``crust_clean.method.scores``).
- A fit writes a run folder (``crust_clean.run.folder``), the contract between training and everything that
  reads a run; ``Run`` reads it without torch.
- Sources are only read; every output is written atomically.
- Warnings meant for a user are ``errors.CrustCleanWarning`` (the CLI prints each as one ``Warning:`` line).

Public API (heavy libraries load on first use, so ``import crust_clean`` is fast)::

    run = crust_clean.fit("images/", out="runs/first", epochs=20)
    run = crust_clean.resume("runs/first")       # after a crash or Ctrl-C: continue from the last epoch
    run.scores            # suspects first: higher score = more likely mislabeled
    run.load_model()      # a timm model with the robust weights
    crust_clean.export_to_fiftyone(run)                    # review in the FiftyOne App (decisions carried forward)
    crust_clean.launch_review(run)                         # the App on the "to review" queue
    crust_clean.export_decisions(run, "decisions.csv")     # decisions to a spreadsheet (import_decisions: back)
    crust_clean.export_manifest(run, "cleaned/", policy="reviewed")   # the cleaned dataset
    crust_clean.write_report(run)                          # RUN/report/index.html: dataset health at a glance

The package follows the data's path: ``data`` (sources, images) -> ``train`` (timm model, CRUST epochs) with
``method`` (proxies, coreset selection, scores: pure functions) -> ``run`` (fit, the books of each epoch, the
run folder) -> ``review`` (FiftyOne, manifests, report).
"""

from .errors import BadInputError, CrustCleanError

__version__ = "0.1.0"
__all__ = ["fit", "resume", "describe", "Run", "RunConfig", "load_source", "export_to_fiftyone", "launch_review",
           "export_decisions", "import_decisions", "export_manifest", "write_report", "CrustCleanError",
           "BadInputError", "__version__"]
_LAZY = {"fit": "run.fit", "resume": "run.fit", "describe": "data.inspect", "Run": "run.folder",
         "RunConfig": "config", "load_source": "data.sources", "export_to_fiftyone": "review.fiftyone",
         "launch_review": "review.app", "export_decisions": "review.decision_store",
         "import_decisions": "review.decision_store",
         "export_manifest": "review.manifest", "write_report": "review.report"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'crust_clean' has no attribute {name!r}")
