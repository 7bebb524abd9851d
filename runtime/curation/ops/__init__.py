"""The curation ops: one module per family of op kinds, each class registered for its kind (and scorer)
with `runtime.curation.registry.register`, which imports every module here. `model_*` modules hold the
model-backed ops (their weights load through runtime/curation/modelzoo); hamming, pii, gazetteer,
vocabulary and precompute are what those ops compute with.
"""
