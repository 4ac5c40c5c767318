"""Models for evaluation: loading one from a name, fingerprinting its files, and the mteb adapter.

Every model is seen through one protocol, the one of ``text2token.load``::

    model.encode(texts, batch_size=32, normalize=False, show_progress=False) -> float32 [n, dim]
    model.embedding_dim, model.name

:class:`MtebEncoder` puts such a model behind mteb 2.x's encoder protocol, so that
``mteb.evaluate(MtebEncoder(model), tasks)`` runs any mteb task.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .errors import EvalError

try:  # mteb is imported here only for the base class; the rest of the package imports it lazily.
    from mteb.models.abs_encoder import AbsEncoder
except ImportError as _error:  # pragma: no cover - mteb is a dependency of the evaluation extra
    raise ImportError("text2token.evaluation needs mteb: pip install 'mteb>=2.0'") from _error

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.models import ModelMeta
    from mteb.types import PromptType
    from torch.utils.data import DataLoader


@runtime_checkable
class EmbeddingModel(Protocol):
    """What evaluation needs of a model (the protocol of ``text2token.load``)."""

    name: str
    embedding_dim: int

    def encode(self, texts: list[str], batch_size: int = 32, normalize: bool = False,
               show_progress: bool = False) -> np.ndarray: ...


class SentenceTransformerModel:
    """A sentence-transformers folder (one with ``modules.json``) behind the text2token protocol."""

    def __init__(self, path: str | os.PathLike[str], max_length: int | None = None, precision: str = "fp32") -> None:
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(str(path), local_files_only=True)
        except (OSError, ValueError) as error:
            raise EvalError(f"{path}: cannot load as a sentence-transformers model ({error})") from None
        if max_length is not None:
            self.model.max_seq_length = max_length
        self.name = Path(path).name
        self.precision = precision
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.embedding_dim = int(dimension())

    def encode(self, texts: list[str], batch_size: int = 32, normalize: bool = False,
               show_progress: bool = False) -> np.ndarray:
        import torch

        with torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            embeddings = self.model.encode(
                texts, batch_size=batch_size, normalize_embeddings=normalize,
                show_progress_bar=show_progress, convert_to_numpy=True,
            )
        return np.asarray(embeddings, dtype=np.float32)


def is_sentence_transformers_folder(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / "modules.json").is_file()


@dataclass(frozen=True)
class ModelRef:
    """A model named on the command line, with the options that change its embeddings.

    ``identity`` is what a cached score is keyed by: the model (absolute path or hub id), its
    options and a fingerprint of its files' names, sizes and modification times.
    """

    spec: str
    pooling: str | None = None
    attention: str | None = None
    max_length: int | None = None
    precision: str = "fp32"  # resolved: "fp32" or "bf16" (autocast while encoding)
    adapter_scale: float | None = None  # run folders: weight-space interpolation toward the base; None: the run's own

    @property
    def label(self) -> str:
        options = [o for o in (self.pooling, self.attention) if o]
        if self.max_length:
            options.append(f"max_length={self.max_length}")
        if self.adapter_scale is not None:
            options.append(f"adapter_scale={self.adapter_scale:g}")
        return f"{self.spec} ({', '.join(options)})" if options else self.spec

    @property
    def is_sentence_transformers(self) -> bool:
        return is_sentence_transformers_folder(self.spec)

    def identity(self) -> dict[str, Any]:
        local = Path(self.spec).expanduser()
        identity = {
            "model": str(local.resolve()) if local.exists() else self.spec,
            "pooling": self.pooling,
            "attention": self.attention,
            "max_length": self.max_length,
            "precision": self.precision,
            "files": files_fingerprint(self.spec),
        }
        backbone = run_backbone_fingerprint(local)
        if backbone is not None:  # a run folder: its backbone's weights are part of the model
            identity["backbone"] = backbone
        if self.adapter_scale is not None:  # only when given, so the scores cached before the option still count
            identity["adapter_scale"] = float(self.adapter_scale)
        return identity

    def load(self) -> EmbeddingModel:
        if self.is_sentence_transformers:
            if self.pooling or self.attention or self.adapter_scale is not None:
                raise EvalError(f"{self.spec}: --pooling, --attention and --adapter-scale apply to text2token runs "
                                "and base LMs, not to a sentence-transformers folder")
            return SentenceTransformerModel(self.spec, max_length=self.max_length, precision=self.precision)
        scale = {} if self.adapter_scale is None else {"adapter_scale": self.adapter_scale}
        return load_text2token_model(self.spec, self.pooling, self.attention, self.max_length, self.precision, **scale)


def load_text2token_model(spec: str, pooling: str | None, attention: str | None,
                          max_length: int | None, precision: str = "fp32",
                          adapter_scale: float | None = None) -> EmbeddingModel:
    """``text2token.load`` (imported here, so the evaluation package does not need the core to import)."""
    try:
        from text2token import load
    except ImportError as error:
        raise EvalError(f"{spec}: loading a text2token run or base LM needs text2token.load ({error})") from None
    return load(spec, pooling=pooling, attention=attention, max_length=max_length, precision=precision,
                adapter_scale=adapter_scale)


def files_fingerprint(spec: str) -> str:
    """A hash of the names, sizes and modification times of a model's files.

    A local folder or file is walked (hidden entries skipped); a hub id is looked up in the local
    hub cache without network. A model whose files cannot be found gets ``"unresolved"``, so its
    scores are cached by name only.
    """
    path = Path(spec).expanduser()
    if not path.exists():
        path = _hub_snapshot(spec)
        if path is None:
            return "unresolved"
    digest = hashlib.sha256()
    if path.is_file():
        files = {path.name: path}
    else:
        files = {str(p.relative_to(path)): p for p in path.rglob("*")
                 if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)}
    for name, file in sorted(files.items()):
        stat = file.stat()
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def run_backbone_fingerprint(path: Path) -> str | None:
    """For a text2token run folder, the cheap fingerprint of its backbone's weights as they are now (sizes,
    modification times, first and last MiB; see :meth:`text2token.runfolder.RunFolder.backbone_digest`),
    so a score cached before the backbone changed is not served; ``None`` for anything else."""
    if not path.is_dir() or not ((path / "text2token_config.json").is_file() or (path / "train_config.json").is_file()):
        return None
    try:
        from text2token.runfolder import RunFolder
    except ImportError:  # pragma: no cover - the evaluation package without the core
        return None
    return RunFolder(path).backbone_digest()


def _hub_snapshot(repo_id: str) -> Path | None:
    if repo_id.count("/") != 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # any failure means "not in the local cache"
        return None


def model_meta(model: EmbeddingModel, *, name: str | None = None, revision: str | None = None,
               framework: list[str] | None = None, experiment: dict[str, Any] | None = None) -> ModelMeta:
    """An mteb ModelMeta built locally (no hub access); the name gets an owner if it has none."""
    from mteb.models import ModelMeta

    name = name or str(getattr(model, "name", type(model).__name__))
    if "/" not in name:
        name = f"local/{name}"
    return ModelMeta(
        loader=None,
        name=name,
        revision=revision or "unknown",
        release_date=None,
        languages=None,
        n_parameters=None,
        memory_usage_mb=None,
        max_tokens=None,
        embed_dim=int(model.embedding_dim),
        license=None,
        open_weights=None,
        public_training_code=None,
        public_training_data=None,
        framework=framework or ["PyTorch"],
        similarity_fn_name="cosine",
        use_instructions=False,
        training_datasets=None,
        experiment_kwargs={k: v for k, v in (experiment or {}).items() if v is not None} or None,
    )


class MtebEncoder(AbsEncoder):
    """A text2token-protocol model as an mteb 2.x encoder: ``mteb.evaluate(MtebEncoder(model), tasks)``.

    Each distinct text is encoded once per encoder (up to ``memo_limit`` remembered embeddings).

    The texts of mteb's DataLoader are gathered and encoded in one call, so the model can batch
    them as it likes; no prompt or instruction is added. Similarity is cosine.
    """

    memo_limit = 300_000

    def __init__(self, model: EmbeddingModel, meta: ModelMeta | None = None, *,
                 show_progress: bool = False) -> None:
        if not isinstance(model, EmbeddingModel):
            raise EvalError(f"{type(model).__name__} is not an embedding model: it needs "
                            "encode(texts, batch_size, normalize, show_progress), embedding_dim and name")
        self.model = model
        self.mteb_model_meta = meta or model_meta(model)
        self.show_progress = show_progress
        self._memo: dict[str, np.ndarray] = {}  # text -> embedding, for this encoder's lifetime
        self.encoded = 0  # texts actually encoded (each distinct text once)

    def encode(self, inputs: DataLoader[Any], *, task_metadata: TaskMetadata, hf_split: str,
               hf_subset: str, prompt_type: PromptType | None = None, **kwargs: Any) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        if not texts:
            return np.zeros((0, self.model.embedding_dim), dtype=np.float32)
        # each distinct text is encoded once per encoder: pairs repeat sentences, and the tasks of one
        # run share texts (a classification and a clustering task over the same set)
        new = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if new:
            embeddings = np.asarray(self.model.encode(
                new, batch_size=int(kwargs.get("batch_size", 32)), normalize=False, show_progress=self.show_progress,
            ), dtype=np.float32)
            if embeddings.shape != (len(new), self.model.embedding_dim):
                expected = (len(new), self.model.embedding_dim)
                raise EvalError(f"model {self.model.name} returned embeddings of shape {embeddings.shape} "
                                f"for {len(new)} texts (expected {expected})")
            if len(self._memo) + len(new) > self.memo_limit:
                self._memo.clear()
            self._memo.update(zip(new, embeddings))
        self.encoded += len(new)
        return np.stack([self._memo[t] for t in texts])

    def similarity(self, embeddings1: Any, embeddings2: Any) -> Any:
        from mteb.similarity_functions import cos_sim

        return cos_sim(embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> Any:
        from mteb.similarity_functions import pairwise_cos_sim

        return pairwise_cos_sim(embeddings1, embeddings2)
