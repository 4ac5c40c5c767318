"""The embedding model: backbone + pooling, its vocabulary projection, ``encode`` and ``load``.

``Text2TokenModel.load(path)`` opens a training run folder (backbone + merged adapters, with
the pooling and attention the run used) or a base LM with no training, so baselines and
trained models share one code path.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import torch

from .backbone import DEFAULT_BACKBONE, load_backbone, set_attention
from .errors import RunFolderError
from .pooling import PROMPT_EOL, TextEncoder, check_pooling, pool
from .runfolder import ADAPTER_CONFIG, RUN_CONFIG, RunFolder, read_run_config  # noqa: F401 (kept importable here)


def causal_lm(model):
    """The ``*ForCausalLM`` inside a model, unwrapping a peft wrapper if there is one."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def embed(model, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
    """e(x) in fp32 for a padded batch, without computing token logits."""
    lm = causal_lm(model)
    out = lm.base_model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        use_cache=False,
    )
    return pool(out.last_hidden_state.float(), batch["attention_mask"], pooling)


def vocab_logits(model, embedding: torch.Tensor, remove: torch.Tensor | None = None) -> torch.Tensor:
    """W_lm · e(x) in fp32, with the backbone's own (frozen) LM head.

    fp32 under bf16 autocast too (``train --bf16``, ``encode(autocast=True)``): autocast would
    otherwise run this matmul in bf16 (logits of magnitude ~10-30 off by ~0.1) and cast the
    whole LM head to bf16 at every call. ``remove``: orthonormal directions ``[dim, k]`` of the
    hidden space projected out of e(x) first (:func:`text2token.objective.head_directions`)."""
    head = causal_lm(model).get_output_embeddings()
    with torch.autocast(embedding.device.type, enabled=False):
        weight = head.weight.float()
        embedding = embedding.float()
        if remove is not None:
            remove = remove.to(embedding.device)
            embedding = embedding - (embedding @ remove) @ remove.T
        logits = embedding @ weight.T
        bias = getattr(head, "bias", None)
        return logits + bias.float() if bias is not None else logits


