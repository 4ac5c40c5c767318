"""A rejected lever for encoding speed: computing the prompt's fixed head once per call (a shared KV cache).

With ``last`` pooling every text is wrapped in the same template, ``This sentence : "{text}" means in one
word:"``, and with causal attention the template's first tokens have the same keys and values in every
text. This prototype runs them once, repeats their cache over the batch and feeds only the rest of each
text (right-padded, positions continued); it is compared with text2token's own forward on the same
length-sorted batches of real sentences, alternating which goes first. Only the tokens every template
shares before the text can be cached (SmolLM2: 3 of them, ``This sentence :``; the quote merges with the
text's first characters), 3 of about 40 per Wikipedia sentence, so the gain is small.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python -m bench.prefix_cache            # 256 sentences
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np


def shared_head(encoder, probes=("0", "a", "The", "Über", "(x)", '"x"')) -> list[int]:
    """The token ids every probe's template starts with."""
    rows = [encoder._ids(encoder.prompt.format(text=t)) for t in probes]
    head = []
    for column in zip(*rows):
        if len(set(column)) != 1:
            break
        head.append(column[0])
    return head


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    import torch

    import text2token
    from bench.encode_speed import sentences
    from text2token.model import causal_lm, embed
    from text2token.pooling import pool, position_ids

    model = text2token.load(None, pooling="last", precision="fp32")
    encoder, lm = model.text_encoder, causal_lm(model.model)
    head = shared_head(encoder)
    p = len(head)
    ids = encoder.token_ids(sentences(args.texts, seed=1))
    assert all(row[:p] == head for row in ids)
    with torch.inference_mode():
        prefix = lm.base_model(input_ids=torch.tensor([head]), use_cache=True).past_key_values

    def cached(rows):
        width = max(len(r) - p for r in rows)
        inputs = torch.full((len(rows), width), model.tokenizer.pad_token_id)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            inputs[i, :len(r) - p] = torch.tensor(r[p:])
            mask[i, :len(r) - p] = 1
        cache = copy.deepcopy(prefix)
        cache.batch_repeat_interleave(len(rows))
        out = lm.base_model(input_ids=inputs, attention_mask=torch.cat([torch.ones((len(rows), p), dtype=torch.long),
                                                                        mask], 1),
                            position_ids=p + position_ids(mask), past_key_values=cache, use_cache=True)
        return pool(out.last_hidden_state.float(), mask, "last")

    order = np.argsort([-len(r) for r in ids], kind="stable")
    batches = [[ids[i] for i in order[s:s + args.batch_size]] for s in range(0, len(order), args.batch_size)]
    arms = {"text2token": lambda rows: embed(model.model, encoder.pad(rows), "last"), "prefix cache": cached}
    seconds, vectors = {a: 0.0 for a in arms}, {a: [] for a in arms}
    with torch.inference_mode():
        for k, rows in enumerate(batches):
            for arm in (list(arms) if k % 2 == 0 else list(arms)[::-1]):
                t0 = time.perf_counter()
                vectors[arm].append(arms[arm](rows))
                seconds[arm] += time.perf_counter() - t0
    a, b = torch.cat(vectors["text2token"]), torch.cat(vectors["prefix cache"])
    result = {"texts": len(ids), "tokens": int(sum(map(len, ids))), "head_tokens": p,
              "seconds": {k: round(v, 2) for k, v in seconds.items()},
              "speed": round(seconds["text2token"] / seconds["prefix cache"], 3),
              "min_cosine": round(float(torch.nn.functional.cosine_similarity(a, b).min()), 6)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
