"""
distil.py — the DistIL objective and its baselines, as pure functions on tensors.

A student π_θ samples y = (y_1..y_T) for a prompt x; a teacher π_T (e.g. the same model with the
feedback f in its context) gives a next-token distribution at every state s_t = (x, y_<t) *the
student visited*. DistIL (arXiv 2606.05152) minimises the forward cross-entropy from the teacher
summed over the student's own rollout, a distributional DAgger:

    L(θ) = E_{y~π_θ}[ Σ_t H×_t ],   H×_t = H×(sg π_T(·|s_t, f), π_θ(·|s_t)),   H×(p, q) = H(p) + KL(p‖q)
    ∇L   = E[ Σ_t ∇H×_t ] + E[ Σ_t ∇log π_θ(y_t|s_t) · (Σ_{t'>t} C_t' − b_t) ]   (local + future credit)

C = H× (future_cost="ce", the paper's) or KL(π_T‖π_θ) ("kl"); the future sum is over strictly later
steps (H×_t depends on s_t, not y_t, with f held fixed for the step); b_t does not depend on y_t
("loo": the other rollouts of the prompt). Without the future term: the token-level "CE" ablation;
future_weight=λ takes local + λ·future (the two estimates unchanged, only their mix).
The end (theory_checks T7): ending is a move to a state with no future cost, so the literal sum
pays the student to stop. stop="horizon" (default) minimises instead, on a fixed horizon H,

    L_H(θ) = E_y[ Σ_t C_t + (H − |y| + 1)·σ(y) ],   σ = −log π_T(y_|y| | s_|y|)   (the surprise at the end)

σ does not depend on θ, so it joins every cost-to-go; "surprise" prices the end once, "literal" is
the paper's sum. states= restricts the costs to a set S decided by y_<t (the expert's support), and
leaving S is an end (theory_checks T8): with e the last state on S (the exit, or the end),
L_S = E[Σ_t 1[s_t ∈ S] C_t + (H − e + 1)·σ_e], σ_e the teacher's surprise at y_e, or at an exit the
surprise of the expert whose support S is (exit_surprise: a fallible teacher's would let the student
choose the mistakes it finds plausible). Baselines on the same rollouts: SDPO Σ_t KL(π_θ‖sg π_T);
OPSD Σ_t JSD_β (TRL GKD convention); GRPO −Σ_t Â log π_θ(y_t); offline −Σ_t log π_θ on teacher
samples (behaviour cloning).
Estimators of H×_t: the full teacher distribution; top-k (+ a tail bucket, or renormalised); sampled
−(1/K) Σ_k log π_θ(a_k), a_k ~ π_T (a black-box teacher).

Conventions: loss = −objective. Shapes B rollouts, T positions, V vocabulary; student_logits[b, t]
predict tokens[b, t], teacher_logits[b, t] are the teacher's at the same state; mask is 1 on response
tokens, and masked positions reach no loss or gradient. Logits may be raw or log-probabilities; a
−inf logit is probability 0 (0·log 0 = 0). Arguments follow the math: forward_ce(teacher, student),
reverse_kl(student, teacher). Reductions: "sum" over positions, mean over rollouts (default);
"token_mean" (SDPO/TRL); "none" (B,). The value of a surrogate is the Monte-Carlo estimate of its
objective (score terms are written w·(log π − sg log π), zero in value).

Run `python -m pytest -q tests/test_distil.py`: every surrogate's expected gradient equals the exact
gradient of its objective, by enumerating all rollouts of a tabular model (variable length too).
"""

import math

import torch
import torch.nn.functional as F

REDUCTIONS = ("sum", "token_mean", "none")
FUTURE_COSTS = ("ce", "kl")
BASELINES = ("none", "loo")
# uniform mass an expert with zeros in its distribution (a task's oracle) is mixed with, (1 − ε) p + ε/V:
# reverse KL to it stays finite, forward CE moves by ≤ ε log V, a token it rules out costs log(V/ε)
ORACLE_EPS = 1e-3
STOP_RULES = (
    "horizon",
    "surprise",
    "literal",
)  # how the end of a response is priced; the first is the default

# -----------------------------------------------------------------------------
# Per-position divergences: (..., V) -> (...)


def log_probs(logits):
    """log_softmax over the last axis, in fp32 at least (bf16 log-probs lose ~2 digits)."""
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    return F.log_softmax(logits, dim=-1)


