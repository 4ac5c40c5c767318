import math

import numpy as np
import torch

from text2token.objective import dense_kl_loss, kl_loss, pad_targets
from text2token.targets import DataDrivenTargets, background_distribution, model_derived_target, sparsify


def test_data_driven_target_by_hand(word_tokenizer):
    builder = DataDrivenTargets(word_tokenizer, stop_words="nltk")
    # non-word runs -> space; stop words (the, on, and, a) dropped case-insensitively; 'cat' twice counts once;
    # 'CAT' is another token; 'zebra' is unknown -> [UNK], a special token, dropped
    text = "The cat sat on the mat!!! And a cat, a CAT... zebra"
    assert builder.clean(text) == "cat sat mat cat CAT zebra"
    (ids, weights), = builder([text])
    assert ids.tolist() == [2, 3, 4, 5]
    assert np.allclose(weights, [0.25] * 4)


def test_data_driven_target_empty_for_stop_words_and_punctuation(word_tokenizer):
    (ids, weights), = DataDrivenTargets(word_tokenizer, stop_words="nltk")(["The... and, of!! ??"])
    assert len(ids) == 0 and len(weights) == 0


def test_data_driven_target_idf_weighting(word_tokenizer):
    corpus = ["cat sat", "cat mat", "cat dog"]
    builder = DataDrivenTargets.with_idf(word_tokenizer, corpus, stop_words="nltk")
    (ids, weights), = builder(["cat dog"])
    idf_cat, idf_dog = math.log(4 / 4) + 1, math.log(4 / 2) + 1
    assert ids.tolist() == [2, 6]
    assert np.allclose(weights, [idf_cat / (idf_cat + idf_dog), idf_dog / (idf_cat + idf_dog)])


def test_data_driven_excludes_whitespace_tokens(tiny_llama):
    from text2token.backbone import load_tokenizer

    tok = load_tokenizer(tiny_llama)
    builder = DataDrivenTargets(tok, stop_words="nltk")
    (ids, _), = builder(["Economists study inflation rates"])
    assert len(ids) > 0
    assert all(tok.decode([i]).strip() for i in ids)
    assert not set(ids.tolist()) & set(tok.all_special_ids)


def test_model_derived_target_by_hand():
    p = torch.tensor([0.5, 0.3, 0.1, 0.1])
    b = torch.tensor([0.25, 0.5, 0.125, 0.125])
    tau = 0.1
    r = [0.5 / (0.75 + 1e-8), 0.3 / (0.8 + 1e-8), 0.1 / (0.225 + 1e-8), 0.1 / (0.225 + 1e-8)]
    z = sum(math.exp(x / tau) for x in r)
    expected = [math.exp(x / tau) / z for x in r]
    q = model_derived_target(p, b, tau)
    assert torch.allclose(q, torch.tensor(expected), atol=1e-6)
    # tau = 1e-5: the sharp default puts all mass on the token most above background
    sharp = model_derived_target(p, b, 1e-5)
    assert torch.allclose(sharp, torch.tensor([1.0, 0.0, 0.0, 0.0]), atol=1e-6)
    # a token the teacher likes less than texts in general loses to one it likes more, even if less probable
    q2 = model_derived_target(torch.tensor([0.6, 0.4]), torch.tensor([0.9, 0.1]), 1e-5)
    assert q2.argmax() == 1


def test_background_is_softmax_of_mean_logits():
    logits = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], dtype=torch.float64)
    b = background_distribution(logits.sum(0), 2)
    assert torch.allclose(b, torch.full((3,), 1 / 3), atol=1e-7)


def test_sparse_targets_give_the_dense_loss():
    torch.manual_seed(0)
    teacher = torch.softmax(torch.randn(4, 500) * 3, -1)
    background = torch.softmax(torch.randn(500), -1)
    for tau in (1e-5, 1e-2, 0.05):
        dense = model_derived_target(teacher, background, tau)
        rows, kept = sparsify(dense, max_k=500, min_mass=1 - 1e-7)
        ids, weights = pad_targets(rows)
        logits = torch.randn(4, 500)
        assert kept >= 1 - 1e-7
        assert abs(kl_loss(logits, ids, weights).item() - dense_kl_loss(logits, dense).item()) < 1e-4


