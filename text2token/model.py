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
from .errors import ConfigError, RunFolderError
from .pooling import PROMPT_EOL, TextEncoder, check_pooling, pool
from .runfolder import ADAPTER_CONFIG, RUN_CONFIG, RunFolder, read_run_config  # noqa: F401 (kept importable here)


def causal_lm(model):
    """The ``*ForCausalLM`` inside a model, unwrapping a peft wrapper if there is one."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def embed(model, batch: dict[str, torch.Tensor], pooling: str, groups: int = 1, on_hidden=None) -> torch.Tensor:
    """e(x) in fp32 for a padded batch, without computing token logits.

    ``on_hidden``: called as ``on_hidden(hidden, batch)`` with the last hidden states ``[b, L, d]`` of every
    forward pass (each sub-batch) and the rows it ran, for a term that needs every position (the auxiliary
    next-token loss, :class:`text2token.objective.NextTokenLoss`).

    ``groups > 1``: the rows are sorted by token count and run as that many sub-batches, each cut to the
    columns its own rows use (padding is on one side, so that is one span of columns); e(x) comes back in
    the batch's row order. The same function of the batch (padding is masked out either way), with fewer
    padded tokens computed when the batch's lengths differ."""
    mask = batch["attention_mask"]
    rows = mask.shape[0]
    groups = min(int(groups), rows)
    if groups <= 1:
        return _embed_padded(model, batch, pooling, on_hidden)
    order = torch.argsort(mask.sum(-1), stable=True)
    parts = []
    for index in order.tensor_split(groups):
        used = mask[index].any(0).nonzero().flatten()
        span = slice(int(used[0]), int(used[-1]) + 1) if len(used) else slice(0, mask.shape[1])
        parts.append(_embed_padded(model, {k: v[index, span] for k, v in batch.items()}, pooling, on_hidden))
    return torch.cat(parts)[torch.argsort(order)]


CPU_LENGTH_GROUPS = 8  # length_groups "auto" on a CPU: docs/performance.md ("A faster training step, again")


def resolve_length_groups(value, device_type: str | None = None) -> int:
    """The number of sub-batches :func:`embed` runs a training batch as, for ``length_groups`` (an integer, or
    ``"auto"``: :data:`CPU_LENGTH_GROUPS` on a CPU, where padded tokens cost their full share of a step; 1 on
    other devices, where splitting was not measured). ``device_type`` defaults to the training device."""
    if value != "auto":
        return int(value)
    from .precision import default_device_type

    return CPU_LENGTH_GROUPS if (device_type or default_device_type()) == "cpu" else 1


