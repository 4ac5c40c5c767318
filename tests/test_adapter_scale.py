"""adapter_scale: weight-space interpolation between the base and the trained model (WiSE-FT) at load time."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import text2token
from text2token.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["the cat sat on the mat", "a quick brown fox", "rivers flow to the sea"]


@pytest.fixture(scope="module")
def run(tiny_llama, tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(f"sentence number {i} about topic {i % 7} and words {i * 3}" for i in range(40)) + "\n")
    return text2token.train(model=tiny_llama, data=[str(corpus)], output=str(root / "run"), steps=3, batch_size=4,
                            max_length=48, lr=5e-3, stages=["data", "model"], stage2_steps=2)


def weights(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.model.named_parameters()}


def test_scale_interpolates_every_weight(run):
    trained = weights(text2token.load(run))
    base = weights(text2token.load(run, adapter_scale=0.0))
    half = weights(text2token.load(run, adapter_scale=0.5))
    moved = [n for n in trained if not torch.equal(trained[n], base[n])]
    assert moved, "training must move some weights"
    for name in trained:
        torch.testing.assert_close(half[name], 0.5 * trained[name] + 0.5 * base[name], rtol=1e-5, atol=1e-6)
    # scale 0 is exactly the backbone without adapters
    plain = weights(text2token.runfolder.RunFolder(run).load_base())
    for name in plain:
        torch.testing.assert_close(base[name], plain[name], rtol=0, atol=1e-6)


def test_embeddings_follow_the_scale(run):
    full = text2token.load(run).encode(TEXTS)
    zero = text2token.load(run, adapter_scale=0.0).encode(TEXTS)
    base = text2token.runfolder.RunFolder(run).load_base().encode(TEXTS)
    np.testing.assert_allclose(zero, base, rtol=1e-4, atol=1e-5)
    assert not np.allclose(full, zero, atol=1e-4)


def test_recorded_scale_is_the_default(tiny_llama, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"text {i} of the small corpus" for i in range(20)) + "\n")
    scaled = text2token.train(model=tiny_llama, data=[str(corpus)], output=str(tmp_path / "r"), steps=2, batch_size=4,
                              max_length=48, lr=5e-3, adapter_scale=0.25)
    record = json.loads((tmp_path / "r" / "text2token_config.json").read_text())
    assert record["hyperparameters"]["adapter_scale"] == 0.25
    model = text2token.load(scaled)
    assert model.adapter_scale == 0.25
    np.testing.assert_allclose(model.encode(TEXTS), text2token.load(scaled, adapter_scale=0.25).encode(TEXTS),
                               rtol=1e-5, atol=1e-6)
    assert text2token.load(scaled, adapter_scale=1.0).adapter_scale == 1.0


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_bad_scale_is_one_line(run, bad):
    with pytest.raises(ConfigError, match="adapter_scale"):
        text2token.load(run, adapter_scale=bad)


def test_scale_on_a_base_model_is_refused(tiny_llama):
    with pytest.raises(ConfigError, match="adapter_scale applies to a trained run folder"):
        text2token.load(tiny_llama, adapter_scale=0.5)


def test_eval_cache_keys_on_the_scale(run):
    from text2token.evaluation.encoder import ModelRef

    plain, half = ModelRef(str(run)), ModelRef(str(run), adapter_scale=0.5)
    assert "adapter_scale" not in plain.identity()  # scores cached before the option keep their key
    assert half.identity()["adapter_scale"] == 0.5 and half.identity() != plain.identity()
    assert "adapter_scale=0.5" in half.label


def test_cli_flag_reaches_encode(run, tmp_path):
    from text2token.cli import main

    texts = tmp_path / "t.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    assert main(["encode", str(run), "--input", str(texts), "--output", str(tmp_path / "z.npy"),
                 "--adapter-scale", "0", "--precision", "fp32"]) == 0
    base = text2token.runfolder.RunFolder(run).load_base().encode(TEXTS)
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), base, rtol=1e-4, atol=1e-5)
    assert main(["encode", str(run), "--input", str(texts), "--output", str(tmp_path / "w.npy"),
                 "--adapter-scale", "2"]) == 2
    assert not (tmp_path / "w.npy").exists()