def _kl(logp, logq):
    """Σ_a p(a) (log p(a) − log q(a)) over the last axis, with 0·log 0 = 0 (a −inf logit is a token of
    probability exactly 0, as a sparse oracle or a top-k teacher gives)."""
    p = logp.exp()
    return (p * torch.where(p > 0, logp - logq, 0.0)).sum(-1)  # mask inside: grad of 0·(−inf) is NaN


def entropy(logits):
    """H(p) = −Σ_a p(a) log p(a)."""
    logp = log_probs(logits)
    p = logp.exp()
    return -(p * torch.where(p > 0, logp, 0.0)).sum(-1)


def forward_ce(teacher_logits, student_logits):
    """H×(π_T, π_θ) = −Σ_a π_T(a) log π_θ(a): the DistIL per-position cost."""
    p, logq = log_probs(teacher_logits).exp(), log_probs(student_logits)
    return -(p * torch.where(p > 0, logq, 0.0)).sum(-1)


def forward_kl(teacher_logits, student_logits):
    """KL(π_T ‖ π_θ) = Σ_a π_T(a) (log π_T(a) − log π_θ(a)) = H×(π_T, π_θ) − H(π_T)."""
    return _kl(log_probs(teacher_logits), log_probs(student_logits))


def reverse_kl(student_logits, teacher_logits):
    """KL(π_θ ‖ π_T) = Σ_a π_θ(a) (log π_θ(a) − log π_T(a)): the SDPO per-position cost."""
    return _kl(log_probs(student_logits), log_probs(teacher_logits))


