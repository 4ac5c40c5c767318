"""The GPU step benchmark, run the only way a CPU can: --tiny."""

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu_step.py"


def test_gpu_step_bench_runs_tiny_on_cpu(capsys):
    spec = importlib.util.spec_from_file_location("gpu_step", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--tiny", "--steps", "2", "--batch-size", "4", "--seq-len", "16", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["config"] == "tiny" and result["timed_steps"] == 2 and result["losses_finite"]
    assert result["trainable_m"] > 0 and result["step_s_median"] > 0 and result["teacher_forward_s"] > 0
    # the real shape is Llama-3-8B's
    assert module.LLAMA3_8B["hidden_size"] == 4096 and module.LLAMA3_8B["num_hidden_layers"] == 32


# ---------------------------------------------------------------- performance benchmarks (docs/performance.md)
def _bench(name):
    path = BENCH.parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_throughput_bench_runs_tiny(capsys):
    assert _bench("train_throughput").main(["--tiny", "--rounds", "1", "--batch-size", "4", "--max-length", "16",
                                            "--background", "8", "--group-pool", "4", "--group-steps", "1"]) == 0
    r = _last_json(capsys)
    assert r["simcse"]["ratio"]["median"] > 0 and r["stage2"]["ratio"]["median"] > 0
    assert r["stage2"]["loss_check"]["max_abs_diff"] < 1e-4  # sparse stage-2 targets give the dense loss
    assert 0 < r["grouping"]["padding_efficiency"]["grouped"] <= 1 and r["bf16"]["ratio"]["n"] == 1
    assert 0 < r["collate"]["share"] < 1 and r["dropout"]["time_ratio"]["n"] == 1


def test_encode_throughput_bench_runs_tiny(capsys):
    assert _bench("encode_throughput").main(["--tiny", "--texts", "24", "--batch-size", "8", "--chunks", "3"]) == 0
    r = _last_json(capsys)
    assert r["min_cosine"]["text2token"] >= 0.9999  # same weights, same tokens: same vectors
    assert r["speed"]["text2token"] > 0 and r["speed_chunks"]["text2token"]["n"] == 3 and "text2token_bf16" in r["speed"]
    assert r["encoder_only"]["loads"] is False and "BackboneError" in r["encoder_only"]["error"]


def test_utilisation_bench_runs_tiny(capsys):
    module = _bench("utilisation")
    assert module.main(["--tiny", "--batch-size", "4", "--steps", "1", "--encode-texts", "8"]) == 0
    r = _last_json(capsys)
    assert r["peak"]["fp32"]["peak_gflops"] > 0 and r["peak"]["bf16"]["peak_gflops"] > 0
    assert r["train"]["fp32"]["gflops_3x"] > 0 and r["encode"]["fp32"]["gflops"] > 0
    # the FLOP formula by hand: one text of 3 tokens, one layer
    dims = {"p_lin": 10, "layers": 1, "d_attn": 2, "d": 4, "vocab": 5, "lora_io": 6, "lora_r": 1}
    assert module.forward_flops(dims, [3], lora=False) == 2 * 10 * 3 + 4 * 1 * 2 * 9 + 2 * 1 * 4 * 5
    assert module.forward_flops(dims, [3], lora=True) == module.forward_flops(dims, [3], lora=False) + 2 * 1 * 6 * 3


def test_targets_memory_bench_runs_tiny(capsys):
    assert _bench("targets_memory").main(["--tiny", "--steps", "1", "--runs", "32x64", "--rounds", "1"]) == 0
    r = _last_json(capsys)
    assert r["targets"]["blocks"]["identical"] and r["targets"]["texts"] == 2000
    run = r["memory"]["runs"]["32x64"]
    assert run["exit"] == 0 and run["peak_gib"] > 0 and run["steps"] == 1
    assert set(run["phases"]) >= {"load_backbone", "targets", "train_stage"}


def test_scaling_bench_runs_tiny(capsys):
    assert _bench("scaling").main(["--tiny", "--rounds", "1", "--batches", "2", "4", "--lengths", "16"]) == 0
    r = _last_json(capsys)
    assert {(row["batch"], row["max_length"]) for row in r["table"]} >= {(2, 64), (4, 64), (4, 16)}
    assert {row["vocab"] for row in r["table"]} > {r["table"][0]["vocab"]}  # the large-vocabulary copy ran


def test_bf16_quality_bench_runs_tiny(capsys):
    assert _bench("bf16_quality").main(["--tiny", "--limit", "10"]) == 0
    r = _last_json(capsys)
    assert r["pairs"] == 10 and r["results"]["mean"]["min_cosine"] > 0.99


def test_pair_overlap_reference(tmp_path, capsys):
    rows = [{"s1": "the cat sat", "s2": "the cat sat down", "label": 1},  # Jaccard 3/4
            {"s1": "rain in spain", "s2": "rain in spain", "label": 1},  # 1
            {"s1": "stocks fell", "s2": "the cat sat", "label": 0},  # 0
            {"s1": "blue sky today", "s2": "blue grass", "label": 0}]  # 1/4
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _bench("pair_overlap").main([str(tmp_path)]) == 100.0  # every positive pair overlaps more
    rows[3]["s2"] = "blue sky today"  # a negative with full overlap ranks first: AP = (1/2 + 2/3) / 2
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert abs(_bench("pair_overlap").main([str(tmp_path)]) - 100 * (1 / 2 + 2 / 3) / 2) < 1e-9


def test_pair_topic_stats_by_hand():
    stats = _bench("pair_topic").pair_stats([1.0, 0.8], [0.6, 0.4], [0.0, 0.2])
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
    results = _bench("pair_topic").main([str(tmp_path), f"{tiny_llama}:mean"])
    r = results[f"{tiny_llama}:mean"]
    assert abs(r["cos_paraphrase"] - 1.0) < 1e-5  # identical texts
    assert r["top1_paraphrase"] == 1.0 and r["cos_non_paraphrase"] < 1.0 - 1e-4
    assert "| AP |" in capsys.readouterr().out


def test_peak_rss_reports_the_peak_of_a_child_process():
    import re
    import subprocess
    import sys

    grow = "import time; x = bytearray(400 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(0.6); print('grown')"
    out = subprocess.run([sys.executable, str(BENCH.parent / "peak_rss.py"), sys.executable, "-c", grow],
                         capture_output=True, text=True, check=True).stdout
    assert "grown" in out
    peak = float(re.search(r"PEAK ([0-9.]+) GiB", out).group(1))
    assert 0.38 <= peak <= 1.0  # the 400 MiB buffer plus an interpreter
