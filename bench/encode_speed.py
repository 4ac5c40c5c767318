"""Encoding speed: ``Text2TokenModel.encode`` against ``SentenceTransformer.encode`` on the same weights.

The model (by default the untrained SmolLM2 with the default recipe's pooling, ``last`` + PromptEOL) is
exported with ``text2token.export`` and the folder is opened with ``sentence_transformers``, which then
applies the prompt through the exported chat template. Both encode the same real Wikipedia sentences,
batch 32, normalised. So that drift on a noisy machine cancels, the sentences are ordered by token
length and cut into chunks; for each chunk every arm runs in turn (A B C, then C B A, ...), so each
text is encoded once per arm. Arms: text2token fp32, sentence-transformers fp32 (the peer), text2token
bf16 autocast. Printed: each arm's speed against the peer (total time, and its range over chunks) and the
smallest cosine between an arm's vectors and the peer's; the last line is JSON.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python -m bench.encode_speed              # 1,024 sentences
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python -m bench.encode_speed --pooling mean
    .venv/bin/python -m bench.encode_speed --tiny                                           # a tiny random model
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

def sentences(n: int, seed: int) -> list[str]:
    """``n`` sentences of the shared corpus (the demo's data folder and train's reader), a seeded sample."""
    from text2token.data import read_corpus
    from text2token.demo import find_data_dir

    data_dir = find_data_dir(None)
    path = data_dir / "corpus" / "wiki_sentences_00.txt" if data_dir is not None else None
    if path is None or not path.is_file():
        raise SystemExit("no corpus/wiki_sentences_00.txt: set TEXT2TOKEN_DATA_DIR, or use --tiny")
    lines, _ = read_corpus([str(path)], max_chars=None)
    return random.Random(seed).sample(lines, n)


def tiny_texts(n: int, seed: int) -> list[str]:
    from bench.encode_memory import WORDS

    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 30))) for _ in range(n)]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny random Llama and generated texts (seconds)")
    parser.add_argument("--pooling", default="last", choices=["last", "mean"])
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    import torch
    from sentence_transformers import SentenceTransformer

    import text2token
    from text2token.export import export

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.tiny:
            from bench.encode_memory import build_model

            model = text2token.load(build_model(tmp / "tiny", hidden=64, layers=2), pooling=args.pooling,
                                    precision="fp32")
            texts = tiny_texts(args.texts, args.seed)
        else:
            model = text2token.load(None, pooling=args.pooling, precision="fp32")
            texts = sentences(args.texts, args.seed)
        st = SentenceTransformer(str(export(model, tmp / "export")), device="cpu", local_files_only=True)
        bs = args.batch_size

        def run(arm: str, chunk: list[str]) -> np.ndarray:
            if arm == "sentence-transformers fp32":
                return st.encode(chunk, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)
            return model.encode(chunk, batch_size=bs, normalize=True, show_progress=False,
                                autocast=arm == "text2token bf16 autocast")

        arms = ["text2token fp32", "sentence-transformers fp32", "text2token bf16 autocast"]
        for arm in arms:  # warm-up: one batch each
            run(arm, texts[:bs])
        ids = model.text_encoder.token_ids(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        size = -(-len(texts) // args.chunks)
        chunks = [order[a:a + size] for a in range(0, len(order), size)]
        vectors = {arm: np.zeros((len(texts), model.embedding_dim), dtype=np.float32) for arm in arms}
        times = {arm: [] for arm in arms}
        with torch.inference_mode():
            for c, index in enumerate(chunks):
                for arm in (arms if c % 2 == 0 else arms[::-1]):
                    t0 = time.perf_counter()
                    vectors[arm][index] = run(arm, [texts[i] for i in index])
                    times[arm].append(time.perf_counter() - t0)
    peer = "sentence-transformers fp32"
    result = {"machine": cpu_name(), "threads": torch.get_num_threads(), "tiny": args.tiny, "pooling": args.pooling,
              "prompt": model.prompt if args.pooling == "last" else None, "texts": len(texts),
              "tokens": int(sum(map(len, ids))), "batch_size": bs, "max_length": model.max_length,
              "seconds": {arm: round(sum(t), 2) for arm, t in times.items()}, "arms": {}}
    print(f"{result['machine']}, {result['threads']} thread(s); {len(texts)} texts ({result['tokens']} tokens with "
          f"the prompt), pooling {args.pooling}, batch {bs}, {len(chunks)} chunks")
    print("| arm | speed vs sentence-transformers fp32 (range over chunks) | seconds | min cosine vs the peer |")
    print("|---|---|---:|---:|")
    for arm in arms:
        if arm == peer:
            continue
        per_chunk = [p / a for p, a in zip(times[peer], times[arm])]
        speed = sum(times[peer]) / sum(times[arm])
        cosine = float(np.min(np.sum(vectors[arm] * vectors[peer], axis=1)))
        result["arms"][arm] = {"speed": round(speed, 3), "speed_min": round(min(per_chunk), 3),
                               "speed_max": round(max(per_chunk), 3), "min_cosine": round(cosine, 6)}
        print(f"| {arm} | {speed:.2f}x ({min(per_chunk):.2f}-{max(per_chunk):.2f}) | {sum(times[arm]):.1f} "
              f"(peer {sum(times[peer]):.1f}) | {cosine:.6f} |")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
