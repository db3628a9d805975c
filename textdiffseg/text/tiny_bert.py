"""Build a tiny random BERT with a WordPiece tokenizer on disk, offline, in well under a second (tests, smoke runs)."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "liver spleen kidney left right pancreas colon tumor tumour mass lesion cyst cancer renal hepatic pancreatic",
    "the whole both segment including in of on side parenchyma gland bowel large intestine colonic colorectal",
    "splenic cystic kidneys and a banana brain heart lung bone stomach",
]

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_vocabulary() -> dict[str, int]:
    """The WordPiece vocabulary: specials, every corpus word, and each letter alone and as a ``##`` continuation.

    Written out in sorted order rather than learned with ``tokenizers``' WordPiece trainer, whose ties come out of a
    randomly seeded hash map: its vocabulary (size and ids) changed from one process to the next, so the same test
    trained a different model in each run.
    """
    words = sorted({word for line in CORPUS for word in line.split()})
    letters = sorted({char for word in words for char in word})
    tokens = [*SPECIALS, *letters, *(f"##{char}" for char in letters), *words]
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}


def build_tiny_bert(folder: str | Path, hidden_size: int = 32, seed: int = 0) -> Path:
    """Write a 2-layer BERT (``hidden_size`` wide) and its tokenizer to ``folder``; returns the folder."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.WordPiece(vocab=tiny_vocabulary(), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return folder
