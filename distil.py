"""
distil.py — the DistIL objective and its baselines, as pure functions on tensors.

A student π_θ samples y for a prompt x; a teacher gives π_T(·|s_t) at every state s_t = (x, y_<t)
*the student visited* (the model reading feedback f, a stronger model, or a black box). DistIL
(arXiv 2606.05152) minimises the forward cross-entropy summed over the student's own rollout:

    L(θ) = E_{y~π_θ}[ Σ_t C_t ],   C_t = H×(sg π_T(·|s_t), π_θ(·|s_t))
         = −Σ_a π_T(a|s_t) log π_θ(a|s_t)
    ∇L   = E[ Σ_t ∇C_t ]  +  E[ Σ_t ∇log π_θ(y_t|s_t) · (Σ_{t'>t} C_t' − b_t) ]
           local credit      future credit (C_t depends on s_t, not y_t; b_t: leave_one_out)

distil_loss is that estimator; its pieces beside it are the project's additions, each checked exactly
in theory_checks.py: end_price (T7: the literal sum pays the student to stop, so the end costs the
teacher's surprise per skipped position), costs on a set of states S and the exit's price (T8), the
top-k and sampled (black-box) estimators of H×. Baselines on the same rollouts: SDPO Σ_t KL(π_θ‖π_T),
OPSD Σ_t JSD_β, GRPO −Σ_t Â log π_θ(y_t), offline −Σ_t log π_θ on the teacher's samples.

Conventions: loss = −objective; shapes B rollouts, T positions, V vocabulary; student_logits[b, t]
predict tokens[b, t]; mask is 1 on response tokens, and masked positions reach no loss or gradient;
logits may be raw or log-probabilities (a −inf logit is probability 0). Arguments follow the math:
forward_ce(teacher, student), reverse_kl(student, teacher). Reductions: "sum" over positions, mean
over rollouts (default); "token_mean" (SDPO/TRL); "none" (B,). A surrogate's value is the estimate
of its objective (score terms are w·(log π − sg log π), zero in value).

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
# reverse KL stays finite, H× gains ε(H×(u, π) − H×(p, π)), a token it rules out costs log(V/ε)
ORACLE_EPS = 1e-3
# how the end of a response is priced (end_price); the first is the default
STOP_RULES = ("horizon", "surprise", "literal")

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


def _with_grad(value, grad, student_logits):
    """`value` (...) whose gradient in the student's logits (..., V) is `grad`, the divergence's analytic
    gradient from a stop-gradient teacher, which is zero bit for bit where teacher and student agree.
    Autograd's form is not: through log_softmax it carries Σ_a π_T(a) − 1, a rounding-size bias of one
    sign that AdamW turns into full-size steps (the null test, tests/test_train_gpt.py)."""
    z = torch.where(torch.isinf(student_logits), 0.0, student_logits)  # a −inf logit gets no gradient
    zero_valued = (grad.detach() * (z - z.detach())).sum(-1)
    # an infinite value (π_T = 0 < π_θ) stays infinite: no gradient term is added to it
    return value.detach() + torch.where(torch.isfinite(value), zero_valued, 0.0)


def forward_ce(teacher_logits, student_logits):
    """H×(π_T, π_θ) = −Σ_a π_T(a) log π_θ(a), DistIL's cost. Gradient π_θ − π_T."""
    p, logq = log_probs(teacher_logits).exp(), log_probs(student_logits)
    return _with_grad(-(p * torch.where(p > 0, logq, 0.0)).sum(-1), logq.exp() - p, student_logits)


def forward_kl(teacher_logits, student_logits):
    """KL(π_T ‖ π_θ) = H×(π_T, π_θ) − H(π_T) (forward_ce's H×). Gradient π_θ − π_T."""
    logp, logq = log_probs(teacher_logits), log_probs(student_logits)
    return _with_grad(_kl(logp, logq), logq.exp() - logp.exp(), student_logits)