class Text2TokenModel:
    """A text embedder: ``encode(texts)`` gives e(x); ``token_distribution`` gives p(· | x)."""

    def __init__(self, model, tokenizer, pooling="mean", attention="causal", max_length=128,
                 prompt=PROMPT_EOL, name="text2token", backbone=None, precision: str = "fp32"):
        from .precision import resolve

        self.model = model
        self.tokenizer = tokenizer
        self.pooling = check_pooling(pooling)
        self.attention = attention
        self.max_length = int(max_length)
        self.prompt = prompt
        self.name = name
        self.backbone = backbone
        self.text_encoder = TextEncoder(tokenizer, self.pooling, self.max_length, prompt)
        # what ``encode`` runs in unless told (``autocast=``): "bf16" autocast or plain "fp32"
        self.precision = resolve(precision, self.device.type)
        set_attention(model, attention)

    @property
    def embedding_dim(self) -> int:
        return causal_lm(self.model).get_output_embeddings().weight.shape[1]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, name_or_path: str | None = None, pooling: str | None = None, attention: str | None = None,
             max_length: int | None = None, dtype=None, precision: str = "fp32") -> "Text2TokenModel":
        """Open a run folder, or a base LM (hub id, local folder, GGUF file; ``None``: the default).

        For a run folder, ``pooling``/``attention``/``max_length`` default to the run's own.
        ``precision``: what ``encode`` runs in (``fp32``, ``bf16`` autocast, or ``auto``: bf16 where the
        hardware runs it fast).
        """
        path = Path(name_or_path) if name_or_path else None
        if path is not None and RunFolder(path).is_finished():
            return _load_run(cls, path, pooling, attention, max_length, dtype, precision)
        if path is not None and RunFolder(path).is_started():
            raise RunFolderError(f"{path} is a run folder without {RUN_CONFIG}: training did not finish; "
                                 "resume it with `text2token train --resume`")
        attention = attention or "causal"
        model, tokenizer, source = load_backbone(name_or_path, attention=attention, dtype=dtype)
        model.eval()
        return cls(model, tokenizer, pooling=pooling or "mean", attention=attention,
                   max_length=max_length or 128, name=str(name_or_path or DEFAULT_BACKBONE),
                   backbone=name_or_path or DEFAULT_BACKBONE, precision=precision)

    # ---------------------------------------------------------------- encoding
    def batches(self, texts: list[str], batch_size: int):
        """Length-sorted batches: ``(indices, padded inputs)``, so padding waste is small."""
        ids = self.text_encoder.token_ids(texts)
        order = np.argsort([-len(row) for row in ids], kind="stable")
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            batch = self.text_encoder.pad([ids[i] for i in index])
            yield index, {k: v.to(self.device) for k, v in batch.items()}

    @torch.inference_mode()
    def encode(self, texts, batch_size: int = 32, normalize: bool = False, show_progress: bool | None = None,
               output: str = "dense", autocast: bool | None = None, sparse_k: int = 64):
        """Embed texts: a float32 array ``[len(texts), embedding_dim]`` in input order.

        ``output="distribution"`` returns p(· | x) over the vocabulary instead of e(x).
        ``output="sparse"`` returns a lexical vector per text: a ``scipy.sparse.csr_matrix``
        ``[len(texts), vocab]`` (float32) holding the ``sparse_k`` largest probabilities of
        p(· | x) at their token ids (not renormalised; rows L2-normalised with ``normalize``).
        ``autocast``: bf16 autocast on or off; ``None`` follows the model's ``precision``.
        """
        from tqdm.auto import tqdm

        if isinstance(texts, str):
            texts = [texts]
        texts = ["" if t is None else str(t) for t in texts]
        if output not in ("dense", "distribution", "sparse"):
            raise ValueError(f"unknown output {output!r}: use 'dense', 'distribution' or 'sparse'")
        self.model.eval()
        if autocast is None:
            autocast = self.precision == "bf16"
        width = self.embedding_dim if output == "dense" else causal_lm(self.model).get_output_embeddings().weight.shape[0]
        if output == "sparse":
            return self._encode_sparse(texts, batch_size, normalize, show_progress, autocast, sparse_k, width)
        result = np.zeros((len(texts), width), dtype=np.float32)
        if not texts:
            return result
        if show_progress is None:
            show_progress = len(texts) > 4 * batch_size
        bar = tqdm(total=len(texts), desc="encode", unit="text", disable=not show_progress)
        for index, batch in self.batches(texts, batch_size):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
                e = embed(self.model, batch, self.pooling)
            if output == "distribution":
                e = torch.softmax(vocab_logits(self.model, e), dim=-1)
            elif normalize:
                e = torch.nn.functional.normalize(e, dim=-1)
            result[index] = e.float().cpu().numpy()
            bar.update(len(index))
        bar.close()
        return result

    def _encode_sparse(self, texts, batch_size, normalize, show_progress, autocast, sparse_k, vocab):
        """The ``sparse_k`` largest entries of p(· | x) per text, as a CSR matrix (see :meth:`encode`)."""
        import scipy.sparse
        from tqdm.auto import tqdm

        if not isinstance(sparse_k, int) or sparse_k < 1:
            raise ValueError(f"sparse_k must be a positive integer, got {sparse_k!r}")
        k = min(sparse_k, vocab)
        ids = np.zeros((len(texts), k), dtype=np.int64)
        weights = np.zeros((len(texts), k), dtype=np.float32)
        if show_progress is None:
            show_progress = len(texts) > 4 * batch_size
        bar = tqdm(total=len(texts), desc="encode", unit="text", disable=not show_progress)
        for index, batch in self.batches(texts, batch_size):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
                e = embed(self.model, batch, self.pooling)
            values, top = torch.softmax(vocab_logits(self.model, e), dim=-1).topk(k, dim=-1)
            ids[index], weights[index] = top.cpu().numpy(), values.float().cpu().numpy()
            bar.update(len(index))
        bar.close()
        if normalize:
            weights /= np.maximum(np.linalg.norm(weights, axis=1, keepdims=True), 1e-12)
        matrix = scipy.sparse.csr_matrix((weights.ravel(), ids.ravel(), np.arange(0, ids.size + 1, k)),
                                         shape=(len(texts), vocab), dtype=np.float32)
        matrix.sort_indices()
        return matrix

    @torch.inference_mode()
    def top_tokens(self, text: str, k: int = 10) -> list[tuple[str, float]]:
        """The k most likely tokens of p(· | x), decoded."""
        probs = torch.from_numpy(self.encode([text], output="distribution")[0])
        values, ids = probs.topk(k)
        return [(self.tokenizer.decode([int(i)]), float(v)) for v, i in zip(values, ids)]


def apply_adapters(model, adapters: list[Path]):
    """Apply saved LoRA adapters in order, merging each into the weights (stage 1, then 2)."""
    from peft import PeftModel

    for adapter in adapters:
        if not (adapter / ADAPTER_CONFIG).is_file():
            raise RunFolderError(f"adapter folder {adapter} is incomplete (no adapter_config.json)")
        with quiet_peft():
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model


@contextlib.contextmanager
def quiet_peft():
    """peft asks transformers 5 a deprecated question (``is_gradient_checkpointing``) whenever it wraps a
    model; the FutureWarning says nothing a user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _load_run(cls, path: Path, pooling, attention, max_length, dtype, precision="fp32"):
    """A run folder as ``cls`` (see :meth:`text2token.runfolder.RunFolder.load`)."""
    return RunFolder(path).load(cls, pooling, attention, max_length, dtype, precision)


def load(name_or_path: str | None = None, **kwargs) -> Text2TokenModel:
    """Open a run folder or a base LM; see :meth:`Text2TokenModel.load`."""
    return Text2TokenModel.load(name_or_path, **kwargs)
