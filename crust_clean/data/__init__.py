"""Where samples come from: sources (folders, manifests, Hugging Face, FiftyOne) -> ``Samples``, image stores
and the decoded cache, what a source holds (``inspect``), and the torch datasets training reads."""