def reverse_kl(student_logits, teacher_logits):
    """KL(π_θ ‖ π_T) = Σ_a π_θ(a) (log π_θ(a) − log π_T(a)): the SDPO per-position cost; gradient
    π_θ ⊙ (log π_θ − log π_T − KL)."""
    logq, logp = log_probs(student_logits), log_probs(teacher_logits)
    q, kl = logq.exp(), _kl(logq, logp)
    grad = q * (torch.where(q > 0, logq - logp, 0.0) - kl.unsqueeze(-1))
    return _with_grad(kl, grad, student_logits)


def jsd(teacher_logits, student_logits, beta=0.5):
    """Generalised Jensen–Shannon, TRL GKD / OPSD convention:
    JSD_β = β KL(π_T ‖ M) + (1−β) KL(π_θ ‖ M),  M = β π_T + (1−β) π_θ;  gradient
    (1−β) π_θ ⊙ (log π_θ − log M − KL(π_θ‖M)). JSD_β/β → KL(π_T‖π_θ) as β→0 and
    JSD_β/(1−β) → KL(π_θ‖π_T) as β→1; like TRL we return those KLs at β = 0 and 1 exactly."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"jsd: beta must lie in [0, 1], got {beta}")
    if beta == 0.0:
        return forward_kl(teacher_logits, student_logits)
    if beta == 1.0:
        return reverse_kl(student_logits, teacher_logits)
    logp_t, logp_s = log_probs(teacher_logits), log_probs(student_logits)
    log_m = torch.logsumexp(torch.stack([logp_t + math.log(beta), logp_s + math.log1p(-beta)]), 0)
    log_m = torch.where(logp_t == logp_s, logp_s, log_m)  # M = π_θ exactly where the two agree
    kl_s = _kl(logp_s, log_m)
    q = logp_s.exp()
    grad = (1.0 - beta) * q * (torch.where(q > 0, logp_s - log_m, 0.0) - kl_s.unsqueeze(-1))
    return _with_grad(beta * _kl(logp_t, log_m) + (1.0 - beta) * kl_s, grad, student_logits)


def token_logprobs(logits, tokens):
    """log π(tokens): logits (..., V), tokens (...) int64 -> (...)."""
    return log_probs(logits).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def topk_buckets(teacher_logits, student_logits, k, tail=True):
    """Restrict both distributions to the teacher's k likeliest tokens, as a black-box teacher server
    returns them. tail=True appends one bucket holding the remaining mass on each side, so the result is a
    coarse-graining of the full distributions (any f-divergence, and H×, can only go down);
    tail=False renormalises both over the k tokens. Returns two log-prob tensors (..., k(+1))."""
    logp_t, logp_s = log_probs(teacher_logits), log_probs(student_logits)
    V = logp_t.shape[-1]
    if not 1 <= k <= V:
        raise ValueError(f"topk must be in [1, V={V}], got {k}")
    idx = logp_t.topk(k, dim=-1).indices
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
    logits, tokens, mask, reduction, group_size=1, teacher_logits=None, teacher_tokens=None, rewards=None
):
    """The student's logits and the rest checked: a ValueError naming what is accepted, else mask as bool."""
    if logits.dim() != 3:
        raise ValueError(f"student_logits must be (B, T, V), got shape {tuple(logits.shape)}")
    B, T, V = logits.shape
    if mask.shape != (B, T):
        raise ValueError(f"mask must be (B, T) = {(B, T)} like the logits, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool and not ((mask == 0) | (mask == 1)).all():
        raise ValueError("mask must hold only 0 and 1 (1 on response tokens)")
    on = mask.bool()
    if tokens is not None:
        if tokens.shape != (B, T):
            raise ValueError(f"tokens must be (B, T) = {(B, T)}, got {tuple(tokens.shape)}")
        _check_ids("tokens", tokens, on, V)
    if teacher_logits is not None:
        if teacher_logits.shape != logits.shape:
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
        if teacher_tokens.dim() != 3 or teacher_tokens.shape[:2] != (B, T):
            raise ValueError(
                f"teacher_tokens must be (B, T, K) with (B, T) = {(B, T)}, got {tuple(teacher_tokens.shape)}"
            )
        _check_ids("teacher_tokens", teacher_tokens, on.unsqueeze(-1), V)
    if rewards is not None and rewards.shape != (B,):
        raise ValueError(f"rewards must be (B,) = ({B},), got {tuple(rewards.shape)}")
    if group_size < 1 or B % group_size != 0:
        raise ValueError(f"group_size={group_size} must be >= 1, divide B={B} (rollouts grouped by prompt)")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return on


def _check_ids(name, ids, on, V):
    """Integer token ids in [0, V) wherever `on` (the mask) is 1, or a ValueError saying so."""
    if ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must be integer ids, got dtype {ids.dtype}")
    if (bad := on & ((ids < 0) | (ids >= V))).any():
        raise ValueError(f"{name} must be in [0, V={V}) where mask is 1; got {ids[bad][:5].tolist()}")


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


def later_sum(x):
    """Σ_{t'>t} x_t' along the last axis: the cost-to-go over strictly later steps."""
    return reverse_cumsum(x) - x


def reverse_cumsum(x):
    """Σ_{t'≥t} x_t' along the last axis."""
    return x.flip(-1).cumsum(-1).flip(-1)


def leave_one_out(to_go, group_size):
    """to_go − b, b_t = the mean to-go of the *other* rollouts of the prompt at position t (consecutive
    groups of group_size): b does not depend on this rollout's y_t, so the estimator stays unbiased."""
    g = to_go.view(-1, group_size, to_go.shape[-1])
    return (g - (g.sum(1, keepdim=True) - g) / (group_size - 1)).view_as(to_go)


def per_position_cost(student_logits, teacher_logits, teacher_tokens, topk, tail, future_cost):
    """The estimator of H×_t (B, T) and the cost C_t the future credit sums (None: H×_t itself):
    the full teacher distribution; its top-k (+ a tail bucket); or K samples of a black-box teacher."""
    if teacher_tokens is not None:
        return sampled_forward_ce(teacher_tokens, student_logits), None
    teacher, student = teacher_logits.detach(), student_logits  # sg π_T
    if topk is not None:
        teacher, student = topk_buckets(teacher, student_logits, topk, tail)
    kl = forward_kl(teacher, student) if future_cost == "kl" else None
    return forward_ce(teacher, student), kl


def surprise_at(teacher_logits, teacher_tokens, tokens, at):
    """σ = −log π_T(y_t | s_t) where `at` (B, T) is set (the end, or the exit from S), 0 elsewhere. From
    K teacher samples a_k: Σ_{k≤K} (1/k) Π_{j≤k} 1[a_j ≠ y_t], unbiased for the series −log p =
    Σ_k (1−p)^k/k cut at K terms (≤ H_K = Σ_{k≤K} 1/k nats: more samples, a firmer price)."""
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


def end_price(teacher_logits, teacher_tokens, tokens, on, w, stop, horizon, price_exit, at_exit, ends_out):
    """The price of the end (theory_checks T7) and of the exit from S (T8), (B, T): an action cost at
    the last position on S, e (the end, or the exit), that joins the cost-to-go of every t ≤ e.
    "horizon": (H − e + 1)·σ_e, the end and each of the H − e positions it skips; "surprise": σ_e;
    σ_e = the teacher's surprise at y_e, or at an exit at_exit (the expert's surprise, if given)."""
    ended = w if price_exit else on  # the positions up to the priced end (e = their number)
    sigma = surprise_at(teacher_logits, teacher_tokens, tokens, last_position(ended) & w)
    if price_exit and at_exit is not None:  # the exits: S left before the end, or by an end ruled out
        exits = last_position(w) & (~last_position(on) | ends_out.view(-1, 1))
        sigma = torch.where(exits, torch.as_tensor(at_exit, dtype=sigma.dtype), sigma)
    if stop == "horizon":
        sigma = sigma * (horizon - ended.sum(-1, keepdim=True) + 1)
    return sigma


def _check_distil(teacher_logits, teacher_tokens, topk, sequence_level, future_cost, baseline, stop):
    """distil_loss's own argument checks (shapes: _check): ValueError naming what is accepted."""
    if stop not in STOP_RULES:
        raise ValueError(f"stop must be one of {STOP_RULES}, got {stop!r}")
    if (teacher_logits is None) == (teacher_tokens is None):
        raise ValueError("give exactly one of teacher_logits (a teacher) or teacher_tokens (its samples)")
    if future_cost not in FUTURE_COSTS:
        raise ValueError(f"future_cost must be one of {FUTURE_COSTS}, got {future_cost!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if teacher_tokens is not None and (topk is not None or (sequence_level and future_cost == "kl")):
        raise ValueError("topk and future_cost='kl' need teacher_logits (teacher_tokens support H× alone)")


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
    ends_out=None,
):
    """DistIL surrogate loss on a batch of the student's own rollouts: value the estimate of L,
    gradient an unbiased estimate of ∇L (full and sampled estimators, reduction "sum").

        L  = E[Σ_t C_t + price],   C_t = 1[s_t ∈ S]·H×(sg π_T(·|s_t), π_θ(·|s_t))
        ∇L = E[Σ_t ∇C_t  +  Σ_t ∇log π_θ(y_t|s_t)·(Σ_{t'>t} C_t' + price − b_t)]

    student_logits (B, T, V), tokens (B, T), mask (B, T); exactly one teacher: teacher_logits
    (B, T, V) or teacher_tokens (B, T, K), K samples of a black-box teacher at each state.
    sequence_level  False: the local term only (the paper's "CE" ablation).
    future_cost     "ce": C = H× (the paper's); "kl": the future credit sums KL(π_T‖π_θ) instead.
    baseline        "none" or "loo" (leave_one_out over consecutive groups of group_size rollouts).
    topk, tail      H× over the teacher's top-k tokens (+ a tail bucket): biased, coarse-grained.
    stop, horizon   the end's price (end_price; T7): "horizon" (H = horizon; None: the batch's
                    longest, biased), "surprise", or "literal" (the paper's sum: an end costs 0).
    states          (B, T) bool, S = the states whose cost counts, decided by y_<t and left for good
                    (the expert's support; T8); None: all. Leaving S is an end, priced unless
                    price_exit=False, at exit_surprise if given (the expert's surprise), as is an end
                    in ends_out, (B,) bool: the rows whose end the expert rules out (it leaves S too).
    Reductions: "sum" over positions, mean over rollouts; "token_mean" (SDPO/TRL); "none" (B,)."""
    _check_distil(teacher_logits, teacher_tokens, topk, sequence_level, future_cost, baseline, stop)
    if baseline == "loo" and group_size < 2:
        raise ValueError("baseline='loo' needs group_size >= 2 rollouts per prompt")
    on = _check(student_logits, tokens, mask, reduction, group_size, teacher_logits, teacher_tokens)
    longest = int(on.sum(-1).max()) if on.numel() else 0
    if horizon is not None and (not isinstance(horizon, int) or horizon < longest):
        raise ValueError(f"horizon must be an int >= the longest response ({longest}), got {horizon!r}")
    if states is not None and states.shape != on.shape:
        raise ValueError(f"states must be (B, T) = {tuple(on.shape)} like mask, got {tuple(states.shape)}")
    w = on if states is None else on & states.bool()  # where a cost counts: 1[s_t ∈ S]
    if ends_out is not None and tuple(ends_out.shape) != (len(on),):
        raise ValueError(f"ends_out must be (B,) = ({len(on)},), got {tuple(ends_out.shape)}")
    ends_out = torch.zeros_like(on[:, 0]) if ends_out is None else ends_out.bool()  # rows ending off S
    if price_exit and (w & (on & ~w).cumsum(-1).bool()).any():
        raise ValueError(
            "states must leave S for good (once a response position is off S, every later one "
            "is) for its exit to be priced; give such a set or price_exit=False"
        )
    student_logits, tokens = _clean(student_logits, on), _clean(tokens, on)
    teacher_logits = None if teacher_logits is None else _clean(teacher_logits, on)
    teacher_tokens = None if teacher_tokens is None else _clean(teacher_tokens, on)
    cost, kl = per_position_cost(student_logits, teacher_logits, teacher_tokens, topk, tail, future_cost)
    cost = cost * w  # C_t, the local term's cost
    if not sequence_level:
        return _reduce(cost, on, reduction)
    to_go = later_sum((cost if kl is None else kl * w).detach())  # Σ_{t'>t} C_t'
    if stop != "literal":
        H = horizon or longest
        price = end_price(
            teacher_logits, teacher_tokens, tokens, on, w, stop, H, price_exit, exit_surprise, ends_out
        )
        to_go, cost = to_go + reverse_cumsum(price), cost + price
    if baseline == "loo":
        to_go = leave_one_out(to_go, group_size)
    # After the exit from S every continuation costs 0, so the cost-to-go (and the best baseline) is 0:
    # the score term there, pure noise under "loo", is dropped. A row with no state on S keeps it.
    after_exit = on & ~w & (w.cumsum(-1) > 0)
    score = _score(token_logprobs(student_logits, tokens), to_go) * (on & ~after_exit)
    return _reduce(cost + score, on, reduction)


# -----------------------------------------------------------------------------
# Baselines: SDPO (reverse KL), OPSD / GKD (JSD_β), GRPO, off-policy distillation


def sdpo_loss(student_logits, teacher_logits, mask, tokens=None, sampled=False, reduction="sum"):
    """SDPO: Σ_t KL(π_θ ‖ sg π_T) at the student's states, token level (Hübotter et al. 2026).
    sampled=True: the sampled-token surrogate sg(log π_θ(y_t) − log π_T(y_t))·log π_θ(y_t), which
    needs only the teacher's log-prob of the student's token; its gradient, averaged over y_t ~ π_θ,
    is ∇KL(π_θ‖π_T); its value is the sampled KL estimate."""
    on = _check(student_logits, tokens if sampled else None, mask, reduction, teacher_logits=teacher_logits)
    if sampled and tokens is None:
        raise ValueError("sdpo_loss(sampled=True) needs the sampled tokens")
    student_logits, teacher = _clean(student_logits, on), _clean(teacher_logits.detach(), on)
    if sampled:
        tokens = _clean(tokens, on)
        logp = token_logprobs(student_logits, tokens)
        log_ratio = logp.detach() - token_logprobs(teacher, tokens)
        per = log_ratio + _score(logp, log_ratio)
    else:
        per = reverse_kl(student_logits, teacher)
    return _reduce(per * on, on, reduction)


def opsd_loss(student_logits, teacher_logits, mask, beta=0.5, reduction="sum"):
    """OPSD / on-policy GKD: Σ_t JSD_β(sg π_T, π_θ) at the student's states, token level."""
    on = _check(student_logits, None, mask, reduction, teacher_logits=teacher_logits)
    student, teacher = _clean(student_logits, on), _clean(teacher_logits.detach(), on)
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
    on = _check(student_logits, tokens, mask, reduction, group_size, rewards=rewards)
    logp = token_logprobs(_clean(student_logits, on), _clean(tokens, on))
    adv = group_advantages(rewards, group_size, std_normalize).to(logp.dtype)
    return _reduce(-adv.unsqueeze(1) * logp * on, on, reduction)


def offline_loss(student_logits, tokens, mask, reduction="sum"):
    """Off-policy distillation / SFT: −Σ_t log π_θ(y_t|s_t) on sequences *sampled from the teacher*
    (behaviour cloning: the student is trained on the teacher's states, not its own)."""
    on = _check(student_logits, tokens, mask, reduction)
    logp = token_logprobs(_clean(student_logits, on), _clean(tokens, on))
    return _reduce(-logp * on, on, reduction)
