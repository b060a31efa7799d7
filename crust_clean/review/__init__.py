"""What reviewers use, read from a finished run folder (never from training code): the decisions contract, the
FiftyOne export and App, cleaned dataset manifests, the run report."""
