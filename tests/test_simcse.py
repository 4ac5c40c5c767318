"""The SimCSE baseline (objective simcse): loss, dropout views, run folder, command line, config rules."""

import json
import math

import numpy as np
import pytest
import torch

import text2token
from text2token.cli import build_parser, main
from text2token.config import TrainConfig
from text2token.contrastive import prepare_dropout
from text2token.objective import SimCSEObjective, simcse_loss
from text2token.errors import ConfigError
from text2token.training import last_checkpoint

PROBE = ["The cat sat on the mat.", "Economists study inflation.", "Rain fell on the city."]


# ------------------------------------------------------------------------------------------- the loss
@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_loss_matches_a_hand_computed_value(temperature):
    # first views a_i and second views b_j of 3 texts; the positive of a_i is b_i
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, -1.0]])
    r = 1 / math.sqrt(2)
    cos = [[1.0, 0.0, r],       # a1 = (1, 0)
           [0.0, 1.0, -r],      # a2 = (0, 1)
           [r, r, 0.0]]         # a3 = (1, 1)/sqrt 2;  b1 = (1, 0), b2 = (0, 1), b3 = (1, -1)/sqrt 2
    expected = 0.0
    for i in range(3):
        log_denominator = math.log(sum(math.exp(c / temperature) for c in cos[i]))
        expected += (log_denominator - cos[i][i] / temperature) / 3
    assert simcse_loss(a, b, temperature).item() == pytest.approx(expected, rel=1e-5)