def jsd(teacher_logits, student_logits, beta=0.5):
    """Generalised Jensen–Shannon, TRL GKD / OPSD convention:
    JSD_β = β KL(π_T ‖ M) + (1−β) KL(π_θ ‖ M),  M = β π_T + (1−β) π_θ.
    JSD_β/β → KL(π_T‖π_θ) as β→0 and JSD_β/(1−β) → KL(π_θ‖π_T) as β→1; like TRL we return those
    KLs at β = 0 and β = 1 exactly (where the formula itself is identically 0)."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"jsd: beta must lie in [0, 1], got {beta}")
    if beta == 0.0:
        return forward_kl(teacher_logits, student_logits)
    if beta == 1.0:
        return reverse_kl(student_logits, teacher_logits)
    logp_t, logp_s = log_probs(teacher_logits), log_probs(student_logits)
    log_m = torch.logsumexp(torch.stack([logp_t + math.log(beta), logp_s + math.log1p(-beta)]), 0)
    return beta * _kl(logp_t, log_m) + (1.0 - beta) * _kl(logp_s, log_m)


def token_logprobs(logits, tokens):
    """log π(tokens): logits (..., V), tokens (...) int64 -> (...)."""
    return log_probs(logits).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def topk_buckets(teacher_logits, student_logits, k, tail=True, index_by="teacher"):
    """Restrict both distributions to k tokens chosen by `index_by` ("teacher": the teacher's top-k,
    as a black-box teacher server returns them; "student": the student's top-k, as SDPO does).
    tail=True appends one bucket holding the remaining mass on each side, so the result is a
    coarse-graining of the full distributions (any f-divergence, and H×, can only go down);
    tail=False renormalises both over the k tokens. Returns two log-prob tensors (..., k(+1))."""
    if index_by not in ("teacher", "student"):
        raise ValueError(f"index_by must be 'teacher' or 'student', got {index_by!r}")
    logp_t, logp_s = log_probs(teacher_logits), log_probs(student_logits)
    V = logp_t.shape[-1]
    if not 1 <= k <= V:
        raise ValueError(f"topk must be in [1, V={V}], got {k}")
    idx = (logp_t if index_by == "teacher" else logp_s).topk(k, dim=-1).indices
    top_t, top_s = logp_t.gather(-1, idx), logp_s.gather(-1, idx)
    if not tail:
        return log_probs(top_t), log_probs(top_s)
    if k == V:  # the tail is empty: the buckets are the full distributions
        return logp_t, logp_s
    # log of the mass outside the k tokens, summed directly (1 − Σ top would cancel badly)
    rest_t = logp_t.scatter(-1, idx, -math.inf).logsumexp(-1, keepdim=True)
    rest_s = logp_s.scatter(-1, idx, -math.inf).logsumexp(-1, keepdim=True)
    return torch.cat([top_t, rest_t], -1), torch.cat([top_s, rest_s], -1)


def sampled_forward_ce(teacher_tokens, student_logits):
    """Black-box estimate of H×(π_T, π_θ): −(1/K) Σ_k log π_θ(a_k), a_k ~ π_T (unbiased, and so is
    its gradient). teacher_tokens (..., K) int64, student_logits (..., V) -> (...)."""
    return -log_probs(student_logits).gather(-1, teacher_tokens).mean(-1)


# -----------------------------------------------------------------------------
# Input checks and reductions shared by the losses


def _check(
    student_logits,
    tokens,
    mask,
    teacher_logits=None,
    teacher_tokens=None,
    rewards=None,
    group_size=1,
    reduction="sum",
):
    """Raise ValueError naming what is wrong and what is accepted. Returns mask as a bool tensor."""
    if student_logits.dim() != 3:
        raise ValueError(f"student_logits must be (B, T, V), got shape {tuple(student_logits.shape)}")
    B, T, V = student_logits.shape
    if mask.shape != (B, T):
        raise ValueError(
            f"mask must be (B, T) = {(B, T)} like student_logits[..., 0], got {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool and not ((mask == 0) | (mask == 1)).all():
        raise ValueError("mask must hold only 0 and 1 (1 on response tokens)")
    on = mask.bool()
    if tokens is not None:
        if tokens.shape != (B, T):
            raise ValueError(f"tokens must be (B, T) = {(B, T)}, got {tuple(tokens.shape)}")
        if tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tokens must be integer ids, got dtype {tokens.dtype}")
        bad = on & ((tokens < 0) | (tokens >= V))
        if bad.any():
            raise ValueError(
                f"token ids must be in [0, V={V}) where mask is 1; got {tokens[bad][:5].tolist()}"
            )
    if teacher_logits is not None:
        if teacher_logits.shape != student_logits.shape:
            raise ValueError(
                f"teacher_logits {tuple(teacher_logits.shape)} must match student_logits "
                f"{(B, T, V)} (a different vocabulary size cannot be distilled token by token)"
            )
        lse = teacher_logits.detach().float().logsumexp(-1)  # NaN, +inf or an all −inf row: not finite
        if (on & ~torch.isfinite(lse)).any():
            raise ValueError(
                "teacher_logits must be finite or -inf (probability 0) where mask is 1, "
                "with at least one finite entry per position; got NaN, +inf or an all -inf row"
            )
    if teacher_tokens is not None:
        if teacher_tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"teacher_tokens must be integer ids, got dtype {teacher_tokens.dtype}")
        if teacher_tokens.dim() != 3 or teacher_tokens.shape[:2] != (B, T):
            raise ValueError(
                f"teacher_tokens must be (B, T, K) with (B, T) = {(B, T)}, got {tuple(teacher_tokens.shape)}"
            )
        bad = on.unsqueeze(-1) & ((teacher_tokens < 0) | (teacher_tokens >= V))
        if bad.any():
            raise ValueError(
                f"teacher_tokens must be in [0, V={V}) where mask is 1; got "
                f"{teacher_tokens[bad][:5].tolist()}"
            )
    if rewards is not None and rewards.shape != (B,):
        raise ValueError(f"rewards must be (B,) = ({B},), got {tuple(rewards.shape)}")
    if group_size < 1 or B % group_size != 0:
        raise ValueError(
            f"group_size={group_size} must be >= 1 and divide the batch B={B} "
            "(rollouts of one prompt are consecutive)"
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return on


def _clean(x, on, fill=0):
    """Overwrite masked positions so that whatever they hold (NaN, pad ids) cannot reach a gradient."""
    on = on.view(*on.shape, *([1] * (x.dim() - on.dim())))
    return torch.where(on, x, torch.zeros((), dtype=x.dtype, device=x.device) + fill)


def _reduce(per_position, on, reduction):
    """per_position (B, T), already zero where masked -> scalar (or (B,) for "none")."""
    per_rollout = per_position.sum(-1)
    if reduction == "none":
        return per_rollout
    if reduction == "token_mean":
        return per_rollout.sum() / on.sum().clamp_min(1)
    return per_rollout.mean()


def _score(logp, weight):
    """Score-function term with value 0 and gradient weight·∇log π (weight is not differentiated)."""
    return weight.detach() * (logp - logp.detach())


# -----------------------------------------------------------------------------
# DistIL


def surprise_at(teacher_logits, teacher_tokens, tokens, at):
    """σ = −log π_T(y_t | s_t) where `at` (B, T) is set (the end, or the exit from S), 0 elsewhere. From K
    teacher samples a_k: Σ_{k≤K} (1/k) Π_{j≤k} 1[a_j ≠ y_t], unbiased for Σ_{k≤K} (1−p)^k/k, the series
    −log p = Σ_k (1−p)^k/k cut at K terms (at most H_K = Σ_{k≤K} 1/k nats: more samples, a firmer price)."""
    if teacher_logits is not None:
        sigma = -token_logprobs(_clean(teacher_logits.detach(), at), tokens)
        if (at & ~torch.isfinite(sigma)).any():
            raise ValueError(
                f"stop={STOP_RULES[:2]} price the end (and the exit from states) by the teacher's "
                "surprise, and the teacher gives probability 0 to a token priced so: an infinite "
                "price; smooth the teacher (mix in ε/V) or use stop='literal'"
            )
    else:
        miss = (_clean(teacher_tokens, at) != tokens.unsqueeze(-1)).cumprod(-1)  # all of a_1..a_k ≠ y
        sigma = (miss / torch.arange(1, miss.shape[-1] + 1, device=miss.device)).sum(-1)
    return torch.where(at, sigma, 0.0)


def last_position(on):
    """(B, T) bool: the last set position of each row of `on` (a block), nowhere on an empty row."""
    return on & ~F.pad(on[:, 1:], (0, 1), value=False)


def distil_loss(
    student_logits,
    tokens,
    mask,
    teacher_logits=None,
    teacher_tokens=None,
    sequence_level=True,
    future_cost="ce",
    baseline="none",
    group_size=1,
    topk=None,
    tail=True,
    reduction="sum",
    stop=STOP_RULES[0],
    horizon=None,
    states=None,
    price_exit=True,
    exit_surprise=None,
    future_weight=1.0,
):
    """DistIL surrogate loss on a batch of the student's own rollouts.

    student_logits (B, T, V), tokens (B, T), mask (B, T); exactly one teacher:
      teacher_logits (B, T, V)  full distribution (or its top-k if topk is set), or
      teacher_tokens (B, T, K)  K samples from the teacher at each state (black-box estimator).
    sequence_level  add the future-credit term Σ_t ∇log π(y_t|s_t)·(Σ_{t'>t} C_t' − b_t);
                    False gives the token-level (local) variant.
    future_cost     "ce": C = H× (the paper's L); "kl": C = KL(π_T‖π_θ) (needs teacher_logits).
    baseline        "none" or "loo": b_t for rollout i = mean of Σ_{t'>t} C_t' over the other
                    rollouts of its group (consecutive groups of group_size); unbiased.
    Value: the estimate of L (Σ_t H×_t + the end's price), reduced (also with future_cost="kl").
    Gradient: an unbiased estimate of ∇L (of ∇E[Σ_t KL_t + price] with future_cost="kl") for the
    full and sampled estimators with reduction "sum"; top-k is a biased (coarse-grained) cost, and
    "token_mean" divides by a random token count (a ratio estimator, as in SDPO/TRL).
    stop            how the end of a response is priced in the future-credit term, with
                    σ = −log π_T(y_|y| | s_|y|), the teacher's surprise at the last response token
                    (the end-of-text of an ended response; estimated from teacher_tokens):
                    "horizon" L = E[Σ_t C_t + (H − |y| + 1) σ]: a fixed horizon of H positions in
                    which the ended state is held, each skipped position priced σ again;
                    "surprise" L = E[Σ_t C_t + σ]; "literal" L = E[Σ_t C_t] (an end costs 0).
    horizon         H for stop="horizon": the most response positions a rollout can have (the
                    sampler's max_new_tokens); None: the longest response of the batch (counted in
                    response positions, so padding changes neither value nor gradient).
    states          (B, T) bool: the states whose cost counts, 1[s_t ∈ S] for a set S decided by
                    y_<t alone and left for good (e.g. the expert's support, through the first token
                    it rules out): L_S = E[Σ_t 1[s_t ∈ S] C_t + price], the same unbiased estimators
                    (the indicator is part of the cost). None: all states.
    price_exit      leaving S is an end (theory_checks T8): a rollout whose last state on S is
                    s_e, e < |y|, pays the end's price there, with σ_e = −log π_T(y_e | s_e) the
                    teacher's surprise at the exit token ("horizon": (H − e + 1)·σ_e); a rollout
                    on S to its end pays the end's price. False: the exit is free (the ablation;
                    the end's price is paid only by rollouts that end on S).
    exit_surprise   σ_e of every exit from S, a number: the surprise of the expert whose support S is
                    at a token it rules out (an ε-smoothed expert: log(V/ε)), so that the student
                    cannot choose the mistakes a fallible teacher finds plausible. None: the
                    teacher's own surprise at the exit token.
    future_weight   λ on the future-credit term: the gradient is local + λ·future (1: ∇L, the
                    paper's; 0: the local term alone, as sequence_level=False, with the end's price
                    in the value). Between them, neither term's estimate changes, only their mix.
    """
    if stop not in STOP_RULES:
        raise ValueError(f"stop must be one of {STOP_RULES}, got {stop!r}")
    if (teacher_logits is None) == (teacher_tokens is None):
        raise ValueError(
            "give exactly one of teacher_logits (full/top-k teacher) or teacher_tokens "
            "(samples from a black-box teacher)"
        )
    if future_cost not in FUTURE_COSTS:
        raise ValueError(f"future_cost must be one of {FUTURE_COSTS}, got {future_cost!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if not (isinstance(future_weight, (int, float)) and 0 <= future_weight < math.inf):
        raise ValueError(f"future_weight must be a finite number >= 0 (1 = the paper's), got {future_weight}")
    if baseline == "loo" and group_size < 2:
        raise ValueError("baseline='loo' needs group_size >= 2 rollouts per prompt")
    if teacher_tokens is not None and (topk is not None or (sequence_level and future_cost == "kl")):
        raise ValueError(
            "teacher_tokens (samples only) support the forward cross-entropy estimator: "
            "topk and future_cost='kl' need teacher_logits"
        )
    on = _check(
        student_logits,
        tokens,
        mask,
        teacher_logits,
        teacher_tokens,
        group_size=group_size,
        reduction=reduction,
    )
    longest = int(on.sum(-1).max()) if on.numel() else 0
    if horizon is not None and (not isinstance(horizon, int) or horizon < longest):
        raise ValueError(
            f"horizon must be an int >= the longest response of the batch ({longest} positions), "
            f"got {horizon!r}"
        )
    if states is not None and states.shape != on.shape:
        raise ValueError(f"states must be (B, T) = {tuple(on.shape)} like mask, got {tuple(states.shape)}")
    w = on if states is None else on & states.bool()  # where a cost counts
    if price_exit and (w & (on & ~w).cumsum(-1).bool()).any():
        raise ValueError(
            "states must leave S for good (once a response position is off S, every later one "
            "is) for its exit to be priced; give such a set or price_exit=False"
        )
    student_logits, tokens = _clean(student_logits, on), _clean(tokens, on)
    if teacher_tokens is not None:
        cost = sampled_forward_ce(_clean(teacher_tokens, on), student_logits)  # (B, T)
        kl = None
    else:
        teacher = _clean(teacher_logits.detach(), on)  # sg π_T
        if topk is not None:
            teacher, student = topk_buckets(teacher, student_logits, topk, tail)
        else:
            student = student_logits
        cost = forward_ce(teacher, student)  # H×_t       (B, T)
        kl = forward_kl(teacher, student) if future_cost == "kl" else None
    cost = cost * w
    if not sequence_level:
        return _reduce(cost, on, reduction)
    future = (cost if kl is None else kl * w).detach()  # C_t
    rev_cumsum = lambda x: x.flip(-1).cumsum(-1).flip(-1)  # noqa: E731  Σ_{t'≥t}
    to_go = rev_cumsum(future) - future  # Σ_{t'>t} C_t'     (B, T)
    if stop != "literal":  # the end's price at the last position on S (the end, or the exit), in every t ≤ e
        ended = w if price_exit else on  # the positions up to the priced end (e = their number)
        sigma = surprise_at(teacher_logits, teacher_tokens, tokens, last_position(ended) & w)
        if price_exit and exit_surprise is not None:  # the exits (the last state on S is not the end)
            exits = last_position(w) & ~last_position(on)
            sigma = torch.where(exits, torch.as_tensor(exit_surprise, dtype=sigma.dtype), sigma)
        if stop == "horizon":  # σ for the end and for each of the H − e positions it skips
            sigma = sigma * ((horizon or longest) - ended.sum(-1, keepdim=True) + 1)
        to_go, cost = to_go + rev_cumsum(sigma), cost + sigma
    if baseline == "loo":
        g = to_go.view(-1, group_size, to_go.shape[-1])
        to_go = (g - (g.sum(1, keepdim=True) - g) / (group_size - 1)).view_as(to_go)
    # After the exit from S every continuation costs 0: the cost-to-go is exactly 0 there, so is the best
    # baseline (it depends on s_t alone), and the score term, pure noise under "loo", is dropped. A row
    # with no state on S (e.g. no teacher context) keeps its baseline term: dropping it would bias loo.
    after_exit = on & ~w & (w.cumsum(-1) > 0)
    score = _score(token_logprobs(student_logits, tokens), future_weight * to_go) * (on & ~after_exit)
    return _reduce(cost + score, on, reduction)


# -----------------------------------------------------------------------------
# Baselines: SDPO (reverse KL), OPSD / GKD (JSD_β), GRPO, off-policy distillation


def sdpo_loss(
    student_logits, teacher_logits, mask, tokens=None, topk=None, tail=True, sampled=False, reduction="sum"
):
    """SDPO: Σ_t KL(π_θ ‖ sg π_T) at the student's states, token level (Hübotter et al. 2026).
    topk: both sides restricted to the *student's* top-k tokens (+ tail bucket), as SDPO's code does.
    sampled=True: the sampled-token surrogate sg(log π_θ(y_t) − log π_T(y_t))·log π_θ(y_t), which
    needs only the teacher's log-prob of the student's token; its gradient, averaged over y_t ~ π_θ,
    is ∇KL(π_θ‖π_T); its value is the sampled KL estimate."""
    on = _check(student_logits, tokens if sampled else None, mask, teacher_logits, reduction=reduction)
    if sampled and tokens is None:
        raise ValueError("sdpo_loss(sampled=True) needs the sampled tokens")
    student_logits, teacher = _clean(student_logits, on), _clean(teacher_logits.detach(), on)
    if sampled:
        tokens = _clean(tokens, on)
        logp = token_logprobs(student_logits, tokens)
        log_ratio = logp.detach() - token_logprobs(teacher, tokens)
        per = log_ratio + _score(logp, log_ratio)
    else:
        student = student_logits
        if topk is not None:
            teacher, student = topk_buckets(teacher, student_logits, topk, tail, index_by="student")
        per = reverse_kl(student, teacher)
    return _reduce(per * on, on, reduction)


def opsd_loss(student_logits, teacher_logits, mask, beta=0.5, topk=None, reduction="sum"):
    """OPSD / on-policy GKD: Σ_t JSD_β(sg π_T, π_θ) at the student's states, token level.
    topk: the teacher's top-k tokens, both sides renormalised (OPSD's `top_k_loss`)."""
    on = _check(student_logits, None, mask, teacher_logits, reduction=reduction)
    student, teacher = _clean(student_logits, on), _clean(teacher_logits.detach(), on)
    if topk is not None:
        teacher, student = topk_buckets(teacher, student, topk, tail=False)
    return _reduce(jsd(teacher, student, beta) * on, on, reduction)


def group_advantages(rewards, group_size, std_normalize=True, eps=1e-4):
    """GRPO advantages Â_i = (r_i − mean_g r) / (std_g r + eps) over consecutive groups of
    group_size rollouts (eps as in TRL). With std_normalize=False (SDPO's setting) Â_i = r_i − mean_g r,
    whose policy gradient is unbiased for (G−1)/G · ∇E[r]."""
    r = (rewards if rewards.is_floating_point() else rewards.float()).view(-1, group_size)
    adv = r - r.mean(1, keepdim=True)
    if std_normalize and group_size > 1:
        adv = adv / (r.std(1, keepdim=True) + eps)
    return adv.view(-1)


def grpo_loss(student_logits, tokens, mask, rewards, group_size, std_normalize=True, reduction="sum"):
    """GRPO / RLVR: −Σ_t Â_i log π_θ(y_t|s_t), one on-policy update per batch (the PPO ratio is 1,
    so clipping is inactive and omitted). rewards (B,) in {0, 1}."""
    on = _check(student_logits, tokens, mask, rewards=rewards, group_size=group_size, reduction=reduction)
    logp = token_logprobs(_clean(student_logits, on), _clean(tokens, on))
    adv = group_advantages(rewards, group_size, std_normalize).to(logp.dtype)
    return _reduce(-adv.unsqueeze(1) * logp * on, on, reduction)


def offline_loss(student_logits, tokens, mask, reduction="sum"):
    """Off-policy distillation / SFT: −Σ_t log π_θ(y_t|s_t) on sequences *sampled from the teacher*
    (behaviour cloning: the student is trained on the teacher's states, not its own)."""
    on = _check(student_logits, tokens, mask, reduction=reduction)
    logp = token_logprobs(_clean(student_logits, on), _clean(tokens, on))
    return _reduce(-logp * on, on, reduction)
