"""genspec runtime: what a compiled bundle runs (curation, model blocks, objectives, trainer, samplers)."""
