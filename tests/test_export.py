"""Export to a sentence-transformers folder: same embeddings as text2token, standard files only."""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import text2token
from text2token.errors import RunFolderError
from text2token.export import add_export_parser, compare, export, prompt_chat_template
from text2token.pooling import PROMPT_EOL, TextEncoder

MAX_LENGTH = 32
# (pooling, attention, tiny backbone): the four combinations, both architectures covered
COMBOS = [("mean", "causal", "llama"), ("mean", "bidirectional", "qwen2"),
          ("last", "causal", "qwen2"), ("last", "bidirectional", "llama")]

_SUBJECTS = ["The cat", "An economist", "Our orchestra", "A volcano near Naples", "The old library", "Photosynthesis",
             "Rain", "Computers", "The quick brown fox", "Football players", "Ōmi Genji", "The 1984 report",
             "She", "Researchers at MIT", "A small café in Zürich"]
_VERBS = ["sat on", "studied", "played", "destroyed", "holds", "converts", "fell on", "process", "jumped over",
          "trained for", "described", "was built near", "didn't mention"]
_OBJECTS = ["the mat", "inflation and interest rates", "a symphony by Beethoven", "the old village",
            "thousands of books about history", "light energy into chemical energy", "the city", "binary numbers",
            "the lazy dog", "the championship match", "日本の文化", "3.14 kilometres of road", "the \"new\" rules"]
_ENDINGS = [".", "!", "?", "", "...", " (see p. 42).", ", didn't it?", ' "quoted".', ";", " 😀", ".)"]


def sentences(n: int = 100, seed: int = 0) -> list[str]:
    """Varied sentences: short and long (some well over MAX_LENGTH tokens), endings that can merge with a quote."""
    rng = random.Random(seed)

    def one() -> str:
        return f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_ENDINGS)}"

    texts = []
    for i in range(n):
        kind = i % 10
        if kind == 0:
            texts.append(" ".join(one() for _ in range(rng.randint(4, 8))))  # longer than MAX_LENGTH tokens
        elif kind == 1:
            texts.append(rng.choice(["a", "Hi.", "Yes?", "ok", "42"]))
        elif kind == 2:
            texts.append(f"  {one()}\n{one()}  ")
        else:
            texts.append(one())
    return texts


TEXTS = sentences()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("export-corpus") / "corpus.txt"
    path.write_text("\n".join(sentences(60, seed=1)) + "\n")
    return path


@pytest.fixture(scope="module")
def runs(tiny_models, corpus, tmp_path_factory):
    """A finished two-stage run folder per combination (lr high enough to move the weights)."""
    root = tmp_path_factory.mktemp("export-runs")
    return {(pooling, attention): text2token.train(model=tiny_models[arch], data=[str(corpus)],
                                                   output=str(root / f"{pooling}-{attention}"), steps=3,
                                                   batch_size=4, max_length=MAX_LENGTH, lr=1e-3,
                                                   pooling=pooling, attention=attention, stages=["data", "model"],
                                                   contrastive_weight=0.0)
            for pooling, attention, arch in COMBOS}


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    return {key: export(run, root / f"{key[0]}-{key[1]}") for key, run in runs.items()}


def st_model(folder):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu", local_files_only=True, trust_remote_code=False)


def st_ids(st, text: str) -> list[int]:
    """The token ids sentence-transformers feeds the model for one text."""
    features = st[0].preprocess([text])
    return features["input_ids"][0][features["attention_mask"][0].bool()].tolist()


# ------------------------------------------------------------------ same embeddings
@pytest.mark.parametrize("pooling,attention", [c[:2] for c in COMBOS])
def test_embeddings_match_text2token(runs, exported, pooling, attention):
    model = text2token.load(str(runs[pooling, attention]))
    cosines = compare(exported[pooling, attention], model, TEXTS, batch_size=16)
    assert cosines.min() >= 0.9999, f"min cosine {cosines.min():.6f} for {TEXTS[int(cosines.argmin())]!r}"


@pytest.mark.parametrize("pooling,attention", [c[:2] for c in COMBOS])
def test_token_ids_match_text2token_including_truncation(runs, exported, pooling, attention):
    model = text2token.load(str(runs[pooling, attention]))
    st = st_model(exported[pooling, attention])
    assert st.max_seq_length == MAX_LENGTH
    expected = TextEncoder(model.tokenizer, pooling, MAX_LENGTH, model.prompt).token_ids(TEXTS)
    for text, ids in zip(TEXTS, expected):
        assert st_ids(st, text) == ids, text
    assert max(len(ids) for ids in expected) == MAX_LENGTH  # some texts were cut