def test_per_process_losses_with_gathered_columns_average_to_the_global_loss():
    torch.manual_seed(0)
    a, b = torch.randn(4, 5), torch.randn(4, 5)
    whole = simcse_loss(a, b, 0.05)
    parts = [simcse_loss(a[:2], b, 0.05, offset=0), simcse_loss(a[2:], b, 0.05, offset=2)]
    assert torch.allclose((parts[0] + parts[1]) / 2, whole, atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        simcse_loss(a, b, 0.05, offset=1)


# ----------------------------------------------------------------------- dropout views and training
def _objective(tiny_llama, **kw):
    from text2token.backbone import load_backbone
    from text2token.pooling import TextEncoder
    from text2token.lora import add_lora

    config = TrainConfig(model=tiny_llama, objective="simcse", max_length=32, **kw)
    model, tokenizer, _ = load_backbone(tiny_llama)
    for p in model.parameters():
        p.requires_grad_(False)
    dropout = prepare_dropout(model, config)
    torch.manual_seed(0)
    objective = SimCSEObjective(add_lora(model, config), config.pooling, config.simcse_temperature)
    batch = TextEncoder(tokenizer, config.pooling, config.max_length, config.prompt)(PROBE + ["A quick brown fox."])
    return objective, batch, dropout


def test_two_views_differ_by_dropout_and_training_moves_the_adapter(tiny_llama):
    objective, batch, dropout = _objective(tiny_llama)
    assert dropout["attention_dropout"] == 0.3 and dropout["attention_modules"] == 2 and dropout["lora_dropout"] == 0.05
    objective.train()
    a, b = objective.views(**batch)
    assert a.shape == b.shape == (4, 32) and (a - b).abs().max() > 1e-4
    objective.eval()
    with torch.no_grad():
        a, b = objective.views(**batch)
    assert torch.allclose(a, b)  # no dropout in eval mode: the views coincide

    def dropout_loss():  # what training minimises: the loss on dropout views, the same four draws each time
        objective.train()
        losses = []
        with torch.no_grad():
            for seed in range(100, 104):
                torch.manual_seed(seed)
                losses.append(objective(**batch)["loss"].item())
        return sum(losses) / len(losses)

    before = dropout_loss()

    params = {n: p for n, p in objective.named_parameters() if p.requires_grad}
    assert params and all("lora_" in n for n in params)
    start = {n: p.detach().clone() for n, p in params.items()}
    optimizer = torch.optim.AdamW(params.values(), lr=1e-2)
    objective.train()
    for _ in range(8):
        loss = objective(**batch)["loss"]
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert max((p.detach() - start[n]).abs().max().item() for n, p in params.items()) > 1e-3
    assert dropout_loss() < 0.6 * before  # 3.28 -> 0.55-1.59 over three training seeds, either way of drawing masks


def test_no_dropout_at_all_is_refused(tiny_llama):
    with pytest.raises(ConfigError, match="needs dropout"):
        _objective(tiny_llama, simcse_dropout=0.0, lora_dropout=0.0)


# ------------------------------------------------------------------------------------- the run folder
def test_simcse_run_is_a_loadable_run_folder(tiny_llama, corpus_file, tmp_path):
    run = text2token.train(model=tiny_llama, data=[str(corpus_file)], output=str(tmp_path / "run"),
                           objective="simcse", simcse_temperature=0.1, steps=3, batch_size=4, max_length=32,
                           save_steps=2, logging_steps=1, lr=1e-3, pooling="mean")
    record = json.loads((run / "text2token_config.json").read_text())
    assert record["objective"] == "simcse" and record["stages"] == ["simcse"]
    assert record["adapters"] == ["simcse/adapter"]
    assert record["hyperparameters"]["objective"] == "simcse" and record["hyperparameters"]["simcse_temperature"] == 0.1
    info = record["training"]["stages"]["simcse"]
    assert info["steps"] == 3 and info["texts"] == 12 and info["dropout"]["attention_dropout"] == 0.3
    assert np.isfinite(info["first_loss"]) and np.isfinite(info["last_loss"])
    assert json.loads((run / "train_config.json").read_text())["stages"] == ["simcse"]
    assert last_checkpoint(run / "simcse" / "checkpoints").name == "checkpoint-3"
    assert any("loss" in json.loads(line) for line in (run / "simcse" / "log.jsonl").read_text().splitlines())

    model = text2token.load(str(run))
    trained = model.encode(PROBE)
    base = text2token.load(tiny_llama).encode(PROBE)
    assert model.pooling == "mean" and model.model.training is False
    assert trained.shape == base.shape and np.isfinite(trained).all() and np.abs(trained - base).max() > 1e-5

    from text2token.export import export

    card = (export(str(run), tmp_path / "exported") / "README.md").read_text()
    assert "SimCSE baseline" in card and "temperature 0.1" in card and "Text2Token trains" not in card


# ------------------------------------------------------------------------------ command line and config
def test_cli_objective_flags_reach_the_config(tiny_llama, corpus_file, tmp_path, monkeypatch, capsys):
    args = build_parser().parse_args(["train", "--data", str(corpus_file), "--output", str(tmp_path / "run"),
                                      "--objective", "simcse", "--simcse-temperature", "0.1",
                                      "--simcse-dropout", "0.2"])
    assert (args.objective, args.simcse_temperature, args.simcse_dropout) == ("simcse", 0.1, 0.2)

    import text2token.stages as stages

    seen = {}
    monkeypatch.setattr(stages, "train", lambda config, **kw: seen.setdefault("config", config) and tmp_path)
    assert main(["train", "--data", str(corpus_file), "--output", str(tmp_path / "run"), "--objective", "simcse",
                 "--simcse-temperature", "0.1"]) == 0
    config = seen["config"]
    assert (config.objective, config.stages, config.simcse_temperature) == ("simcse", ["simcse"], 0.1)
    assert config.steps_of == {"simcse": 1000} and config.lr_of == {"simcse": 1e-4}

    assert main(["train", "--data", str(corpus_file), "--output", str(tmp_path / "run"), "--objective", "simcse",
                 "--stages", "both"]) == 2
    assert "--stages does not apply to objective simcse" in capsys.readouterr().err


@pytest.mark.parametrize("values, message", [
    ({"objective": "llm2vec"}, "unknown objective 'llm2vec': choose one of text2token, simcse"),
    ({"objective": "simcse", "stages": ["model"]}, "do not apply to objective simcse"),
    ({"stages": ["simcse"]}, "needs objective: simcse"),
    ({"objective": "simcse", "simcse_temperature": 0}, "simcse_temperature must be positive"),
    ({"objective": "simcse", "simcse_dropout": 1.0}, r"simcse_dropout must be in \[0, 1\)"),
])
def test_bad_objective_settings_are_clear_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(values)


def test_bad_objective_on_the_command_line_exits_2(corpus_file, tmp_path, capsys):
    assert main(["train", "--data", str(corpus_file), "--output", str(tmp_path / "run"), "--objective", "nope"]) == 2
    assert "unknown objective 'nope'" in capsys.readouterr().err


def test_simcse_stage_rule():
    assert TrainConfig(objective="simcse").stages == ["simcse"]
    assert TrainConfig(objective="simcse", stages=["simcse"]).stages == ["simcse"]
    assert TrainConfig().objective == "text2token" and TrainConfig().stages == ["data"]
    assert TrainConfig(objective="simcse").contrastive_weight == 0.0  # no KL to add SimCSE's term to
    saved = TrainConfig(objective="simcse").to_dict()
    assert TrainConfig.from_dict(saved).stages == ["simcse"]  # what --resume reads back
