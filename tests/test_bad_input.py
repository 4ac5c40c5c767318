"""Bad input through the command line: one clear error line and exit code 2 where training cannot
go on (never a traceback, never a silently empty model), or a documented skip with a count."""

import json
import shutil

import pytest
import torch

from text2token.cli import main
from text2token.training import ADAPTER_FILE
from cli_checks import fails

GOOD = ["The cat sat on the mat and looked at the garden.", "Economists study inflation and interest rates.",
        "Volcanoes erupt when magma rises through the crust.", "The orchestra played a symphony in the hall."]


pytestmark = pytest.mark.usefixtures("one_thread")


def train(model, data, out, *extra):
    return ["train", "--model", str(model), "--data", str(data), "--output", str(out), "--stages", "data",
            "--steps", "1", "--batch-size", "16", "--max-length", "16", "--background-samples", "4",
            "--pooling", "mean", "--contrastive-weight", "0", *extra]


def record(run):
    return json.loads((run / "text2token_config.json").read_text())


def write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# ---------------------------------------------------------------- corpus
@pytest.mark.parametrize("content, message", [
    (b"", "no usable text"),
    (b"\n   \n\t\n\n", "skipped 4 blank"),
    (b"\xff\xfe\xfa\n\xc3\x28\n", "skipped 2 undecodable"),
], ids=["empty", "blank-lines-only", "undecodable-only"])
def test_a_corpus_with_no_usable_text_is_an_error_before_any_folder_is_made(tiny_llama, tmp_path, capsys,
                                                                              content, message):
    fails(train(tiny_llama, write(tmp_path / "c.txt", content), tmp_path / "run"), capsys, message)
    assert not (tmp_path / "run").exists()


def test_undecodable_and_blank_lines_are_skipped_and_counted(tiny_llama, tmp_path, capsys):
    data = write(tmp_path / "c.txt", GOOD[0].encode() + b"\n\xff\xfe bad bytes\n\n" + "\n".join(GOOD[1:]).encode())
    assert main(train(tiny_llama, data, tmp_path / "run")) == 0
    corpus = record(tmp_path / "run")["training"]["corpus"]
    assert (corpus["texts"], corpus["undecodable"], corpus["blank"]) == (4, 1, 1)
    assert corpus["problems"] == [f"{data}:2: not valid UTF-8 (invalid start byte at byte 0); line skipped"]


def test_a_one_megabyte_line_is_cut_to_max_chars_and_counted(tiny_llama, tmp_path):
    huge = " ".join(["volcano magma crust eruption"] * 36_000)  # 1 MB, one line
    assert len(huge) > 1_000_000
    data = write(tmp_path / "c.txt", "\n".join([huge, *GOOD]) + "\n")
    assert main(train(tiny_llama, data, tmp_path / "run")) == 0
    corpus = record(tmp_path / "run")["training"]["corpus"]
    assert (corpus["texts"], corpus["truncated"]) == (5, 1)


def test_texts_with_an_empty_data_driven_target_are_skipped_and_counted(tiny_llama, tmp_path, capsys, caplog):
    data = write(tmp_path / "c.txt", "\n".join([*GOOD, "the and of", "!!! ??? ...", "- -- ---"]) + "\n")
    assert main(train(tiny_llama, data, tmp_path / "run", "--batch-size", "7", "--stop-words", "nltk")) == 0  # each once
    assert record(tmp_path / "run")["training"]["stages"]["data"]["empty_targets_skipped"] == 3
    assert "3 texts skipped: their data-driven target is empty" in caplog.text
    only_stop_words = write(tmp_path / "stop.txt", "the and of\n!!! ???\n")
    fails(train(tiny_llama, only_stop_words, tmp_path / "run2", "--stop-words", "nltk"), capsys, "every text's data-driven target is empty")
    assert not (tmp_path / "run2").exists()  # no half-started run left to refuse the next, corrected, try


def test_a_missing_data_file(tiny_llama, tmp_path, capsys):
    fails(train(tiny_llama, tmp_path / "nowhere.txt", tmp_path / "run"), capsys, "training data not found")


# ---------------------------------------------------------------- backbone and tokenizer
def test_a_model_path_that_does_not_exist(tmp_path, corpus_file, capsys):
    fails(train(tmp_path / "no-model", corpus_file, tmp_path / "run"), capsys, "model path does not exist")
    assert not (tmp_path / "run").exists()


def test_a_model_without_an_lm_head(tiny_llama, tmp_path, corpus_file, capsys):
    from transformers import AutoConfig, LlamaModel

    config = AutoConfig.from_pretrained(tiny_llama)
    config.tie_word_embeddings = False  # with tied embeddings the head would be the embedding matrix
    headless = tmp_path / "headless"
    LlamaModel(config).save_pretrained(headless)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{tiny_llama}/{name}", headless / name)
    fails(train(headless, corpus_file, tmp_path / "run"), capsys, "lm_head.weight")
    assert not (tmp_path / "run").exists()