def test_last_pooling_template_survives_truncation(runs, exported):
    model = text2token.load(str(runs["last", "causal"]))
    st = st_model(exported["last", "causal"])
    end = model.tokenizer('" means in one word:"', add_special_tokens=False)["input_ids"]
    start = model.tokenizer('This sentence : "', add_special_tokens=False)["input_ids"]
    long_text = " ".join(TEXTS[:20])
    ids = st_ids(st, long_text)
    assert len(ids) == MAX_LENGTH and ids[: len(start)] == start and ids[-len(end):] == end
    # the template holds the text: plain texts go in, the exported tokenizer wraps them
    text_ids = model.tokenizer("The cat sat.", add_special_tokens=False)["input_ids"]
    assert st_ids(st, "The cat sat.") == start + text_ids + end
    # a prompt passed to encode goes before the template
    ids = st[0].preprocess(["Hi."], prompt="Q: ")["input_ids"][0].tolist()
    expected = model.tokenizer('Q: This sentence : "Hi." means in one word:"', add_special_tokens=False)["input_ids"]
    assert ids == (expected if len(expected) <= MAX_LENGTH else expected[:MAX_LENGTH - len(end)] + end)


def test_prompt_chat_template_renders_any_prompt_exactly(tiny_models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llama"])
    for prompt in (PROMPT_EOL, "Q'uote \\ {{x}} }} {{% raw %}}\n\té 日本: {text} ⟩ end:\"", "{text}"):
        template = prompt_chat_template(tokenizer, prompt)
        for text in ("hi", "", "a 'quoted' {text} \\ }}"):
            rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], chat_template=template,
                                                     tokenize=False)
            assert rendered == prompt.format(text=text)
        rendered = tokenizer.apply_chat_template([{"role": "system", "content": "Q: "},
                                                  {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                                                 chat_template=template, tokenize=False)
        assert rendered == "Q: " + prompt.format(text="hi")


def test_padding_is_right_and_does_not_change_embeddings(exported):
    for key in (("mean", "causal"), ("last", "bidirectional")):
        st = st_model(exported[key])
        assert st.tokenizer.padding_side == "right"
        alone = st.encode(["Rain fell."], convert_to_numpy=True)
        batched = st.encode(["Rain fell.", TEXTS[0]], batch_size=2, convert_to_numpy=True)[:1]
        np.testing.assert_allclose(alone, batched, atol=1e-5)


@pytest.mark.parametrize("pooling,attention", [c[:2] for c in COMBOS])
def test_attention_mode_is_in_config_and_survives_loading(exported, pooling, attention):
    folder = exported[pooling, attention]
    config = json.loads((folder / "config.json").read_text())
    assert config["is_causal"] is (attention == "causal")
    st = st_model(folder)
    assert st[0].auto_model.config.is_causal is (attention == "causal")
    # with bidirectional attention the first token's state depends on what follows it
    states = st.encode(["cat sat on the mat", "cat sat on the dog"], output_value="token_embeddings")
    first_differs = not torch.allclose(states[0][0], states[1][0], atol=1e-6)
    assert first_differs is (attention == "bidirectional")


def test_backbone_chat_template_is_not_applied(tiny_models, tmp_path):
    """An instruct tokenizer's chat template (here with a system prompt) must not reach sentence-transformers."""
    backbone = tmp_path / "instruct"
    shutil.copytree(tiny_models["llama"], backbone)
    config_file = backbone / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["chat_template"] = ("{{ '<|pad|>system You are helpful.' }}{% for m in messages %}{{ m['role'] + ' ' + "
                               "m['content'] }}{% endfor %}")
    config_file.write_text(json.dumps(config))
    for pooling in ("mean", "last"):
        model = text2token.load(str(backbone), pooling=pooling, max_length=MAX_LENGTH)
        assert model.tokenizer.chat_template  # the trap is armed
        out = export(model, tmp_path / f"st-{pooling}")
        st = st_model(out)
        text = "Economists study inflation."
        assert st_ids(st, text) == TextEncoder(model.tokenizer, pooling, MAX_LENGTH, model.prompt).token_ids([text])[0]
        assert "You are helpful" not in (out / "tokenizer_config.json").read_text()
        assert not (out / "chat_template.jinja").exists()
        assert compare(out, model, TEXTS[:20]).min() >= 0.9999


# ---------------------------------------------------------------- folder contents
def test_folder_is_standard_files_without_code(runs, exported):
    folder = exported["last", "bidirectional"]
    assert not list(folder.rglob("*.py"))
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "config.json",
                 "model.safetensors", "tokenizer_config.json", "1_Pooling/config.json", "README.md"):
        assert (folder / name).is_file(), name
    assert "auto_map" not in (folder / "config.json").read_text()
    assert "auto_map" not in (folder / "tokenizer_config.json").read_text()
    types = [m["type"] for m in json.loads((folder / "modules.json").read_text())]
    assert all(t.startswith("sentence_transformers.") for t in types) and len(types) == 2
    assert json.loads((folder / "1_Pooling/config.json").read_text())["pooling_mode"] == "lasttoken"
    assert json.loads((exported["mean", "causal"] / "1_Pooling/config.json").read_text())["pooling_mode"] == "mean"
    st = st_model(folder)  # no trust_remote_code
    assert st.encode(["hello"]).shape == (1, 32)
    # LoRA merged: the exported weights are not the backbone's
    from safetensors.torch import load_file

    base = text2token.load(json.loads((runs["last", "bidirectional"] / "text2token_config.json").read_text())
                           ["model"]["backbone"]).model.base_model.state_dict()
    saved = load_file(str(folder / "model.safetensors"))
    assert any(not torch.equal(saved[k], base[k]) for k in saved if k in base)


def test_normalize_module(runs, tmp_path):
    out = export(runs["mean", "causal"], tmp_path / "normalized", normalize=True)
    types = [m["type"] for m in json.loads((out / "modules.json").read_text())]
    assert types[-1].endswith("Normalize")
    vectors = st_model(out).encode(TEXTS[:10])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_model_card(runs, exported, tmp_path):
    card = (exported["last", "causal"] / "README.md").read_text()
    for needle in ("library_name: sentence-transformers", "Text2Token", "stage 1, data-driven targets",
                   "stage 2, model-derived targets", "corpus.txt", "| lora_r | `16` |", "| Pooling | last",
                   "| Attention | causal |", "Not evaluated"):
        assert needle in card, needle
    results = {"format": "text2token-eval/1", "mteb_version": "2.x",
               "models": [{"label": "my-run"}], "tasks": [{"name": "STSBenchmark", "type": "STS"}],
               "results": [{"model": "my-run", "task": "STSBenchmark", "main_score": 0.6642}]}
    file = tmp_path / "results.json"
    file.write_text(json.dumps(results))
    out = export(runs["last", "causal"], tmp_path / "with-eval", eval_results=str(file))
    card = (out / "README.md").read_text()
    assert "| my-run" in card and "66.42" in card


# ------------------------------------------------------------------------- errors
def test_missing_or_incomplete_run_folder(runs, tmp_path):
    with pytest.raises(RunFolderError, match="does not exist"):
        export(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "train_config.json").write_text("{}")
    with pytest.raises(RunFolderError, match="did not finish"):
        export(tmp_path / "unfinished", tmp_path / "out")
    (tmp_path / "other").mkdir()
    with pytest.raises(RunFolderError, match="not a text2token run folder"):
        export(tmp_path / "other", tmp_path / "out")
    broken = tmp_path / "broken"
    shutil.copytree(runs["mean", "causal"], broken)
    shutil.rmtree(broken / "stage2" / "adapter")
    with pytest.raises(RunFolderError, match="incomplete: adapter"):
        export(broken, tmp_path / "out")
    (broken / "text2token_config.json").write_text("{not json")
    with pytest.raises(RunFolderError, match="cannot read"):
        export(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused_unless_overwrite(runs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="not empty"):
        export(runs["mean", "causal"], out)
    assert (out / "keep.txt").read_text() == "mine"
    export(runs["mean", "causal"], out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "modules.json").is_file()
    with pytest.raises(RunFolderError, match="holds the model"):
        export(runs["mean", "causal"], runs["mean", "causal"], overwrite=True)
    assert (runs["mean", "causal"] / "text2token_config.json").is_file()


def test_failed_export_leaves_nothing_behind(runs, tmp_path, monkeypatch):
    import text2token.export as module

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(module, "_save_modules", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export(runs["mean", "causal"], out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_command_line(runs, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_export_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", str(runs["last", "bidirectional"]), str(tmp_path / "cli"), "--normalize",
                              "--verify"])
    assert args.func(args) == 0
    assert "SentenceTransformer(" in capsys.readouterr().out
    assert (tmp_path / "cli" / "2_Normalize").is_dir()
    args = parser.parse_args(["export", str(tmp_path / "missing"), str(tmp_path / "cli2")])
    with pytest.raises(RunFolderError):
        args.func(args)


# -------------------------------------------------------------------- real model
def wiki_sentences(n: int) -> list[str]:
    """The first lines of ../shared/data/corpus/wiki_sentences_00.txt, else the demo's packaged Wikipedia sentences."""
    from text2token.demo import find_data_dir, packaged_corpus
    from text2token.errors import DataError

    for root in (find_data_dir(None), Path(__file__).resolve().parents[2] / "shared" / "data"):
        file = root / "corpus" / "wiki_sentences_00.txt" if root else None
        if file and file.is_file():
            return [line.strip() for line in file.read_text(encoding="utf-8").splitlines()[:n]]
    try:
        return packaged_corpus(n)
    except DataError as exc:
        pytest.skip(str(exc))


@pytest.mark.integration
@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_smollm2_export_matches(pooling, tmp_path):
    """SmolLM2-135M-Instruct (embedded default): 100 Wikipedia sentences, plus 5 texts over max_length."""
    lines = wiki_sentences(100)
    model = text2token.load(None, pooling=pooling)
    out = export(model, tmp_path / "smollm2")
    cosines = compare(out, model, lines)
    long_texts = [" ".join(lines[i:i + 12]) for i in range(0, 60, 12)]
    long_cosines = compare(out, model, long_texts)
    st = st_model(out)
    encoder = TextEncoder(model.tokenizer, pooling, model.max_length, model.prompt)
    same_ids = sum(st_ids(st, t) == ids for t, ids in zip(lines, encoder.token_ids(lines)))
    long_ids = [(st_ids(st, t), ids) for t, ids in zip(long_texts, encoder.token_ids(long_texts))]
    print(f"\nSmolLM2 {pooling}: min cosine {cosines.min():.7f} (mean {cosines.mean():.7f}) on {len(lines)} sentences, "
          f"same token ids {same_ids}/{len(lines)}; over max_length: cosines {np.round(long_cosines, 4).tolist()}, "
          f"same ids {sum(a == b for a, b in long_ids)}/{len(long_texts)}")
    assert same_ids == len(lines)
    assert cosines.min() >= 0.9999
    # text2token cuts over-long `last` texts by sentence-transformers' rule, so these match exactly too
    assert long_cosines.min() >= 0.9999
    assert all(ours == theirs for ours, theirs in long_ids)


# ------------------------------------------------------- sentence-transformers' own save and card data
def test_files_are_sentence_transformers_own_save(exported, tmp_path):
    """Loading the export and saving it again with sentence-transformers gives the same module files."""
    folder = exported["last", "causal"]
    resaved = tmp_path / "resaved"
    st_model(folder).save(str(resaved), create_model_card=False)
    for name in ("modules.json", "sentence_bert_config.json", "1_Pooling/config.json"):
        assert json.loads((resaved / name).read_text()) == json.loads((folder / name).read_text()), name
    ours, theirs = (json.loads((f / "config_sentence_transformers.json").read_text()) for f in (folder, resaved))
    assert ours == theirs and ours["similarity_fn_name"] == "cosine"
    assert not (folder / ".backbone").exists()


def test_model_card_uses_sentence_transformers_card_data(runs, exported):
    from types import SimpleNamespace

    from text2token.export import card_data

    card = (exported["mean", "causal"] / "README.md").read_text()
    for needle in ("# mean-causal", "## Model Details", "**Maximum Sequence Length:** 32 tokens",
                   "**Output Dimensionality:** 32 dimensions", "#### corpus.txt", "* Columns: text",
                   "Text2Token: KL divergence", "- text2token", "## Text2Token model"):
        assert needle in card, needle
    assert card.index("## Text2Token model") < card.index("## Model Details")
    data = card_data(SimpleNamespace(backbone="some-org/some-model", name="x"), None, "title")
    assert data.base_model == "some-org/some-model" and data.model_name == "title" and "text2token" in data.tags
    local = card_data(SimpleNamespace(backbone=str(runs["mean", "causal"]), name="x"), None, "title")
    assert local.base_model is None and local.train_datasets == []
