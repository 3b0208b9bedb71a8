"""The loss and its corrections, checked against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from aisle.training.loss import (
    accidental_hit_mask,
    in_batch_softmax_loss,
    self_adversarial_weights,
    symmetric_in_batch_softmax_loss,
)


def test_accidental_hits_are_masked() -> None:
    # Rows 0 and 1 share a product (key 7); rows 0 and 2 share a query text (key 1).
    mask = accidental_hit_mask(torch.tensor([7, 7, 9]), torch.tensor([1, 2, 1]))
    expected = torch.tensor(
        [
            [False, False, False],  # 1: same product, 2: same query -> no negatives
            [False, False, True],
            # 0: same query; 1: product 7, a positive of query 1 (row 0). Until ad02323 the
            # mask counted column 1 a negative here, pushing query 1 away from its product 7.
            [False, False, False],
        ]
    )
    assert torch.equal(mask, expected)


def test_weights_follow_the_softmax_of_alpha_times_score() -> None:
    scores = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.8, 0.4], [0.3, 0.3, 0.7]])
    negatives = ~torch.eye(3, dtype=torch.bool)
    # alpha = ln 2 / 0.4 makes exp(alpha * 0.5) / exp(alpha * 0.1) = 2: weights 2/3 and 1/3.
    w = self_adversarial_weights(scores, negatives, alpha=math.log(2) / 0.4)
    torch.testing.assert_close(w[0], torch.tensor([0.0, 2 / 3, 1 / 3]))
    # Row 1: 0.2 vs 0.4, ratio exp(alpha * 0.2) = sqrt(2): weights 1/(1+√2), √2/(1+√2).
    r = math.sqrt(2)
    torch.testing.assert_close(w[1], torch.tensor([1 / (1 + r), 0.0, r / (1 + r)]))
    # Row 2: equal scores, equal weights.
    torch.testing.assert_close(w[2], torch.tensor([0.5, 0.5, 0.0]))
    torch.testing.assert_close(w.sum(dim=1), torch.ones(3))


def test_weights_sum_to_one_over_unmasked_negatives_and_are_zero_elsewhere() -> None:
    scores = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.8, 0.4], [0.3, 0.3, 0.7]])
    mask = accidental_hit_mask(torch.tensor([7, 7, 9]), torch.tensor([1, 2, 1]))
    w = self_adversarial_weights(scores, mask, alpha=3.0)
    assert torch.all(w[~mask] == 0)
    # rows 0 and 2 have none (row 2's only other column is product 7, query 1's positive)
    torch.testing.assert_close(w.sum(dim=1), torch.tensor([0.0, 1.0, 0.0]))


def test_weights_carry_no_gradient() -> None:
    scores = torch.tensor([[0.9, 0.5], [0.2, 0.8]], requires_grad=True)
    w = self_adversarial_weights(scores, ~torch.eye(2, dtype=torch.bool), alpha=2.0)
    assert not w.requires_grad


def test_loss_on_a_2x3_batch_worked_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]])
    negatives = ~torch.eye(2, dtype=torch.bool)
    # scores = [[1, 0.6], [0, 0.8]], scale = 1 / 0.5 = 2.
    # row 0: -log(e^2 / (e^2 + e^1.2)) = log(1 + e^-0.8) = 0.371101
    # row 1: -log(e^1.6 / (e^1.6 + e^0)) = log(1 + e^-1.6) = 0.183901
    expected = (math.log(1 + math.exp(-0.8)) + math.log(1 + math.exp(-1.6))) / 2  # 0.277501
    for alpha in (0.0, 5.0):  # one negative per row: its weight is 1 whatever alpha is
        loss = in_batch_softmax_loss(q, p, negatives, temperature=0.5, alpha=alpha)
        assert abs(float(loss) - expected) < 1e-6


def test_a_masked_accidental_hit_does_not_count_as_a_negative() -> None:
    q = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]])
    none = torch.zeros(2, 2, dtype=torch.bool)
    # With no negatives each row's softmax holds only its positive: loss 0.
    assert float(in_batch_softmax_loss(q, p, none, temperature=0.5)) == 0.0


def _random_batch(b: int = 6, d: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(b, d, generator=g), dim=1)
    p = F.normalize(torch.randn(b, d, generator=g), dim=1)
    mask = accidental_hit_mask(torch.tensor([0, 1, 2, 2, 3, 4]), torch.tensor([0, 1, 2, 3, 4, 0]))
    return q, p, mask


def test_alpha_zero_is_plain_in_batch_softmax() -> None:
    q, p, mask = _random_batch()
    logits = (q @ p.T / 0.05).masked_fill(~(mask | torch.eye(6, dtype=torch.bool)), float("-inf"))
    plain = F.cross_entropy(logits, torch.arange(6))
    torch.testing.assert_close(in_batch_softmax_loss(q, p, mask, 0.05, alpha=0.0), plain)


def test_loss_matches_the_docstring_formula_for_alpha_above_zero() -> None:
    q, p, mask = _random_batch()
    s = q @ p.T
    total = 0.0
    for i in range(6):
        neg = [j for j in range(6) if mask[i, j]]
        z = sum(math.exp(2.0 * float(s[i, j])) for j in neg)
        w = [math.exp(2.0 * float(s[i, j])) / z for j in neg]
        denom = math.exp(float(s[i, i]) / 0.05) + len(neg) * sum(
            wj * math.exp(float(s[i, j]) / 0.05) for wj, j in zip(w, neg, strict=True)
        )
        total += -math.log(math.exp(float(s[i, i]) / 0.05) / denom)
    loss = in_batch_softmax_loss(q, p, mask, 0.05, alpha=2.0)
    assert abs(float(loss) - total / 6) < 1e-4


def test_alpha_changes_the_gradient_through_the_weights_only_as_constants() -> None:
    q, p, mask = _random_batch()
    grads = []
    for alpha in (0.0, 8.0):
        pp = p.clone().requires_grad_(True)
        in_batch_softmax_loss(q, pp, mask, 0.05, alpha).backward()
        assert pp.grad is not None
        grads.append(pp.grad.norm(dim=1))
    assert not torch.allclose(grads[0], grads[1])


def test_hard_negative_columns_are_negatives_for_every_row_but_their_own_product() -> None:
    # Two rows (queries 1 and 1, i.e. the same query text), products 7 and 8; two hard-negative
    # columns: product 9 and product 8 (row 1's positive, judged poor for another query).
    mask = accidental_hit_mask(torch.tensor([7, 8, 9, 8]), torch.tensor([1, 1]))
    expected = torch.tensor(
        [
            # col 1: same query text; col 2: a hard negative; col 3 carries product 8, a
            # positive of row 0's query text (through row 1). This cell read True until
            # before ad02323: the mask compared a hard column with row 0's own product only.
            [False, False, True, False],
            [False, False, True, False],  # col 3 carries row 1's own positive product
        ]
    )
    assert torch.equal(mask, expected)


def test_a_product_that_is_a_positive_of_the_rows_query_text_is_never_its_negative() -> None:
    # Rows: 0 = (query 1, product 7), 1 = (query 1, product 8), 2 = (query 2, product 8).
    # Hard-negative columns: 3 = product 9, 4 = product 7 (judged poor for query 2, brought by
    # row 2). Query 1's positives here are products 7 and 8; query 2's, product 8.
    mask = accidental_hit_mask(torch.tensor([7, 8, 8, 9, 7]), torch.tensor([1, 1, 2]))
    expected = torch.tensor(
        [
            # col 1: same query text; col 2: product 8, query 1's (row 1); col 4: its own
            [False, False, False, True, False],
            # col 0: same query text; col 2: same product; col 4: product 7, query 1's (row 0)
            [False, False, False, True, False],
            # col 0 (query 1, product 7) is a true negative for query 2; col 1: same product
            [True, False, False, True, True],
        ]
    )
    assert torch.equal(mask, expected)
    # The product -> query direction reads the transpose: product 7 (col 0) against query 2
    # (row 2) is the pair (query 2, product 7), a negative; product 8 against query 1 is not.
    assert torch.equal(mask[:, :3].T[0], torch.tensor([False, False, True]))
    assert torch.equal(mask[:, :3].T[2], torch.tensor([False, False, False]))


def test_loss_with_a_same_query_positive_as_hard_negative_worked_by_hand() -> None:
    # Rows (query 1, product 0), (query 1, product 1), (query 2, product 2); row 2 brings
    # product 1 as a hard negative (column 3). Product 1 is query 1's positive, so column 3
    # is no negative for row 0, whose query text is query 1.
    q = torch.eye(3)
    p1 = [0.6, 0.8, 0.0]
    p = torch.tensor([[1.0, 0.0, 0.0], p1, [0.0, 0.0, 1.0], p1])
    negatives = accidental_hit_mask(torch.tensor([0, 1, 2, 1]), torch.tensor([1, 1, 2]))
    # scores = [[1, .6, 0, .6], [0, .8, 0, .8], [0, 0, 1, 0]], scale 2; every row's negatives
    # score alike, so the weights are uniform whatever alpha is.
    # row 0: negatives {2}:       -log(e^2 / (e^2 + e^0))     = log(1 + e^-2)
    # row 1: negatives {2}:       -log(e^1.6 / (e^1.6 + e^0)) = log(1 + e^-1.6)
    # row 2: negatives {0, 1, 3}: -log(e^2 / (e^2 + 3 e^0))   = log(1 + 3 e^-2)
    # (Counting column 3 for row 0 would make its term log(1 + e^-2 + e^-0.8).)
    expected = (
        math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1.6)) + math.log(1 + 3 * math.exp(-2))
    ) / 3
    for alpha in (0.0, 5.0):
        loss = in_batch_softmax_loss(q, p, negatives, temperature=0.5, alpha=alpha)
        assert abs(float(loss) - expected) < 1e-6


def test_loss_with_a_hard_negative_column_worked_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    p = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.6, 0.8, 0.0]])  # col 2: hard negative
    negatives = accidental_hit_mask(torch.tensor([0, 1, 2]), torch.tensor([0, 1]))
    # scores = [[1, 0, 0.6], [0, 1, 0.8]], scale 2, alpha 0 (weights uniform, |N_i| = 2):
    # row 0: -log(e^2 / (e^2 + e^0 + e^1.2)) ; row 1: -log(e^2 / (e^2 + e^0 + e^1.6))
    r0 = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(1.2)))
    r1 = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(1.6)))
    loss = in_batch_softmax_loss(q, p, negatives, temperature=0.5, alpha=0.0)
    assert abs(float(loss) - (r0 + r1) / 2) < 1e-6


def test_symmetric_loss_averages_both_directions() -> None:
    q, p, mask = _random_batch()
    forward = in_batch_softmax_loss(q, p, mask, 0.05, 2.0)
    backward = in_batch_softmax_loss(p, q, mask.T, 0.05, 2.0)
    both = symmetric_in_batch_softmax_loss(q, p, mask, 0.05, 2.0)
    torch.testing.assert_close(both, (forward + backward) / 2)
    # A hard-negative column joins the query -> product direction only.
    extra = F.normalize(torch.randn(1, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    p_ext = torch.cat([p, extra])
    mask_ext = torch.cat([mask, torch.ones(6, 1, dtype=torch.bool)], dim=1)
    with_hard = symmetric_in_batch_softmax_loss(q, p_ext, mask_ext, 0.05, 2.0)
    torch.testing.assert_close(
        with_hard, (in_batch_softmax_loss(q, p_ext, mask_ext, 0.05, 2.0) + backward) / 2
    )


def test_distillation_loss_is_the_kl_of_the_teacher_list_worked_by_hand() -> None:
    from aisle.training.loss import distillation_loss

    q = torch.tensor([[1.0, 0.0]])
    c = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # cosines 1 and 0
    # Temperatures of 1: student log-softmax of [1, 0]; a teacher of [1, 0] is the same list.
    same = distillation_loss(q, c, torch.tensor([[1.0, 0.0]]), 1.0, 1.0)
    torch.testing.assert_close(same, torch.tensor(0.0))
    # A teacher of [0, 0] is uniform: KL = sum 0.5 * (log 0.5 - log s_m).
    s = torch.tensor([math.e, 1.0]) / (math.e + 1)
    expected = 0.5 * (math.log(0.5) - math.log(s[0])) + 0.5 * (math.log(0.5) - math.log(s[1]))
    teacher = torch.tensor([[0.0, 0.0]], requires_grad=True)
    qq = q.clone().requires_grad_(True)
    loss = distillation_loss(qq, c, teacher, 1.0, 1.0)
    torch.testing.assert_close(loss, torch.tensor(float(expected)))
    loss.backward()
    # The teacher is a constant; the student's query moves.
    assert teacher.grad is None and qq.grad is not None and qq.grad.abs().sum() > 0
    # Rows are averaged: two copies of a row give that row's loss.
    two = distillation_loss(q.repeat(2, 1), c.repeat(2, 1, 1), torch.zeros(2, 2), 1.0, 1.0)
    torch.testing.assert_close(two, torch.tensor(float(expected)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cpu_mask_with_cuda_embeddings_gives_the_cpu_loss() -> None:
    # accidental_hit_mask is built from batch keys on the CPU; the loss moves it.
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    p = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    mask = accidental_hit_mask(torch.tensor([0, 1, 2, 1, 7, 8]), torch.tensor([0, 1, 2, 3]))
    for fn in (in_batch_softmax_loss, symmetric_in_batch_softmax_loss):
        on_cpu = fn(q, p, mask, 0.05, 5.0)
        on_gpu = fn(q.cuda(), p.cuda(), mask, 0.05, 5.0)
        assert on_gpu.device.type == "cuda"
        torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-5, atol=1e-6)
