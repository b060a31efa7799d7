"""The method's math, pure functions over arrays and tensors: gradient proxies, coreset selection, scores and
the suspect rule, detection metrics, synthetic noise. No model, no files."""