def _embed_padded(model, batch: dict[str, torch.Tensor], pooling: str, on_hidden=None) -> torch.Tensor:
    lm = causal_lm(model)
    out = lm.base_model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        use_cache=False,
    )
    if on_hidden is not None:
        on_hidden(out.last_hidden_state, batch)
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
             max_length: int | None = None, dtype=None, precision: str = "fp32",
             adapter_scale: float | None = None) -> "Text2TokenModel":
        """Open a run folder, or a base LM (hub id, local folder, GGUF file; ``None``: the default).

        For a run folder, ``pooling``/``attention``/``max_length``/``adapter_scale`` default to the run's own
        (``adapter_scale``: weight-space interpolation toward the base model, see ``TrainConfig.adapter_scale``).
        ``precision``: what ``encode`` runs in (``fp32``, ``bf16`` autocast, or ``auto``: bf16 where the
        hardware runs it fast).
        """
        path = Path(name_or_path) if name_or_path else None
        if path is not None and RunFolder(path).is_finished():
            return _load_run(cls, path, pooling, attention, max_length, dtype, precision, adapter_scale)
        if adapter_scale is not None:
            raise ConfigError(f"adapter_scale applies to a trained run folder, and {name_or_path or DEFAULT_BACKBONE} "
                              "is not one")
        if path is not None and RunFolder(path).is_started():
            raise RunFolderError(f"{path} is a run folder without {RUN_CONFIG}: training did not finish; "
                                 "resume it with `text2token train --resume`")
        attention = attention or "causal"
        model, tokenizer, source = load_backbone(name_or_path, attention=attention, dtype=dtype)
        model.eval()
        return cls(model, tokenizer, pooling=pooling or "mean", attention=attention,
                   max_length=max_length or 128, name=str(name_or_path or DEFAULT_BACKBONE),
                   backbone=name_or_path or DEFAULT_BACKBONE, precision=precision)

    @property
    def vocab_size(self) -> int:
        """Rows of the LM head: the width of p(· | x)."""
        return int(causal_lm(self.model).get_output_embeddings().weight.shape[0])

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
    def forward(self, texts: list[str], batch_size: int = 32, *, vocab: str | None = None, top_k: int | None = None,
                remove: torch.Tensor | None = None, autocast: bool | None = None, blocks=None,
                show_progress: bool | None = None, desc: str = "encode"):
        """The one batched forward pass: yield a :class:`Forward` per length-sorted batch of ``texts``.

        Each holds e(x) (fp32) and, as asked, W_lm · e(x) (``vocab="logits"``), p(· | x) (``vocab="probs"``)
        or the ``top_k`` largest probabilities and their token ids (:func:`vocab_logits`; ``remove``: its
        directions projected out first). ``autocast``: bf16 autocast of the backbone on or off; ``None``
        leaves whatever autocast the caller runs under. ``blocks``: ``(start, stop)`` ranges of ``texts``
        batched (length-sorted) separately and in order, so a text has the same batch neighbours whatever
        else is encoded; ``None``: one range, all texts. Indices are positions in ``texts``.
        One progress bar (``desc``) counts the texts; ``show_progress=None`` shows it for more than four
        batches.
        """
        from tqdm.auto import tqdm

        if vocab not in (None, "logits", "probs"):
            raise ValueError(f"unknown vocab output {vocab!r}: use 'logits' or 'probs'")
        blocks = [(0, len(texts))] if blocks is None else [(int(a), int(b)) for a, b in blocks]
        total = sum(b - a for a, b in blocks)
        if show_progress is None:
            show_progress = total > 4 * batch_size
        self.model.eval()
        context = (contextlib.nullcontext if autocast is None else
                   lambda: torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bool(autocast)))
        bar = tqdm(total=total, desc=desc, unit="text", disable=not show_progress)
        try:
            for a, b in blocks:
                if b <= a:  # the tokenizer refuses an empty list
                    continue
                for index, batch in self.batches(texts[a:b], batch_size):
                    with context():
                        e = embed(self.model, batch, self.pooling)
                    out = Forward(index + a, e)
                    if vocab == "logits":
                        out.logits = vocab_logits(self.model, e, remove)
                    elif vocab == "probs" or top_k is not None:
                        out.probs = torch.softmax(vocab_logits(self.model, e, remove), dim=-1)
                        if top_k is not None:
                            out.top_probs, out.top_ids = out.probs.topk(top_k, dim=-1)
                    yield out
                    bar.update(len(index))
        finally:
            bar.close()

    @torch.inference_mode()
    def collect(self, texts: list[str], batch_size: int = 32, *, dense: bool = False, normalize: bool = False,
                distribution: bool = False, top_k: int | None = None, autocast: bool | None = None,
                show_progress: bool | None = None, desc: str = "encode") -> dict[str, np.ndarray]:
        """:meth:`forward` over ``texts``, gathered in input order as numpy arrays: ``"dense"`` e(x)
        (L2-normalised with ``normalize``), ``"distribution"`` p(· | x), and ``"top_ids"`` / ``"top_probs"``:
        the ``top_k`` (capped at the vocabulary) largest probabilities, decreasing."""
        n = len(texts)
        out: dict[str, np.ndarray] = {}
        if dense:
            out["dense"] = np.zeros((n, self.embedding_dim), dtype=np.float32)
        if distribution:
            out["distribution"] = np.zeros((n, self.vocab_size), dtype=np.float32)
        if top_k is not None:
            top_k = min(int(top_k), self.vocab_size)
            out["top_ids"] = np.zeros((n, top_k), dtype=np.int64)
            out["top_probs"] = np.zeros((n, top_k), dtype=np.float32)
        vocab = "probs" if distribution else None
        for step in self.forward(texts, batch_size, vocab=vocab, top_k=top_k, autocast=autocast,
                                 show_progress=show_progress, desc=desc):
            if dense:
                e = torch.nn.functional.normalize(step.embedding, dim=-1) if normalize else step.embedding
                out["dense"][step.index] = e.float().cpu().numpy()
            if distribution:
                out["distribution"][step.index] = step.probs.float().cpu().numpy()
            if top_k is not None:
                out["top_ids"][step.index] = step.top_ids.cpu().numpy()
                out["top_probs"][step.index] = step.top_probs.float().cpu().numpy()
        return out

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
        if isinstance(texts, str):
            texts = [texts]
        texts = ["" if t is None else str(t) for t in texts]
        if output not in ("dense", "distribution", "sparse"):
            raise ValueError(f"unknown output {output!r}: use 'dense', 'distribution' or 'sparse'")
        autocast = self.precision == "bf16" if autocast is None else autocast
        if output == "sparse":
            if not isinstance(sparse_k, int) or sparse_k < 1:
                raise ValueError(f"sparse_k must be a positive integer, got {sparse_k!r}")
            top = self.collect(texts, batch_size, top_k=sparse_k, autocast=autocast, show_progress=show_progress)
            return sparse_matrix(top["top_ids"], top["top_probs"], self.vocab_size, normalize)
        if output == "distribution":
            return self.collect(texts, batch_size, distribution=True, autocast=autocast,
                                show_progress=show_progress)["distribution"]
        return self.collect(texts, batch_size, dense=True, normalize=normalize, autocast=autocast,
                            show_progress=show_progress)["dense"]

    def top_token_ids(self, texts: list[str], k: int, batch_size: int = 32, show_progress: bool | None = None,
                      desc: str = "top tokens") -> tuple[np.ndarray, np.ndarray]:
        """top-k of p(· | x) for each text: ``(ids int64 [n, k], probabilities float32 [n, k])`` in input
        order, decreasing; ``k`` capped at the vocabulary. Batch by batch: the full distributions of many
        texts are never held at once. Runs in the model's ``precision``, as :meth:`encode`."""
        texts = ["" if t is None else str(t) for t in texts]
        top = self.collect(texts, batch_size, top_k=k, autocast=self.precision == "bf16",
                           show_progress=show_progress, desc=desc)
        return top["top_ids"], top["top_probs"]

    def top_tokens(self, text: str, k: int = 10) -> list[tuple[str, float]]:
        """The k most likely tokens of p(· | x), decoded."""
        ids, probs = self.top_token_ids([text], k, show_progress=False)
        return [(self.tokenizer.decode([int(i)]), float(v)) for v, i in zip(probs[0], ids[0])]


