"""The bench package (run from the repository root, as `make test` does): the GPU step benchmark the only
way a CPU can (--tiny), the pair analysis, peak_rss, and both ways of running a script."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench import gpu_step, pair_overlap, pair_topic

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_gpu_step_bench_runs_tiny_on_cpu(capsys):
    assert gpu_step.main(["--tiny", "--steps", "2", "--batch-size", "4", "--seq-len", "16", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["config"] == "tiny" and result["timed_steps"] == 2 and result["losses_finite"]
    assert result["trainable_m"] > 0 and result["step_s_median"] > 0 and result["teacher_forward_s"] > 0
    # the real shape is Llama-3-8B's
    assert gpu_step.LLAMA3_8B["hidden_size"] == 4096 and gpu_step.LLAMA3_8B["num_hidden_layers"] == 32


def test_pair_overlap_reference(tmp_path, capsys):
    rows = [{"s1": "the cat sat", "s2": "the cat sat down", "label": 1},  # Jaccard 3/4
            {"s1": "rain in spain", "s2": "rain in spain", "label": 1},  # 1
            {"s1": "stocks fell", "s2": "the cat sat", "label": 0},  # 0
            {"s1": "blue sky today", "s2": "blue grass", "label": 0}]  # 1/4
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert pair_overlap.main([str(tmp_path)]) == 100.0  # every positive pair overlaps more
    rows[3]["s2"] = "blue sky today"  # a negative with full overlap ranks first: AP = (1/2 + 2/3) / 2
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert abs(pair_overlap.main([str(tmp_path)]) - 100 * (1 / 2 + 2 / 3) / 2) < 1e-9


def test_pair_topic_stats_by_hand():
    stats = pair_topic.pair_stats([1.0, 0.8], [0.6, 0.4], [0.0, 0.2])
    assert abs(stats["cos_paraphrase"] - 0.9) < 1e-12 and abs(stats["cos_random"] - 0.1) < 1e-12
    assert abs(stats["topic_share"] - (0.5 - 0.1) / (0.9 - 0.1)) < 1e-12  # 0.5
    assert abs(stats["d_prime"] - 0.4 / 0.1) < 1e-9  # both groups have std 0.1
    assert stats["ap"] == 100.0  # every paraphrase above every non-paraphrase


def test_pair_topic_on_a_tiny_model(tiny_llama, tmp_path, capsys):
    rows = [{"s1": "the cat sat on the mat", "s2": "the cat sat on the mat", "label": 1},
            {"s1": "stocks fell sharply today", "s2": "stocks fell sharply today", "label": 1},
            {"s1": "rain over the hills", "s2": "economists study inflation", "label": 0},
            {"s1": "a dog barked at night", "s2": "the committee approved the budget", "label": 0}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = pair_topic.main([str(tmp_path), f"{tiny_llama}:mean"])
    r = results[f"{tiny_llama}:mean"]
    assert abs(r["cos_paraphrase"] - 1.0) < 1e-5  # identical texts
    assert r["top1_paraphrase"] == 1.0 and r["cos_non_paraphrase"] < 1.0 - 1e-4
    assert "| AP |" in capsys.readouterr().out


def test_peak_rss_reports_the_peak_of_a_child_process():
    grow = "import time; x = bytearray(400 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(0.6); print('grown')"
    out = subprocess.run([sys.executable, str(BENCH / "peak_rss.py"), sys.executable, "-c", grow],
                         capture_output=True, text=True, check=True).stdout
    assert "grown" in out
    peak = float(re.search(r"PEAK ([0-9.]+) GiB", out).group(1))
    assert 0.38 <= peak <= 1.0  # the 400 MiB buffer plus an interpreter


def test_scripts_run_as_modules_and_as_files():
    """`python -m bench.x` (the package) and `python bench/x.py` (the commands RESULTS.md prints) both import."""
    root = BENCH.parent
    for argv in ([sys.executable, "-m", "bench.pair_overlap", "--help"], [sys.executable, "bench/pair_overlap.py", "--help"]):
        out = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=True).stdout
        assert "task_dir" in out
    edits = re.compile(r"sys\.path\.(insert|append|extend)|sys\.path\s*[+]?=")
    assert not [p.name for p in BENCH.glob("*.py") if edits.search(p.read_text())]  # an editable install suffices


def test_encode_speed_bench_compares_the_same_vectors_on_a_tiny_model(capsys):
    from bench import encode_speed

    result = encode_speed.main(["--tiny", "--texts", "40", "--chunks", "2", "--batch-size", "8"])
    arms = result["arms"]
    assert set(arms) == {"text2token fp32", "text2token bf16 autocast"} and result["pooling"] == "last"
    assert arms["text2token fp32"]["min_cosine"] > 0.9999  # the exported folder encodes the same vectors
    assert 0.9 < arms["text2token bf16 autocast"]["min_cosine"] < 1.0  # bf16 is close, not identical
    assert all(a["speed"] > 0 for a in arms.values()) and result["tokens"] > 40
    assert "| text2token fp32 |" in capsys.readouterr().out


def test_prefix_cache_bench_finds_the_templates_shared_head(tiny_llama):
    import text2token
    from bench.prefix_cache import shared_head

    encoder = text2token.load(tiny_llama, pooling="last").text_encoder
    head = shared_head(encoder)
    whole = encoder._ids(encoder.prompt.format(text="a cat"))
    assert 0 < len(head) < len(whole) and whole[:len(head)] == head
    assert len(shared_head(encoder, probes=("x", "y"))) >= len(head)  # fewer probes share at least as much


def test_embedding_scale_rescales_the_trained_vectors_only_for_the_classifier():
    from bench.embedding_scale import Memo, compare

    class Fixed:  # two texts, a base model of norm 2 and a trained one of norm 1 at 60 degrees
        embedding_dim, precision = 2, "fp32"

        def __init__(self, table):
            self.table, self.calls = table, 0

        def encode(self, texts, batch_size=32):
            self.calls += 1
            return np.array([self.table[t] for t in texts], dtype=np.float32)

    base = Fixed({"a": [2.0, 0.0], "b": [0.0, 2.0]})
    trained = Fixed({"a": [0.5, 0.5 * 3 ** 0.5], "b": [-0.5 * 3 ** 0.5, 0.5]})
    seen = []

    def score(memo):  # what the classifier would be given: the texts' vectors at the memo's current scale
        seen.append((memo.name, np.linalg.norm(memo.encode(["a", "b"]), axis=1).round(4).tolist()))
        return {"Task": 1.0}

    out = compare(Memo(base, "base"), Memo(trained, "trained"), score)
    assert out["texts"] == 2 and out["norm_base"] == 2.0 and out["norm_trained"] == 1.0
    assert abs(out["cos_trained_base"] - 0.5) < 1e-4
    assert seen == [("base", [2.0, 2.0]), ("trained", [1.0, 1.0]), ("trained", [2.0, 2.0]), ("trained", [1.0, 1.0]),
                    ("base", [1.0, 1.0])]
    assert set(out["scores"]) == {"base", "trained", "trained_at_base_norm", "trained_at_unit_norm", "base_at_unit_norm"}
    assert base.calls == trained.calls == 1  # each text encoded once


def test_cli_runs_arm_settings_split_environment_from_flags():
    from bench.cli_runs import settings

    assert settings("PYTHONPATH=/tmp/x TEXT2TOKEN_ALLOCATOR=system --length-groups 1 --lr=2e-4") == (
        {"PYTHONPATH": "/tmp/x", "TEXT2TOKEN_ALLOCATOR": "system"}, ["--length-groups", "1", "--lr=2e-4"])
    assert settings("--length-groups auto") == ({}, ["--length-groups", "auto"])


def test_cli_runs_times_whole_commands_per_arm(tiny_llama, corpus_file, tmp_path, capsys):
    """Fresh `text2token train` processes per arm, in the given order: each run's peak RSS and s/step, per arm
    the peaks in run order and the speed against A; an arm's environment reaches its runs only."""
    from bench import cli_runs

    common = f"--model {tiny_llama} --batch-size 4 --max-length 40 --stages data"
    result = cli_runs.main(["--data", str(corpus_file), "--steps", "2", "--order", "ABA", "--common", common,
                            "--log", str(tmp_path / "logs"),
                            "--arm", "--length-groups 1", "--arm", "TEXT2TOKEN_PRECISION=bf16 --length-groups 2"])
    assert [r["arm"] for r in result["runs"]] == ["A", "B", "A"]
    assert all(r["peak_gib"] > 0.05 and r["s_per_step"] > 0 for r in result["runs"])
    a, b = result["arms"]["--length-groups 1"], result["arms"]["TEXT2TOKEN_PRECISION=bf16 --length-groups 2"]
    assert len(a["peaks_gib"]) == 2 and len(b["peaks_gib"]) == 1 and a["speed"] == 1.0 and b["speed"] > 0
    logs = {p.name: p.read_text() for p in (tmp_path / "logs").iterdir()}
    assert sorted(logs) == ["run0-A.log", "run1-B.log", "run2-A.log"]
    assert "precision: bf16" in logs["run1-B.log"] and "precision: bf16" not in logs["run0-A.log"]
    assert "| B `TEXT2TOKEN_PRECISION=bf16 --length-groups 2` |" in capsys.readouterr().out


