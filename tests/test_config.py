import json
from pathlib import Path

import pytest

from text2token.config import TrainConfig
from text2token.errors import ConfigError


def test_defaults_are_the_best_measured_recipe():
    """RESULTS.md's winner: last + PromptEOL, stage 1 with the joint objective, lr 1e-4 constant; the rest
    as in the paper's prototype (the paper's own recipe is configs/recipes/paper.yaml)."""
    c = TrainConfig()
    assert (c.lr, c.lr_scheduler, c.batch_size, c.max_length, c.tau, c.max_grad_norm) == (
        1e-4, "constant", 32, 128, 1e-5, 1.0)
    assert (c.lora_r, c.lora_alpha, c.lora_dropout) == (16, 32, 0.05)
    assert c.stages == ["data"] and c.pooling == "last" and c.attention == "causal"
    assert c.contrastive_weight == 3.0 and c.stop_words == "none" and c.precision == "auto"
    paper = TrainConfig.from_file(Path(__file__).resolve().parents[1] / "configs" / "recipes" / "paper.yaml")
    assert (paper.stages, paper.steps, paper.stage2_steps, paper.lr, paper.contrastive_weight) == (
        ["data", "model"], 5, 1000, 5e-5, 0.0)
    assert paper.lora_target_modules == "attention" and paper.background_samples is None


def test_yaml_file_with_flag_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("steps: 50\nbatch-size: 8\npooling: last\ndata: corpus.txt\nstages: data\n")
    c = TrainConfig.from_file(path, {"steps": 7})
    assert (c.steps, c.batch_size, c.pooling, c.data, c.stages) == (7, 8, "last", ["corpus.txt"], ["data"])
    assert c.steps_of == {"data": 7, "model": 7}


def test_json_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"lr": 1e-4, "stage2_lr": 2e-5, "stages": ["model", "data"]}))
    c = TrainConfig.from_file(path)
    assert c.lr_of == {"data": 1e-4, "model": 2e-5} and c.stages == ["data", "model"]


@pytest.mark.parametrize("values, message", [
    ({"stpes": 3}, "unknown key"),
    ({"steps": "ten"}, "steps must be of type int"),
    ({"lr": True}, "lr must be of type float"),
    ({"steps": 0}, "steps must be at least 1"),
    ({"pooling": "max"}, "unknown pooling"),
    ({"attention": "sideways"}, "unknown attention"),
    ({"stages": ["data", "teacher"]}, "unknown stage"),
    ({"tau": 0}, "tau must be positive"),
    ({"dtype": "fp8"}, "unknown dtype"),
    ({"lr_scheduler": "zigzag"}, "unknown lr_scheduler"),
])
def test_bad_values_are_clear_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(values)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        TrainConfig.from_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        TrainConfig.from_file(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        TrainConfig.from_file(lst)
