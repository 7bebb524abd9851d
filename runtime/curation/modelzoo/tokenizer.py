"""A byte-level tokenizer that needs no vocabulary file, for the tiny stand-in models.

GPT-2's byte-to-unicode alphabet with no merges: every UTF-8 byte is one token, so any text in any language
encodes, and the tokenizer saves as a `tokenizer.json` that `AutoTokenizer` / `AutoProcessor` load back
like a released one.
"""

from __future__ import annotations

PAD, EOS, UNK, IMAGE = "<pad>", "</s>", "<unk>", "<image>"


def byte_tokenizer(end_of_text: bool = True):
    """A transformers fast tokenizer: ids 0-3 are <pad>, </s>, <unk>, <image>; then the 256 bytes.

    `end_of_text`: every encoded text ends in </s> (CLIP-style text towers pool at the end-of-text token).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: index for index, token in enumerate([PAD, EOS, UNK, IMAGE, *alphabet])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    if end_of_text:
        backend.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, vocab[EOS])])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD, eos_token=EOS, unk_token=UNK,
        extra_special_tokens={"image_token": IMAGE},
    )
