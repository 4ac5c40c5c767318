"""Pooling: from a text to the token ids the backbone sees, and from hidden states to e(x).

``mean`` feeds the text as is and averages the last hidden layer over real tokens.
``last`` wraps the text in a PromptEOL-style template and takes the final token's state;
the text is truncated first so the template always survives, and batches are left-padded
so the final token sits in the last column.

Padding never reaches the embedding: pooling uses the attention mask, and position ids are
computed from the mask so a padded text sees the same positions as the same text alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import ConfigError

POOLINGS = ("mean", "last")
PROMPT_EOL = 'This sentence : "{text}" means in one word:"'


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ConfigError(f"unknown pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")
    return pooling


@dataclass
class TextEncoder:
    """Turns texts into padded model inputs for one pooling mode."""

    tokenizer: object
    pooling: str = "mean"
    max_length: int = 128
    prompt: str = PROMPT_EOL

    def __post_init__(self):
        check_pooling(self.pooling)
        if "{text}" not in self.prompt:
            raise ConfigError(f"the prompt template must contain '{{text}}': {self.prompt!r}")
        if self.pooling == "last":
            overhead = len(self._ids(self.prompt.format(text="")))
            if overhead >= self.max_length:
                raise ConfigError(
                    f"max_length {self.max_length} leaves no room for text after the "
                    f"{overhead}-token prompt template: give a max_length above {overhead}, or mean pooling"
                )

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"]

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, truncated to ``max_length``, never empty."""
        if self.pooling == "mean":
            batch = self.tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=self.max_length)
            ids = batch["input_ids"]
        else:
            ids = [self._prompted_ids(t) for t in texts]
        return [row if row else self._fallback_ids() for row in ids]

    def _fallback_ids(self) -> list[int]:
        """An empty text still needs one token to pool over: use the eos (or pad) token."""
        token = self.tokenizer.eos_token_id
        return [token if token is not None else self.tokenizer.pad_token_id]

    def _prompted_ids(self, text: str) -> list[int]:
        """The whole template tokenized at once; if too long, the text is cut and the template's
        fixed tail (its tokens after the text) written back, so the template always survives.
        This is sentence-transformers' rule for chat templates, so an export matches token for token."""
        ids = self._ids(self.prompt.format(text=text))
        if len(ids) <= self.max_length:
            return ids
        tail = self._template_tail()
        return ids[: self.max_length - len(tail)] + tail

    def _template_tail(self) -> list[int]:
        """The common token ending of the template around two different texts (cached)."""
        if not hasattr(self, "_tail"):
            first, second = self._ids(self.prompt.format(text="0")), self._ids(self.prompt.format(text="1 2 3 4"))
            count = 0
            for a, b in zip(reversed(first), reversed(second)):
                if a != b:
                    break
                count += 1
            self._tail = first[len(first) - count:] if count < min(len(first), len(second)) else []
        return self._tail

    def pad(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        """Pad to the longest row: left for ``last`` pooling, right for ``mean``."""
        width = max(len(row) for row in ids)
        pad_id = self.tokenizer.pad_token_id
        input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            if self.pooling == "last":
                input_ids[i, width - len(row):] = torch.tensor(row)
                mask[i, width - len(row):] = 1
            else:
                input_ids[i, : len(row)] = torch.tensor(row)
                mask[i, : len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "position_ids": position_ids(mask)}

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.pad(self.token_ids(texts))


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """0, 1, 2, ... over real tokens, whichever side the padding is on."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """e(x) from the last hidden layer ``[batch, seq, dim]`` and the attention mask."""
    if pooling == "mean":
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    if pooling == "last":
        # Left padding puts every text's final token in the last column; stay correct for
        # right-padded input too by indexing the last real token.
        last = mask.shape[1] - 1 - mask.flip(-1).argmax(-1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ConfigError(f"unknown pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")