def test_kl_loss_matches_torch_and_is_zero_at_target():
    torch.manual_seed(1)
    logits = torch.randn(3, 10)
    q = torch.softmax(torch.randn(3, 10), -1)
    ref = torch.nn.functional.kl_div(torch.log_softmax(logits, -1), q, reduction="batchmean")
    assert abs(dense_kl_loss(logits, q).item() - ref.item()) < 1e-6
    ids, w = pad_targets([(np.arange(10), q[i].numpy()) for i in range(3)])
    assert abs(kl_loss(logits, ids, w).item() - ref.item()) < 1e-5
    assert abs(kl_loss(q.log(), ids, w).item()) < 1e-6
    # uniform target over 2 tokens with padding: KL = log(1/2) - mean log p
    ids, w = pad_targets([(np.array([0, 1]), np.array([0.5, 0.5], dtype=np.float32)), (np.array([2]), np.array([1.0], dtype=np.float32))])
    lp = torch.log_softmax(logits[:2], -1)
    expected = ((math.log(0.5) - 0.5 * (lp[0, 0] + lp[0, 1])) + (0 - lp[1, 2])) / 2
    assert abs(kl_loss(logits[:2], ids, w).item() - expected.item()) < 1e-5


def test_stored_sparse_targets_give_the_dense_loss_on_real_teacher_outputs(tiny_llama):
    """The stage-2 path end to end on a real (tiny) model: teacher_targets stores sparse rows; with the
    student's real logits, kl_loss on them equals dense_kl_loss on the full q_M to 1e-4."""
    from text2token.model import Text2TokenModel, embed, vocab_logits
    from text2token.targets import teacher_targets
    from text2token.targets.model_derived import mean_teacher_logits

    corpus = ["The cat sat on the mat and looked at the garden.", "Economists study inflation and interest rates.",
              "A quick brown fox jumps over the lazy dog.", "Photosynthesis converts light energy in plants.",
              "The orchestra played a symphony by Beethoven.", "Volcanoes erupt when magma rises.",
              "Football players trained on the field.", "The library holds thousands of books.",
              "Rain fell on the city while people hurried home.", "Computers process data using logic gates."] * 2
    teacher = Text2TokenModel.load(tiny_llama)
    texts = corpus[:10]
    background = background_distribution(mean_teacher_logits(teacher, corpus, 8, show_progress=False), len(corpus))
    # taus whose targets fit in target_max_k=64 tokens (a broad target, e.g. tau=0.1 over this tiny
    # vocabulary, is cut at 64 tokens and is then only an approximation, by design)
    for tau in (1e-5, 1e-3, 3e-3):
        sparse, kept = teacher_targets(teacher, texts, background, tau, batch_size=4, show_progress=False)
        assert kept >= 1 - 1e-6
        assert max(len(ids) for ids, _ in sparse) > (1 if tau > 1e-5 else 0)
        with torch.inference_mode():
            batch = teacher.text_encoder(texts)
            probs = torch.softmax(vocab_logits(teacher.model, embed(teacher.model, batch, "mean")), -1)
            dense = model_derived_target(probs, background, tau)
            torch.manual_seed(0)  # a student that is not the teacher: its logits perturbed
            student = vocab_logits(teacher.model, embed(teacher.model, batch, "mean")) + torch.randn(len(texts), probs.shape[1])
        ids, weights = pad_targets(sparse)
        assert abs(kl_loss(student, ids, weights).item() - dense_kl_loss(student, dense).item()) < 1e-4


def test_mix_targets_by_hand():
    from text2token.targets import mix_targets

    data = [(np.array([3, 7]), np.array([0.5, 0.5], dtype=np.float32))]
    teacher = [(np.array([7, 9]), np.array([0.75, 0.25], dtype=np.float32))]
    (ids, w), = mix_targets(data, teacher, 0.4)
    assert ids.tolist() == [3, 7, 9]
    np.testing.assert_allclose(w, [0.3, 0.3 + 0.3, 0.1], rtol=1e-6)
    (ids0, w0), = mix_targets(data, teacher, 0.0)  # share 0: the data-driven target exactly
    assert ids0.tolist() == [3, 7] and np.allclose(w0, [0.5, 0.5])
    (ids1, w1), = mix_targets(data, teacher, 1.0)
    assert ids1.tolist() == [7, 9] and np.allclose(w1, [0.75, 0.25])
    import pytest

    with pytest.raises(ValueError, match="1 data-driven targets but 2"):
        mix_targets(data, teacher * 2, 0.5)