def test_step_flops_counts_the_blocks_adapters_attention_and_head_by_hand(tiny_llama):
    import torch

    from bench.length_groups import step_flops
    from text2token.backbone import load_backbone
    from text2token.config import TrainConfig
    from text2token.lora import add_lora

    model, _, _ = load_backbone(tiny_llama)
    c = model.config
    peft_model = add_lora(model, TrainConfig(lora_r=4, lora_alpha=8, gradient_checkpointing=False))
    d, hd = c.hidden_size, getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    q, kv, inter = c.num_attention_heads * hd, c.num_key_value_heads * hd, c.intermediate_size
    shapes = [(d, q), (d, kv), (d, kv), (q, d), (d, inter), (d, inter), (inter, d)]  # (in, out), all-linear LoRA
    frozen = c.num_hidden_layers * sum(i * o for i, o in shapes)
    adapters = c.num_hidden_layers * sum(4 * (i + o) for i, o in shapes)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    tokens, squares, rows = 2 * 8, 2 * (9 + 25), 4  # two stacked views of texts of 3 and 5 tokens
    expected = (2 * (frozen + adapters) * tokens + 4 * c.num_hidden_layers * q * squares
                + 2 * rows * d * c.vocab_size)
    assert step_flops(peft_model, {"attention_mask": mask}) == expected
