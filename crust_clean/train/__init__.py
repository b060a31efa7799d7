"""Training: timm models (created, and rebuilt from a run), the CRUST epoch loop and inference pass, several
processes (DDP), checkpoints. Nothing here writes a run folder: ``crust_clean.run`` does."""