def _with_tokenizer(tiny_llama, folder, **special):
    """A copy of the tiny model whose tokenizer has only the given special tokens."""
    from transformers import PreTrainedTokenizerFast

    shutil.copytree(tiny_llama, folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    base = PreTrainedTokenizerFast.from_pretrained(tiny_llama)
    PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, **special).save_pretrained(folder)
    return folder


def test_a_tokenizer_without_pad_token_pads_with_eos(tiny_llama, tmp_path, corpus_file):
    model = _with_tokenizer(tiny_llama, tmp_path / "no-pad", eos_token="<|endoftext|>")
    assert main(train(model, corpus_file, tmp_path / "run")) == 0
    assert (tmp_path / "run" / "stage1" / "adapter" / ADAPTER_FILE).is_file()


def test_a_tokenizer_without_pad_eos_or_unk_token(tiny_llama, tmp_path, corpus_file, capsys):
    model = _with_tokenizer(tiny_llama, tmp_path / "no-special")
    fails(train(model, corpus_file, tmp_path / "run"), capsys, "no pad, eos or unk token")
    assert not (tmp_path / "run").exists()


def test_cached_stage2_targets_from_another_tokenizer(tiny_llama, tmp_path, corpus_file, capsys):
    run = tmp_path / "run"
    argv = train(tiny_llama, corpus_file, run)
    argv[argv.index("--stages") + 1] = "both"
    assert main(argv) == 0
    for vocabulary in ({"vocab_size": 123, "vocab_sha1": "0"}, None):  # another vocabulary; no fingerprint
        payload = torch.load(run / "stage2" / "targets.pt", weights_only=False)
        payload["tokenizer"] = vocabulary
        torch.save(payload, run / "stage2" / "targets.pt")
        shutil.rmtree(run / "stage2" / "adapter", ignore_errors=True)
        (run / "text2token_config.json").unlink(missing_ok=True)
        fails(["train", "--resume", run], capsys, "was built with another tokenizer or vocabulary")


# ---------------------------------------------------------------- configuration
@pytest.mark.parametrize("extra, message", [
    (["--pooling", "max"], "unknown pooling 'max': choose one of mean, last"),
    (["--attention", "sideways"], "unknown attention 'sideways': choose one of causal, bidirectional"),
    (["--steps", "0"], "steps must be at least 1, got 0"),
    (["--stages", "data", "nonsense"], "unknown stage(s) ['nonsense']"),
], ids=["pooling", "attention", "steps-0", "stage"])
def test_bad_flags(tiny_llama, tmp_path, corpus_file, capsys, extra, message):
    fails(train(tiny_llama, corpus_file, tmp_path / "run", *extra), capsys, message)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text, message", [
    ("steps: 2\nlearning_rate: 0.1\n", "unknown key(s) learning_rate"),
    ("steps: two\n", "steps must be of type int, got 'two'"),
    ("batch_size: 4.5\n", "batch_size must be of type int"),
    ("- a\n- list\n", "expected a mapping"),
    ("steps: [1\n", "not valid YAML"),
], ids=["unknown-key", "wrong-type", "float-for-int", "not-a-mapping", "broken-yaml"])
def test_bad_config_files(tiny_llama, tmp_path, corpus_file, capsys, text, message):
    config = write(tmp_path / "recipe.yaml", text)
    fails(["train", "--config", config, "--model", tiny_llama, "--data", corpus_file, "--output", tmp_path / "run"],
          capsys, message)


def test_an_output_folder_holding_another_run_is_refused_unless_overwrite(tiny_llama, tmp_path, corpus_file,
                                                                          capsys):
    run = tmp_path / "run"
    assert main(train(tiny_llama, corpus_file, run)) == 0
    first = record(run)
    fails(train(tiny_llama, corpus_file, run, "--lr", "1e-3"), capsys, "already exists and is not empty")
    fails(train(tiny_llama, corpus_file, run), capsys, "already holds this run")
    assert record(run) == first  # untouched
    assert main(train(tiny_llama, corpus_file, run, "--lr", "1e-3", "--overwrite")) == 0
    assert record(run)["hyperparameters"]["lr"] == 1e-3


def test_an_output_that_is_a_file_and_a_damaged_run_folder(tiny_llama, tmp_path, corpus_file, capsys):
    taken = write(tmp_path / "taken.txt", "not a folder")
    fails(train(tiny_llama, corpus_file, taken), capsys, "is a file, not a run folder")
    run = tmp_path / "run"
    write(run.mkdir() or run / "train_config.json", "{ half a fi")
    fails(["train", "--resume", run], capsys, "cannot read")
