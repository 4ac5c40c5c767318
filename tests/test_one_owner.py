"""Constants, helpers and errors with one definition each (issue 16, "Smaller"); the old names still work."""

from __future__ import annotations

import pytest


def test_error_classes_live_in_one_module_and_the_old_paths_are_the_same_classes():
    from text2token import errors
    from text2token.analysis import errors as analysis_errors
    from text2token.evaluation import errors as eval_errors

    for module, names in ((eval_errors, ("EvalError", "EvalDataError", "UnknownTaskError")),
                          (analysis_errors, ("AnalysisError", "AnalysisDataError"))):
        for name in names:
            assert getattr(module, name) is getattr(errors, name)
            assert getattr(errors, name).__module__ == "text2token.errors"
    assert issubclass(errors.EvalDataError, errors.DataError) and issubclass(errors.EvalDataError, errors.EvalError)
    assert issubclass(errors.AnalysisDataError, errors.DataError)
    assert issubclass(errors.UnknownTaskError, ValueError) and issubclass(errors.AnalysisError, errors.Text2TokenError)


def test_eval_pooling_and_attention_choices_are_the_models_own():
    from text2token.backbone import ATTENTION_MODES
    from text2token.evaluation import runner
    from text2token.pooling import POOLINGS

    assert runner.POOLINGS is POOLINGS and runner.ATTENTIONS is ATTENTION_MODES


def test_one_cache_folder_definition(monkeypatch, tmp_path):
    from text2token.backbone import cache_dir, user_cache_dir
    from text2token.evaluation.runner import default_cache_dir

    for name in ("TEXT2TOKEN_CACHE", "TEXT2TOKEN_EVAL_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "text2token"
    assert cache_dir() == user_cache_dir() and default_cache_dir() == user_cache_dir() / "eval"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "text2token" / "eval"
    monkeypatch.setenv("TEXT2TOKEN_CACHE", str(tmp_path / "backbones"))
    monkeypatch.setenv("TEXT2TOKEN_EVAL_CACHE", str(tmp_path / "scores"))
    assert (cache_dir(), default_cache_dir()) == (tmp_path / "backbones", tmp_path / "scores")


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_encode_shards_are_the_distributed_blocks(shards):
    from text2token.distributed import block_ranges, block_span
    from text2token.encoding import shard_rows

    for rows in (0, 1, 5, 23, 24, 25):
        for chunk in (1, 4, 5):
            spans = [shard_rows(rows, chunk, i, shards) for i in range(shards)]
            assert spans == [block_span(rows, chunk, shards, i) for i in range(shards)]
            assert spans[0][0] == 0 and spans[-1][1] == rows
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, in order
            for i, (start, stop) in enumerate(spans):
                blocks = block_ranges(rows, chunk, shards, i)
                assert (start, stop) == ((blocks[0][0], blocks[-1][1]) if blocks else (start, start))


def test_dead_helpers_are_gone():
    from text2token import distributed, files
    from text2token.evaluation import localdata

    assert not hasattr(distributed, "barrier") and not hasattr(files, "atomic_save_npy")
    assert not hasattr(localdata, "TASK_TYPES")
