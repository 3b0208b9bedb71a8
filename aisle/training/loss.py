"""In-batch softmax with accidental-hit masking and self-adversarial negative re-weighting.

For a batch of B (query, positive product) pairs with L2-normalised embeddings q_i, p_j:

    s_ij   = q_i · p_j                                   (cosine, since both are unit vectors)
    N_i    = { j != i : query_j != query_i and pid_j != pid_k for every row k with
             query_k == query_i }   (negatives; the rest are "accidental hits", masked out)
    w_ij   = exp(alpha * sg(s_ij)) / sum_{k in N_i} exp(alpha * sg(s_ik))   for j in N_i, else 0
    loss_i = -log( exp(s_ii / tau) /
                   (exp(s_ii / tau) + |N_i| * sum_{j in N_i} w_ij * exp(s_ij / tau)) )
    loss   = mean_i loss_i

``sg`` is stop-gradient: the weights are constants to the optimiser. ``scale = 1 / tau``
(temperature tau, 0.05 by default). ``alpha = 0`` makes every w_ij = 1/|N_i|, which is plain
in-batch softmax (Henderson et al., 2017); alpha > 0 up-weights the negatives the model already
scores high, the self-adversarial sampling of Sun et al., "RotatE", ICLR 2019, as used for
two-tower retrieval by Xie et al., "Embedding based retrieval in e-commerce search: ITEMS",
SIGIR eCom 2022. The |N_i| factor keeps the negatives' total mass equal to plain softmax's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def accidental_hit_mask(product_keys: torch.Tensor, query_keys: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` bool, True where column j is a valid negative for row i.

    ``product_keys`` ``(C,)`` holds one key per product column: the B rows' positives first,
    then any C - B hard negatives; ``query_keys`` ``(B,)`` one per row. Column j is not a
    negative for row i if it carries a product that is a positive of row i's query text in
    this batch (row i's own, j == i included, or that of another row k with
    ``query_keys[k] == query_keys[i]``), or, for a positive column, if it comes from the same
    query text (``query_keys[j] == query_keys[i]``). A hard-negative column was judged poor
    for the query that brought it, so it is a negative for every row (that query's included)
    unless the row's query text has that very product as a positive in the batch.

    Entry (i, j) speaks of the pair (query i, product j), so the transpose of the square part
    masks the product -> query direction (``symmetric_in_batch_softmax_loss``).
    """
    b = query_keys.shape[0]
    same_query = query_keys[:, None] == query_keys[None, :]  # (B, B)
    same_product = product_keys[:b, None] == product_keys[None, :]  # (B, C): row k's vs col j
    # (i, j): some row k with row i's query text has column j's product as its positive; the
    # diagonal of same_query (k = i) brings in row i's own product, so j == i is masked.
    hit = (same_query.float() @ same_product.float()) > 0  # (B, C)
    hit[:, :b] |= same_query
    return ~hit


def self_adversarial_weights(
    scores: torch.Tensor, negatives: torch.Tensor, alpha: float
) -> torch.Tensor:
    """``w_ij = softmax_{j in N_i}(alpha * s_ij)`` on detached scores; 0 off ``negatives``.

    A row with no valid negatives gets all-zero weights.
    """
    logits = (alpha * scores.detach()).masked_fill(~negatives, float("-inf"))  # (B, C)
    weights = torch.softmax(logits, dim=1)
    return torch.nan_to_num(weights, nan=0.0)  # rows with no negatives: softmax of all -inf


def in_batch_softmax_loss(
    q: torch.Tensor,
    p: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float = 0.05,
    alpha: float = 0.0,
) -> torch.Tensor:
    """Mean over rows of the loss in the module docstring.

    ``q`` ``(B, D)`` and ``p`` ``(C, D)`` unit rows, C >= B: row i's positive is ``p[i]``;
    columns past B are extra (hard) negatives. ``negatives`` ``(B, C)``, on any device (it is
    moved to the embeddings').
    """
    negatives = negatives.to(q.device)
    scale = 1.0 / temperature
    scores = q @ p.T  # (B, C) cosine similarities
    weights = self_adversarial_weights(scores, negatives, alpha)  # (B, C), rows sum to 1 or 0
    n_neg = negatives.sum(dim=1, keepdim=True).clamp(min=1)  # (B, 1)
    # log(|N_i| w_ij) added to the logit multiplies exp(s_ij / tau) by |N_i| w_ij.
    log_w = torch.log(weights * n_neg).masked_fill(~negatives, float("-inf"))  # (B, C)
    logits = scale * scores + log_w  # (B, C), -inf off the negatives
    diag = torch.arange(q.shape[0], device=q.device)
    logits[diag, diag] = scale * scores[diag, diag]  # the positive keeps its plain logit
    return F.cross_entropy(logits, diag)


def symmetric_in_batch_softmax_loss(
    q: torch.Tensor,
    p: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float = 0.05,
    alpha: float = 0.0,
) -> torch.Tensor:
    """Mean of the query->product loss and the product->query loss over the same batch.

    The second direction ranks the B queries for each positive product (hard-negative columns
    have no query, so they take part in the first direction only); entry (i, j) of the
    accidental-hit mask speaks of the pair (query i, product j), so its transpose masks the
    same pairs seen from the products' side.
    """
    b = q.shape[0]
    forward = in_batch_softmax_loss(q, p, negatives, temperature, alpha)
    backward = in_batch_softmax_loss(p[:b], q, negatives[:, :b].T, temperature, alpha)
    return (forward + backward) / 2


def distillation_loss(
    q: torch.Tensor,
    c: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float = 0.05,
    teacher_temperature: float = 0.1,
) -> torch.Tensor:
    """Listwise distillation: KL(teacher || student) over each query's own candidate list.

    ``q`` ``(R, D)`` unit query rows; ``c`` ``(R, M, D)`` unit rows of each query's M
    candidates; ``teacher`` ``(R, M)`` the teacher's scores of them. With
    ``t_i = softmax_m(teacher_im / teacher_temperature)`` and
    ``s_i = log_softmax_m(q_i · c_im / temperature)``:

        loss = mean_i sum_m t_im * (log t_im - s_im)

    The teacher is a constant (no gradient reaches it); the student's logits use the same
    ``1 / temperature`` scale as the in-batch loss, so both speak of the same cosines.
    """
    student = torch.einsum("rd,rmd->rm", q, c) / temperature  # (R, M)
    target = torch.softmax(teacher.detach() / teacher_temperature, dim=1)  # (R, M)
    log_student = torch.log_softmax(student, dim=1)
    return F.kl_div(log_student, target, reduction="batchmean")
