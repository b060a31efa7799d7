"""A run: ``fit`` assembles and runs a fit, ``recorder`` keeps the books of each epoch, ``ledger`` the per-sample
per-epoch record, ``folder`` is the run folder's contract (its files, their writers, and ``Run``, the reader)."""
