"""Model loading for the curation ops in runtime/curation/ops/model_*.py, and the tiny stand-ins.

- weights.py: where weights live (MODEL_DIR/<model id>), the full-scale error, the smoke stand-in and its
  note, quantile thresholds for stand-ins (`Limit`)
- clip.py, heads.py: CLIP embeddings and the LAION aesthetic MLP head
- classifier.py, segmenter.py: transformers image classifiers and defect segmenters
- lpips.py, craft.py: LPIPS (alex, vgg) and CRAFT, built in torch with the released module names
- captioner.py, embedders.py: VLM captions, sentence embeddings (precompute_embeddings encodes text and
  latents with runtime.encoders, as the trainer does)
- tokenizer.py: a byte-level tokenizer that needs no files, for stand-ins

Nothing here imports torch or transformers at module level: the registry imports the op modules to learn
which kinds exist.
"""

from runtime.curation.modelzoo.weights import (
    SMOKE_DROP_FRACTION,
    Limit,
    Located,
    ModelBacked,
    locate,
)

__all__ = ["SMOKE_DROP_FRACTION", "Limit", "Located", "ModelBacked", "locate"]