class Forward:
    """One batch of :meth:`Text2TokenModel.forward`: ``index`` (the rows' positions in the input),
    ``embedding`` e(x) fp32 ``[b, dim]``, and what was asked: ``logits`` W_lm · e(x), ``probs``
    p(· | x) (fp32 ``[b, V]``), ``top_probs`` / ``top_ids`` ``[b, k]``."""

    __slots__ = ("index", "embedding", "logits", "probs", "top_probs", "top_ids")

    def __init__(self, index, embedding):
        self.index, self.embedding = index, embedding
        self.logits = self.probs = self.top_probs = self.top_ids = None


def sparse_matrix(ids: np.ndarray, weights: np.ndarray, vocab: int, normalize: bool = False):
    """A CSR matrix ``[n, vocab]`` (float32) with ``weights[i]`` at token ids ``ids[i]`` (``k`` per row),
    rows L2-normalised with ``normalize``."""
    import scipy.sparse

    n, k = ids.shape
    if normalize:
        weights = weights / np.maximum(np.linalg.norm(weights, axis=1, keepdims=True), 1e-12)
    matrix = scipy.sparse.csr_matrix((weights.ravel(), ids.ravel(), np.arange(0, ids.size + 1, k)),
                                     shape=(n, vocab), dtype=np.float32)
    matrix.sort_indices()
    return matrix


def apply_adapters(model, adapters: list[Path], scale: float = 1.0):
    """Apply saved LoRA adapters in order, merging each into the weights (stage 1, then 2).

    ``scale`` < 1 interpolates in weight space between the base and the trained model (WiSE-FT):
    every weight becomes ``base + scale * (trained - base)``, the whole chain of stages at once.
    """
    from peft import PeftModel

    for adapter in adapters:
        if not (adapter / ADAPTER_CONFIG).is_file():
            raise RunFolderError(f"adapter folder {adapter} is incomplete (no adapter_config.json)")
    base = None
    if scale != 1.0 and adapters:
        base = {name: p.detach().clone() for name, p in model.named_parameters()}
    for adapter in adapters:
        with quiet_peft():
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    if base is not None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                before = base.get(name)
                if before is not None and not torch.equal(before, p):
                    p.lerp_(before.to(p.dtype), 1.0 - scale)  # p + (1 - scale) * (base - p)
    return model


@contextlib.contextmanager
def quiet_peft():
    """peft asks transformers 5 a deprecated question (``is_gradient_checkpointing``) whenever it wraps a
    model; the FutureWarning says nothing a user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _load_run(cls, path: Path, pooling, attention, max_length, dtype, precision="fp32", adapter_scale=None):
    """A run folder as ``cls`` (see :meth:`text2token.runfolder.RunFolder.load`)."""
    return RunFolder(path).load(cls, pooling, attention, max_length, dtype, precision, adapter_scale=adapter_scale)


def load(name_or_path: str | None = None, **kwargs) -> Text2TokenModel:
    """Open a run folder or a base LM; see :meth:`Text2TokenModel.load`."""
    return Text2TokenModel.load(name_or_path, **kwargs)
