"""What a training step reads: the texts of a stage (with their sparse targets, or alone for SimCSE) and the
collators that tokenize a batch of them (:class:`text2token.pooling.TextEncoder`: prompt, pooling's token
layout, max length) and pad its targets."""

from __future__ import annotations

import torch

from .objective import pad_targets
from .pooling import TextEncoder


class TargetDataset(torch.utils.data.Dataset):
    """Texts with their sparse targets ``(ids, weights)``."""

    def __init__(self, texts: list[str], targets: list):
        assert len(texts) == len(targets)
        self.texts, self.targets = texts, targets

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, i):
        return {"text": self.texts[i], "target": self.targets[i]}


class TextDataset(torch.utils.data.Dataset):
    """Texts alone (the SimCSE baseline has no targets)."""

    def __init__(self, texts: list[str]):
        self.texts = texts

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, i):
        return {"text": self.texts[i]}


class TextCollator:
    """Tokenizes a batch of texts."""

    def __init__(self, text_encoder: TextEncoder):
        self.text_encoder = text_encoder

    def __call__(self, rows):
        return self.text_encoder([r["text"] for r in rows])


class Collator:
    """Tokenizes a batch of texts and pads its targets."""

    def __init__(self, text_encoder: TextEncoder):
        self.text_encoder = text_encoder

    def __call__(self, rows):
        batch = self.text_encoder([r["text"] for r in rows])
        batch["target_ids"], batch["target_weights"] = pad_targets([r["target"] for r in rows])
        return batch
