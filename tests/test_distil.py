"""Tests for distil.py: closed forms, limits, and every surrogate's expected gradient against the exact
gradient of its objective, by enumerating all rollouts of a tiny tabular autoregressive model."""

import itertools
import math

import pytest
import torch

import distil


@pytest.fixture(autouse=True)
def float64():
    """Exact comparisons need float64; restore the default so other test files are unaffected."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


# -----------------------------------------------------------------------------
# A tabular autoregressive model: vocab V, depth D, token EOS ends a sequence early.
# Every prefix without EOS is a state with its own logits row (the student's θ, the teacher's table).

V, D, EOS = 3, 3, 2


def enumerate_model():
    """All complete sequences and the state index of each of their prefixes."""
    states = {}
    for d in range(D):
        for p in itertools.product(range(EOS), repeat=d):  # prefixes without EOS
            states[p] = len(states)
    seqs = []
    for d in range(1, D + 1):
        for y in itertools.product(range(V), repeat=d):
            if all(a != EOS for a in y[:-1]) and (y[-1] == EOS or d == D):
                seqs.append(y)
    return states, seqs


STATES, SEQS = enumerate_model()
N = len(SEQS)


def batch(seqs, pad=0):
    """tokens (N, D), mask (N, D), state ids (N, D) (0 where masked)."""
    tokens = torch.full((len(seqs), D), pad, dtype=torch.long)
    mask = torch.zeros(len(seqs), D)
    sid = torch.zeros(len(seqs), D, dtype=torch.long)
    for n, y in enumerate(seqs):
        for t, a in enumerate(y):
            tokens[n, t], mask[n, t], sid[n, t] = a, 1.0, STATES[y[:t]]
    return tokens, mask, sid


def make_tables(seed=0, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    theta = (scale * torch.randn(len(STATES), V, generator=g)).requires_grad_()
    teacher = scale * torch.randn(len(STATES), V, generator=g)
    return theta, teacher


def seq_logprob(theta, tokens, mask, sid):
    logp = torch.log_softmax(theta, -1)[sid].gather(-1, tokens.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return (logp * mask).sum(-1)


def exact_objective(
    theta,
    teacher,
    tokens,
    mask,
    sid,
    cost="ce",
    through_states=True,
    stop="literal",
    horizon=D,
    states=None,
    price_exit=True,
    exit_surprise=None,
    ends_out=None,
):
    """Σ_y π(y) (Σ_t C_t(y) + σ(y)), written out independently of distil.py. through_states=False stops
    the gradient through the rollout probabilities (the token-level / local objective). σ(y): 0
    ("literal"), the teacher's surprise −log q(y_e) at the last token e ("surprise"), that for the end
    and each position it skips up to the horizon ("horizon": × (horizon − e)), e 0-indexed, or the
    surprise's series cut at one term, 1 − q(y_e) ("series1…": what one teacher sample per position
    estimates). states (N, D): 1 where a state's cost counts, a prefix of each response; e is the last
    state on S (the exit, priced as an end) or, with price_exit=False, the last state if it is on S;
    exit_surprise: the surprise at an exit (e before the last response position, or a row of ends_out:
    an end the expert rules out) instead of −log q(y_e)."""
    p_t = torch.softmax(teacher, -1)[sid]
    logq = torch.log_softmax(theta, -1)[sid]
    ce = -(p_t * logq).sum(-1)
    c = ce if cost == "ce" else ce + (p_t * p_t.log()).sum(-1)
    prob = seq_logprob(theta, tokens, mask, sid).exp()
    if not through_states:
        prob = prob.detach()
    rows = torch.arange(len(tokens))
    on_s = mask if states is None else mask * states
    e = (on_s if price_exit else mask).sum(-1).long() - 1  # the priced end's position
    q_e = p_t[rows, e].gather(-1, tokens[rows, e, None]).squeeze(-1)
    if exit_surprise is not None:
        out = torch.zeros(len(tokens), dtype=torch.bool) if ends_out is None else ends_out
        q_e = torch.where((e < mask.sum(-1).long() - 1) | out, math.exp(-exit_surprise), q_e)
    sigma = {
        "literal": 0.0,
        "surprise": -q_e.log(),
        "horizon": -q_e.log() * (horizon - e),
        "series1": 1 - q_e,
        "series1_horizon": (1 - q_e) * (horizon - e),
    }[stop]
    sigma = sigma * on_s[rows, e]  # 0 where that position is off S (or the row has no state on S)
    return (prob * ((c * on_s).sum(-1) + sigma)).sum()


def without_token_1(mask):
    """1[s_t ∈ S] for S = the prefixes of SEQS without token 1 (decided by y_<t, as an expert's support)."""
    return torch.tensor([[float(1 not in y[:t]) for t in range(D)] for y in SEQS]) * mask


def grad(f, theta):
    (g,) = torch.autograd.grad(f, theta, retain_graph=True)
    return g


# -----------------------------------------------------------------------------
# Closed forms and limits of the per-position divergences


def rand_logits(*shape, seed=0, scale=2.0):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_forward_ce_is_entropy_plus_forward_kl_and_ignores_logit_shifts():
    t, s = rand_logits(5, 7, seed=1), rand_logits(5, 7, seed=2)
    ce = distil.forward_ce(t, s)
    assert torch.allclose(ce, distil.entropy(t) + distil.forward_kl(t, s))
    assert torch.allclose(ce, distil.forward_ce(torch.log_softmax(t, -1), s + 3.0))
    p, logq = torch.softmax(t, -1), torch.log_softmax(s, -1)
    assert torch.allclose(ce, -(p * logq).sum(-1))


def test_forward_ce_gradient_is_student_probs_minus_teacher_probs():
    t, s = rand_logits(4, 6, seed=3), rand_logits(4, 6, seed=4).requires_grad_()
    g = grad(distil.forward_ce(t, s).sum(), s)
    assert torch.allclose(g, torch.softmax(s, -1) - torch.softmax(t, -1))
    assert torch.autograd.gradcheck(lambda z: distil.forward_ce(t, z), (s,))


def test_kl_directions_are_not_swapped():
    p, q = [0.8, 0.15, 0.05], [0.1, 0.3, 0.6]  # teacher p, student q
    kl_pq = sum(a * math.log(a / b) for a, b in zip(p, q))
    kl_qp = sum(b * math.log(b / a) for a, b in zip(p, q))
    assert abs(kl_pq - kl_qp) > 0.05
    lp, lq = torch.tensor(p).log(), torch.tensor(q).log()
    assert math.isclose(distil.forward_kl(teacher_logits=lp, student_logits=lq).item(), kl_pq)
    assert math.isclose(distil.reverse_kl(student_logits=lq, teacher_logits=lp).item(), kl_qp)
    assert math.isclose(distil.forward_ce(lp, lq).item(), -sum(a * math.log(b) for a, b in zip(p, q)))


def test_jsd_closed_form_symmetry_and_bounds():
    t, s = rand_logits(50, 5, seed=5), rand_logits(50, 5, seed=6)
    p, q = torch.softmax(t, -1), torch.softmax(s, -1)
    for beta in (0.1, 0.5, 0.9):
        m = beta * p + (1 - beta) * q
        ref = beta * (p * (p / m).log()).sum(-1) + (1 - beta) * (q * (q / m).log()).sum(-1)
        assert torch.allclose(distil.jsd(t, s, beta), ref)
    j = distil.jsd(t, s, 0.5)
    assert torch.allclose(j, distil.jsd(s, t, 0.5))
    assert (j >= 0).all() and (j <= math.log(2)).all()
    assert torch.allclose(distil.jsd(t, t, 0.3), torch.zeros(50), atol=1e-12)


def test_jsd_limits_are_forward_kl_at_beta_0_and_reverse_kl_at_beta_1():
    t, s = rand_logits(20, 6, seed=7), rand_logits(20, 6, seed=8)
    fkl, rkl = distil.forward_kl(t, s), distil.reverse_kl(s, t)
    eps = 1e-9  # the first correction is O(β·χ²(π_T, π_θ)), large for these peaked logits
    assert torch.allclose(distil.jsd(t, s, eps) / eps, fkl, rtol=1e-5)
    assert torch.allclose(distil.jsd(t, s, 1 - eps) / eps, rkl, rtol=1e-5)
    assert torch.equal(distil.jsd(t, s, 0.0), fkl) and torch.equal(distil.jsd(t, s, 1.0), rkl)
    with pytest.raises(ValueError, match="beta"):
        distil.jsd(t, s, 1.5)


def test_topk_tail_bucket_never_exceeds_the_full_divergence():
    t, s = rand_logits(200, 9, seed=9), rand_logits(200, 9, seed=10)
    for k in (1, 3, 8):
        tb, sb = distil.topk_buckets(t, s, k, tail=True)
        assert torch.allclose(tb.exp().sum(-1), torch.ones(200)) and torch.allclose(
            sb.exp().sum(-1), torch.ones(200)
        )
        assert (distil.forward_ce(tb, sb) <= distil.forward_ce(t, s) + 1e-12).all()
        assert (distil.forward_kl(tb, sb) <= distil.forward_kl(t, s) + 1e-12).all()
        assert (distil.reverse_kl(sb, tb) <= distil.reverse_kl(s, t) + 1e-12).all()
    tb, sb = distil.topk_buckets(t, s, 9, tail=True)
    assert torch.allclose(distil.forward_ce(tb, sb), distil.forward_ce(t, s))


def test_topk_renormalised_is_exact_only_when_the_teacher_lives_on_its_topk():
    t, s = rand_logits(30, 8, seed=11), rand_logits(30, 8, seed=12)
    peaked = t.clone()
    peaked[:, 3:] = -60.0  # the teacher's mass is on tokens 0..2
    tb, sb = distil.topk_buckets(peaked, s, 3, tail=False)
    # renormalising the student over the teacher's support changes log q by log Σ_top q: a known bias
    bias = -torch.log_softmax(s, -1)[:, :3].logsumexp(-1)
    assert torch.allclose(distil.forward_ce(tb, sb), distil.forward_ce(peaked, s) - bias, atol=1e-9)
    tb, sb = distil.topk_buckets(t, s, 3, tail=False)
    assert not torch.allclose(distil.forward_ce(tb, sb), distil.forward_ce(t, s))


def test_zero_probability_teacher_tokens_are_exact_limits_not_nan():
    t, s = rand_logits(6, 5, seed=15), rand_logits(6, 5, seed=16).requires_grad_()
    sparse = t.clone()
    sparse[:, :2] = -math.inf  # an oracle that rules two tokens out
    limit = t.clone()
    limit[:, :2] = -800.0  # exp(-800) == 0 in float64: the same distribution, finite logits
    assert torch.allclose(distil.entropy(sparse), distil.entropy(limit))
    for f in (distil.forward_ce, distil.forward_kl, lambda a, b: distil.jsd(a, b, 0.3)):
        assert torch.allclose(f(sparse, s), f(limit, s))
        assert torch.allclose(grad(f(sparse, s).sum(), s), grad(f(limit, s).sum(), s))
    assert torch.isinf(distil.reverse_kl(s, sparse)).all()  # KL(π_θ‖π_T) = ∞ where π_T = 0 < π_θ
    tok = torch.full((1, 6), 3)
    loss = distil.distil_loss(s.unsqueeze(0), tok, torch.ones(1, 6), teacher_logits=sparse.unsqueeze(0))
    assert torch.isfinite(loss) and torch.isfinite(grad(loss, s)).all()


def test_zero_probability_student_tokens_give_finite_gradients():
    """A student with −inf logits (a padded vocabulary) must not turn 0·(−inf) into NaN gradients."""
    t, s = rand_logits(4, 6, seed=18), rand_logits(4, 6, seed=19)
    s[:, -1] = -math.inf
    s.requires_grad_()
    for f in (lambda: distil.reverse_kl(s, t), lambda: distil.jsd(t, s, 0.5), lambda: distil.entropy(s)):
        value = f()
        assert torch.isfinite(value).all() and torch.isfinite(grad(value.sum(), s)).all()


def test_sampled_forward_ce_is_unbiased_for_the_full_one():
    t, s = rand_logits(4, 5, seed=13), rand_logits(4, 5, seed=14)
    p = torch.softmax(t, -1)
    # exact expectation over one teacher sample per row
    est = torch.stack([distil.sampled_forward_ce(torch.full((4, 1), a), s) for a in range(5)], -1)
    assert torch.allclose((p * est).sum(-1), distil.forward_ce(t, s))


# -----------------------------------------------------------------------------
# DistIL's expected gradient equals the exact gradient, by enumeration of all rollouts


def student_teacher_logits(theta, teacher, sid):
    return theta[sid], teacher[sid]


@pytest.mark.parametrize("stop", distil.STOP_RULES)
@pytest.mark.parametrize("cost", distil.FUTURE_COSTS)
def test_sequence_level_expected_gradient_equals_exact_gradient_of_L(stop, cost):
    """Variable length: responses end at EOS (the end decision is a token) or are cut at depth D."""
    theta, teacher = make_tables(0)
    tokens, mask, sid = batch(SEQS)
    s_logits, t_logits = student_teacher_logits(theta, teacher, sid)
    prob = seq_logprob(theta, tokens, mask, sid).exp().detach()
    per = distil.distil_loss(
        s_logits, tokens, mask, teacher_logits=t_logits, future_cost=cost, stop=stop, reduction="none"
    )
    L = exact_objective(theta, teacher, tokens, mask, sid, cost=cost, stop=stop)
    if cost == "ce":
        assert torch.allclose((prob * per).sum(), L)  # the surrogate's value estimates L
    g_est = grad((prob * per).sum(), theta)
    assert torch.allclose(g_est, grad(L, theta), atol=1e-12)
    other = [r for r in distil.STOP_RULES if r != stop][0]  # the rules differ: the end is priced
    if stop == "horizon":  # a longer horizon: every skipped position is priced
        per7 = distil.distil_loss(
            s_logits,
            tokens,
            mask,
            teacher_logits=t_logits,
            future_cost=cost,
            stop=stop,
            horizon=7,
            reduction="none",
        )
        L7 = exact_objective(theta, teacher, tokens, mask, sid, cost=cost, stop=stop, horizon=7)
        assert torch.allclose(grad((prob * per7).sum(), theta), grad(L7, theta), atol=1e-12)
    assert (
        g_est - grad(exact_objective(theta, teacher, tokens, mask, sid, cost=cost, stop=other), theta)
    ).abs().max() > 1e-3


@pytest.mark.parametrize("stop", distil.STOP_RULES)
@pytest.mark.parametrize("sequence_level", (True, False))
def test_costs_on_a_set_of_states_keep_the_gradient_exact(stop, sequence_level):
    """states = 1[s_t ∈ S] with S = the prefixes without token 1 (decided by y_<t, as the expert's
    support is): the estimators are exact for E[Σ_t 1[s_t ∈ S] C_t + 1[s_|y| ∈ S]·price]."""
    theta, teacher = make_tables(4)
    tokens, mask, sid = batch(SEQS)
    on_s = without_token_1(mask)
    s_logits, t_logits = student_teacher_logits(theta, teacher, sid)
    prob = seq_logprob(theta, tokens, mask, sid).exp().detach()
    per = distil.distil_loss(
        s_logits,
        tokens,
        mask,
        teacher_logits=t_logits,
        stop=stop,
        states=on_s.bool(),
        sequence_level=sequence_level,
        reduction="none",
    )
    L = exact_objective(
        theta,
        teacher,
        tokens,
        mask,
        sid,
        stop=stop if sequence_level else "literal",
        through_states=sequence_level,
        states=on_s,
    )
    assert torch.allclose(grad((prob * per).sum(), theta), grad(L, theta), atol=1e-12)
    everywhere = exact_objective(
        theta,
        teacher,
        tokens,
        mask,
        sid,
        stop=stop if sequence_level else "literal",
        through_states=sequence_level,
    )
    assert (grad(L, theta) - grad(everywhere, theta)).abs().max() > 1e-3  # S is a proper subset


@pytest.mark.parametrize("stop", distil.STOP_RULES)
def test_a_free_exit_from_the_states_is_the_ablation_and_stays_exact(stop):
    """price_exit=False: only rollouts that end on S pay the end's price; the gradient stays exact,
    and it differs from the priced exit's wherever the end is priced. So does a fixed exit_surprise
    (the expert's, at a token it rules out)."""
    theta, teacher = make_tables(5)
    tokens, mask, sid = batch(SEQS)
    on_s = without_token_1(mask)
    s_logits, t_logits = student_teacher_logits(theta, teacher, sid)
    prob = seq_logprob(theta, tokens, mask, sid).exp().detach()
    grads, early_ends = {}, torch.tensor([len(y) < D and y[-1] == EOS for y in SEQS])  # ruled out: exits
    for priced, at_exit in ((True, None), (False, None), ("expert", 3.0), ("expert_ends", 3.0)):
        out = early_ends if priced == "expert_ends" else None
        per = distil.distil_loss(
            s_logits,
            tokens,
            mask,
            teacher_logits=t_logits,
            stop=stop,
            states=on_s.bool(),
            price_exit=bool(priced),
            exit_surprise=at_exit,
            ends_out=out,
            reduction="none",
        )
        L = exact_objective(
            theta,
            teacher,
            tokens,
            mask,
            sid,
            stop=stop,
            states=on_s,
            price_exit=bool(priced),
            exit_surprise=at_exit,
            ends_out=out,
        )
        assert torch.allclose((prob * per).sum(), L)
        grads[priced] = grad((prob * per).sum(), theta)
        assert torch.allclose(grads[priced], grad(L, theta), atol=1e-12)
    assert ((grads[True] - grads[False]).abs().max() > 1e-3) == (stop != "literal")
    assert ((grads[True] - grads["expert"]).abs().max() > 1e-3) == (stop != "literal")  # a fixed exit price
    assert ((grads["expert"] - grads["expert_ends"]).abs().max() > 1e-3) == (stop != "literal")


def test_the_exit_from_the_states_is_priced_like_an_end_where_it_happens():
    """Rollout (0, 1, 0) on a uniform student with states S = {s_1, s_2}: it leaves S with token 1 at
    position e = 2, to which the teacher gives 0.1, so horizon H = 5 adds (5 − 2 + 1)·(−log 0.1) and
    surprise −log 0.1 once; the third state's cost does not count."""
    s = torch.zeros(1, 3, 3)
    t = torch.tensor([0.8, 0.1, 0.1]).log().expand(1, 3, 3)
    tok, mask, on_s = torch.tensor([[0, 1, 0]]), torch.ones(1, 3), torch.tensor([[True, True, False]])
    ce = math.log(3)  # H×(teacher, uniform)
    per = {
        r: distil.distil_loss(
            s, tok, mask, teacher_logits=t, stop=r, states=on_s, horizon=5, reduction="none"
        )
        for r in distil.STOP_RULES
    }
    assert torch.allclose(per["literal"], torch.tensor([2 * ce]))
    assert torch.allclose(per["surprise"], torch.tensor([2 * ce - math.log(0.1)]))
    assert torch.allclose(per["horizon"], torch.tensor([2 * ce - 4 * math.log(0.1)]))
    free = distil.distil_loss(
        s, tok, mask, teacher_logits=t, states=on_s, horizon=5, price_exit=False, reduction="none"
    )
    assert torch.allclose(free, per["literal"])  # it did not end on S: nothing priced
    on_s = torch.ones(1, 3, dtype=torch.bool)  # S kept to the end, and that end ruled out: an exit
    kw = {"teacher_logits": t, "states": on_s, "horizon": 5, "exit_surprise": 7.0, "reduction": "none"}
    ended = distil.distil_loss(s, tok, mask, **kw)  # an end the expert allows: the teacher's surprise
    out = distil.distil_loss(s, tok, mask, ends_out=torch.tensor([True]), **kw)
    assert torch.allclose(ended, torch.tensor([3 * ce - 3 * math.log(0.8)]))  # (5 − 3 + 1)·(−log q(y_3))
    assert torch.allclose(out, torch.tensor([3 * ce + 3 * 7.0]))  # the same end at the exit's price


@pytest.mark.parametrize("pad", ("left", "right"))
def test_padding_changes_neither_the_value_nor_the_gradient_of_the_priced_end(pad):
    """The same rollouts with two masked positions more on one side (a longer prompt in [prompt |
    response] logits, or right padding): the default horizon counts response positions only."""
    theta, teacher = make_tables(6)
    tokens, mask, sid = batch(SEQS)
    s_logits, t_logits = student_teacher_logits(theta, teacher, sid)
    side = (2, 0) if pad == "left" else (0, 2)
    padded = [torch.nn.functional.pad(x, (0, 0) + side) for x in (s_logits, t_logits)]
    p_tok, p_mask = torch.nn.functional.pad(tokens, side), torch.nn.functional.pad(mask, side)
    on_s = without_token_1(mask)
    for states, p_states in ((None, None), (on_s.bool(), torch.nn.functional.pad(on_s, side).bool())):
        per = distil.distil_loss(
            s_logits, tokens, mask, teacher_logits=t_logits, states=states, reduction="none"
        )
        per_pad = distil.distil_loss(
            *padded[:1], p_tok, p_mask, teacher_logits=padded[1], states=p_states, reduction="none"
        )
        assert torch.allclose(per, per_pad)
        assert torch.allclose(grad(per.sum(), theta), grad(per_pad.sum(), theta), atol=1e-12)


def test_after_the_exit_from_the_states_no_position_gets_a_gradient():
    """Off S every cost-to-go is 0 under every continuation, so the loo baseline's noise is not added
    there: the student logits after the exit get exactly zero gradient, before it they do not."""
    g = torch.Generator().manual_seed(0)
    s = torch.randn(4, 3, 3, generator=g).requires_grad_()
    t, tok = torch.randn(4, 3, 3, generator=g), torch.randint(0, 3, (4, 3), generator=g)
    on_s = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]]).bool()
    loss = distil.distil_loss(
        s, tok, torch.ones(4, 3), teacher_logits=t, states=on_s, baseline="loo", group_size=4
    )
    (gs,) = torch.autograd.grad(loss, s)
    assert gs[~on_s].abs().max() == 0 and gs[on_s].abs().min() > 0
    # a rollout with no state on S (no teacher context) keeps its baseline's score term (0 − b_t)
    on_s[1] = False
    loss = distil.distil_loss(
        s, tok, torch.ones(4, 3), teacher_logits=t, states=on_s, baseline="loo", group_size=4
    )
    (gs,) = torch.autograd.grad(loss, s)
    assert gs[1].abs().min() > 0


def test_the_end_is_priced_by_the_teacher_surprise_once_or_per_skipped_position():
    """One state, tokens (0, 1, EOS=2), a teacher that ends with 0.01, rollouts "0" and "EOS" of length 1:
    surprise adds −log q(last token) to each; horizon H = 4 adds it once more per skipped position."""
    s = torch.zeros(2, 1, 3)  # logits: uniform student over (0, 1, EOS=2)
    t = torch.tensor([0.495, 0.495, 0.01]).log().expand(2, 1, 3)
    tok, mask = torch.tensor([[0], [2]]), torch.ones(2, 1)
    per = {
        r: distil.distil_loss(
            s, tok, mask, teacher_logits=t, stop=r, reduction="none", horizon=1 if r != "horizon" else 4
        )
        for r in distil.STOP_RULES
    }
    assert torch.allclose(per["surprise"] - per["literal"], -torch.tensor([0.495, 0.01]).log())
    assert torch.allclose(
        per["horizon"] - per["literal"], -4 * torch.tensor([0.495, 0.01]).log()
    )  # 3 skipped


def test_token_level_expected_gradient_is_the_local_term_only():
    theta, teacher = make_tables(1)
    tokens, mask, sid = batch(SEQS)
    s_logits, t_logits = student_teacher_logits(theta, teacher, sid)
    prob = seq_logprob(theta, tokens, mask, sid).exp().detach()
    per = distil.distil_loss(
        s_logits, tokens, mask, teacher_logits=t_logits, sequence_level=False, reduction="none"
    )
    g_tok = grad((prob * per).sum(), theta)
    g_local = grad(exact_objective(theta, teacher, tokens, mask, sid, through_states=False), theta)
    g_full = grad(exact_objective(theta, teacher, tokens, mask, sid), theta)
    assert torch.allclose(g_tok, g_local, atol=1e-12)
    assert (g_tok - g_full).abs().max() > 1e-3  # the future-credit term is not zero here


def test_future_cost_kl_gives_the_gradient_of_the_expected_kl():
    theta, teacher = make_tables(2)
    tokens, mask, sid = batch(SEQS)
    s_logits, t_logits = student_teacher_logits(theta, teacher, sid)
    prob = seq_logprob(theta, tokens, mask, sid).exp().detach()
    per = distil.distil_loss(
        s_logits, tokens, mask, teacher_logits=t_logits, future_cost="kl", stop="literal", reduction="none"
    )
    g = grad((prob * per).sum(), theta)
    assert torch.allclose(
        g, grad(exact_objective(theta, teacher, tokens, mask, sid, cost="kl"), theta), atol=1e-12
    )
    assert (g - grad(exact_objective(theta, teacher, tokens, mask, sid), theta)).abs().max() > 1e-3


@pytest.mark.parametrize("on_states", (False, True))
def test_leave_one_out_baseline_keeps_the_gradient_unbiased(on_states):
    """Also with costs on a set S (no score term after the exit, where every cost-to-go is 0)."""
    theta, teacher = make_tables(3)
    pairs = [(a, b) for a in SEQS for b in SEQS]
    seqs = [y for pair in pairs for y in pair]
    tokens, mask, sid = batch(seqs, pad=-1)  # pad ids must be ignored
    s_logits, t_logits = student_teacher_logits(theta, teacher, sid)
    prob = seq_logprob(theta, tokens, mask, sid).exp().detach().view(-1, 2)
    w = prob.prod(1, keepdim=True).expand(-1, 2).reshape(-1) / 2  # P(pair) · (mean over the group)
    t1, m1, s1 = batch(SEQS)
    on_s = on_s1 = None
    if on_states:
        on_s = torch.tensor([[1 not in y[:t] for t in range(D)] for y in seqs]) & mask.bool()
        on_s1 = without_token_1(m1)
    per = distil.distil_loss(
        s_logits,
        tokens,
        mask,
        teacher_logits=t_logits,
        baseline="loo",
        group_size=2,
        reduction="none",
        states=on_s,
    )
    L = exact_objective(theta, teacher, t1, m1, s1, stop=distil.STOP_RULES[0], states=on_s1)
    assert torch.allclose(grad((w * per).sum(), theta), grad(L, theta), atol=1e-12)


def test_leave_one_out_subtracts_the_mean_cost_to_go_of_the_other_rollouts():
    g = torch.Generator().manual_seed(17)
    B, T, V_, G = 6, 4, 5, 3
    s = torch.randn(B, T, V_, generator=g).requires_grad_()
    t = torch.randn(B, T, V_, generator=g)
    tok = torch.randint(0, V_, (B, T), generator=g)
    mask = torch.ones(B, T)
    mask[1, 3] = mask[4, 2:] = 0
    g_none = grad(distil.distil_loss(s, tok, mask, teacher_logits=t, stop="literal"), s)
    g_loo = grad(
        distil.distil_loss(s, tok, mask, teacher_logits=t, baseline="loo", group_size=G, stop="literal"), s
    )
    cost = (distil.forward_ce(t, s) * mask).detach()
    to_go = torch.stack([cost[:, u + 1 :].sum(-1) for u in range(T)], -1)
    grp = to_go.view(-1, G, T)
    b = ((grp.sum(1, keepdim=True) - grp) / (G - 1)).view(B, T)  # mean over the *other* rollouts
    score = torch.nn.functional.one_hot(tok, V_) - torch.softmax(s, -1).detach()  # ∇_z log π(y_t)
    expect = -(b * mask).unsqueeze(-1) * score / B
    assert torch.allclose(g_loo - g_none, expect, atol=1e-12)


def test_leave_one_out_lowers_the_variance_of_the_gradient_estimate():
    """Seeded Monte Carlo with groups of G = 8 rollouts: same mean (tested above), smaller variance.
    (With G = 2 the other rollout is a noisy baseline and need not help: Var(C_i − C_j) = 2 Var C.)"""
    theta, teacher = make_tables(8)
    tokens, mask, sid = batch(SEQS)
    prob = seq_logprob(theta, tokens, mask, sid).exp().detach()
    G, n_groups = 8, 200
    draws = torch.multinomial(
        prob, G * n_groups, replacement=True, generator=torch.Generator().manual_seed(9)
    )
    var = {}
    for base in ("none", "loo"):
        grads = torch.stack(
            [
                grad(
                    distil.distil_loss(
                        theta[sid[d]],
                        tokens[d],
                        mask[d],
                        teacher_logits=teacher[sid[d]],
                        baseline=base,
                        group_size=G,
                    ),
                    theta,
                )
                for d in draws.view(n_groups, G)
            ]
        )
        var[base] = grads.var(0).sum()
    assert var["loo"] < 0.8 * var["none"], var  # measured here: 0.66×


def test_sampled_teacher_estimator_is_unbiased_in_value_and_gradient():
    theta, teacher = make_tables(4)
    rows, weights, samples = [], [], []
    q = torch.softmax(teacher, -1)
    for y in SEQS:
        for a in itertools.product(range(V), repeat=D):  # one teacher sample per position
            w = 1.0
            for t in range(D):
                w *= q[STATES[y[:t]], a[t]].item() if t < len(y) else 1.0 / V
            rows.append(y), weights.append(w), samples.append(a)
    tokens, mask, sid = batch(rows)
    s_logits = theta[sid]
    prob = seq_logprob(theta, tokens, mask, sid).exp().detach() * torch.tensor(weights)
    t_tokens = torch.tensor(samples).unsqueeze(-1)  # (N, D, K=1)
    t1, m1, s1 = batch(SEQS)
    for stop, end in (
        ("literal", "literal"),
        ("surprise", "series1"),
        ("horizon", "series1_horizon"),
    ):  # σ cut at one term
        per = distil.distil_loss(s_logits, tokens, mask, teacher_tokens=t_tokens, stop=stop, reduction="none")
        L = exact_objective(theta, teacher, t1, m1, s1, stop=end)
        assert torch.allclose((prob * per).sum(), L)
        assert torch.allclose(grad((prob * per).sum(), theta), grad(L, theta), atol=1e-12)


def test_sampled_end_surprise_is_the_truncated_series_of_minus_log_p():
    """K samples per position: E[σ_K] = Σ_{k≤K} (1−p)^k / k, enumerated over all K-tuples of samples."""
    q = torch.tensor([0.2, 0.5, 0.3])  # the teacher at the last state; the student's last token is 0
    K, on, tok = 3, torch.ones(1, 1, dtype=torch.bool), torch.zeros(1, 1, dtype=torch.long)
    expect = sum((1 - q[0]) ** k / k for k in range(1, K + 1))
    total = sum(
        q[list(a)].prod() * distil.surprise_at(None, torch.tensor([[a]]), tok, on)[0, 0]
        for a in itertools.product(range(3), repeat=K)
    )
    assert torch.allclose(total, expect)
    assert torch.allclose(distil.surprise_at(q.log().view(1, 1, 3), None, tok, on), -q[:1].log().view(1, 1))


def test_topk_with_all_tokens_equals_the_full_loss():
    theta, teacher = make_tables(5)
    tokens, mask, sid = batch(SEQS)
    s_logits, t_logits = student_teacher_logits(theta, teacher, sid)
    full = distil.distil_loss(s_logits, tokens, mask, teacher_logits=t_logits)
    for tail in (True, False):
        top = distil.distil_loss(s_logits, tokens, mask, teacher_logits=t_logits, topk=V, tail=tail)
        assert torch.allclose(full, top)
        assert torch.allclose(grad(full, theta), grad(top, theta))
    part = distil.distil_loss(s_logits, tokens, mask, teacher_logits=t_logits, topk=2, tail=True)
    assert part <= full + 1e-12


def test_reductions_sum_mean_and_token_mean():
    theta, teacher = make_tables(6)
    tokens, mask, sid = batch(SEQS)
    s_logits, t_logits = student_teacher_logits(theta, teacher, sid)
    per = distil.distil_loss(
        s_logits, tokens, mask, teacher_logits=t_logits, stop="literal", reduction="none"
    )
    expect = (distil.forward_ce(t_logits, s_logits) * mask).sum(-1)
    assert torch.allclose(per, expect)
    assert torch.allclose(
        distil.distil_loss(s_logits, tokens, mask, teacher_logits=t_logits, stop="literal"), per.mean()
    )
    tm = distil.distil_loss(
        s_logits, tokens, mask, teacher_logits=t_logits, stop="literal", reduction="token_mean"
    )
    assert torch.allclose(tm, per.sum() / mask.sum())


# -----------------------------------------------------------------------------
# Masked positions change neither the loss nor any gradient


def garbage_at_masked(x, mask, value):
    m = mask.bool().view(*mask.shape, *([1] * (x.dim() - mask.dim())))
    return torch.where(m, x, torch.full_like(x, value))


ALL_LOSSES = [
    ("distil", lambda s, t, tok, m: distil.distil_loss(s, tok, m, teacher_logits=t)),
    (
        "distil_loo",
        lambda s, t, tok, m: distil.distil_loss(s, tok, m, teacher_logits=t, baseline="loo", group_size=3),
    ),
    (
        "distil_kl_topk",
        lambda s, t, tok, m: distil.distil_loss(s, tok, m, teacher_logits=t, future_cost="kl", topk=2),
    ),
    (
        "distil_token",
        lambda s, t, tok, m: distil.distil_loss(s, tok, m, teacher_logits=t, sequence_level=False),
    ),
    ("sdpo", lambda s, t, tok, m: distil.sdpo_loss(s, t, m)),
    ("sdpo_sampled", lambda s, t, tok, m: distil.sdpo_loss(s, t, m, tokens=tok, sampled=True)),
    ("opsd", lambda s, t, tok, m: distil.opsd_loss(s, t, m)),
    ("grpo", lambda s, t, tok, m: distil.grpo_loss(s, tok, m, torch.tensor([1.0, 0, 1, 0, 0, 1]), 3)),
    ("offline", lambda s, t, tok, m: distil.offline_loss(s, tok, m)),
    (
        "distil_sampled",
        lambda s, t, tok, m: distil.distil_loss(
            s, tok, m, teacher_tokens=torch.stack([tok, (tok + 1) % 4], -1)
        ),
    ),
]


@pytest.mark.parametrize("name,loss_fn", ALL_LOSSES, ids=[n for n, _ in ALL_LOSSES])
def test_masked_positions_change_neither_loss_nor_gradient(name, loss_fn):
    s = rand_logits(6, 5, 4, seed=20).requires_grad_()
    t = rand_logits(6, 5, 4, seed=21)
    tok = torch.randint(0, 4, (6, 5), generator=torch.Generator().manual_seed(22))
    mask = torch.tensor([[0, 1, 1, 1, 0]] * 3 + [[0, 0, 1, 1, 1]] * 3, dtype=torch.float64)
    clean = loss_fn(s, t, tok, mask)
    g_clean = grad(clean, s)
    s2 = garbage_at_masked(s.detach(), mask, float("nan")).requires_grad_()
    dirty = loss_fn(s2, garbage_at_masked(t, mask, float("nan")), garbage_at_masked(tok, mask, -100), mask)
    g_dirty = grad(dirty, s2)
    assert torch.allclose(clean, dirty)
    assert torch.equal(g_dirty * (1 - mask).unsqueeze(-1), torch.zeros_like(g_dirty))
    assert torch.allclose(g_clean, g_dirty)


# -----------------------------------------------------------------------------
# Baselines' estimators


def test_sdpo_sampled_token_surrogate_gradient_equals_full_reverse_kl_gradient():
    s = rand_logits(1, 1, 5, seed=30).requires_grad_()
    t = rand_logits(1, 1, 5, seed=31)
    mask = torch.ones(1, 1)
    pi = torch.softmax(s, -1).detach().view(-1)
    g = sum(
        pi[a] * grad(distil.sdpo_loss(s, t, mask, tokens=torch.tensor([[a]]), sampled=True), s)
        for a in range(5)
    )
    assert torch.allclose(g, grad(distil.sdpo_loss(s, t, mask), s), atol=1e-12)
    value = sum(
        pi[a] * distil.sdpo_loss(s, t, mask, tokens=torch.tensor([[a]]), sampled=True) for a in range(5)
    )
    assert torch.allclose(value, distil.reverse_kl(s, t).sum())


def test_grpo_without_std_is_unbiased_for_scaled_reward_gradient():
    theta, _ = make_tables(7)
    reward = torch.tensor([float((3 * i + 1) % 4 == 0) for i in range(N)])
    pairs = [(a, b) for a in range(N) for b in range(N)]
    tokens, mask, sid = batch([SEQS[i] for p in pairs for i in p])
    r = torch.tensor([reward[i].item() for p in pairs for i in p])
    prob = seq_logprob(theta, tokens, mask, sid).exp().detach().view(-1, 2)
    w = prob.prod(1, keepdim=True).expand(-1, 2).reshape(-1) / 2
    per = distil.grpo_loss(theta[sid], tokens, mask, r, group_size=2, std_normalize=False, reduction="none")
    t1, m1, s1 = batch(SEQS)
    J = (seq_logprob(theta, t1, m1, s1).exp() * reward).sum()
    assert torch.allclose(grad((w * per).sum(), theta), -0.5 * grad(J, theta), atol=1e-12)  # (G−1)/G = 1/2


def test_group_advantages_normalise_within_each_group_only():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    adv = distil.group_advantages(r, 3)
    assert torch.allclose(adv[3:], torch.zeros(3))  # a group with equal rewards carries no signal
    g = r[:3]
    assert torch.allclose(adv[:3], (g - g.mean()) / (g.std() + 1e-4))
    assert torch.allclose(distil.group_advantages(r, 3, std_normalize=False)[:3], g - g.mean())


def test_offline_loss_is_the_negative_log_likelihood_of_teacher_samples():
    s = rand_logits(2, 3, 4, seed=40)
    tok = torch.tensor([[0, 1, 2], [3, 3, 0]])
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0]])
    nll = -(torch.log_softmax(s, -1).gather(-1, tok.unsqueeze(-1)).squeeze(-1) * mask).sum(-1)
    assert torch.allclose(distil.offline_loss(s, tok, mask), nll.mean())


# -----------------------------------------------------------------------------
# Bad input gets a clear error


def bad_inputs():
    s = torch.zeros(4, 3, 5)
    tok = torch.zeros(4, 3, dtype=torch.long)
    m = torch.ones(4, 3)
    t = torch.zeros(4, 3, 5)
    nan_t = t.clone()
    nan_t[0, 0, 0] = float("nan")
    big_tok = tok.clone()
    big_tok[1, 1] = 5
    return [
        ("student_logits must be", lambda: distil.distil_loss(s[0], tok, m, teacher_logits=t)),
        ("mask must be", lambda: distil.distil_loss(s, tok, m[:, :2], teacher_logits=t)),
        ("mask must hold only 0 and 1", lambda: distil.distil_loss(s, tok, 2 * m, teacher_logits=t)),
        ("tokens must be", lambda: distil.distil_loss(s, tok[:, :2], m, teacher_logits=t)),
        ("^tokens must be in", lambda: distil.distil_loss(s, big_tok, m, teacher_logits=t)),
        (
            "must match student_logits",
            lambda: distil.distil_loss(s, tok, m, teacher_logits=torch.zeros(4, 3, 6)),
        ),
        ("finite or -inf", lambda: distil.distil_loss(s, tok, m, teacher_logits=nan_t)),
        (
            "finite or -inf",
            lambda: distil.distil_loss(s, tok, m, teacher_logits=torch.full((4, 3, 5), -math.inf)),
        ),
        ("exactly one of", lambda: distil.distil_loss(s, tok, m)),
        (
            "exactly one of",
            lambda: distil.distil_loss(s, tok, m, teacher_logits=t, teacher_tokens=tok[..., None]),
        ),
        ("teacher_tokens must be", lambda: distil.distil_loss(s, tok, m, teacher_tokens=tok)),
        (
            "teacher_tokens must be in",
            lambda: distil.distil_loss(s, tok, m, teacher_tokens=big_tok[..., None]),
        ),
        ("teacher_tokens must be integer", lambda: distil.distil_loss(s, tok, m, teacher_tokens=t[..., :1])),
        (
            "future_cost='kl' need teacher_logits",
            lambda: distil.distil_loss(s, tok, m, teacher_tokens=tok[..., None], future_cost="kl"),
        ),
        ("group_size=3 must be", lambda: distil.distil_loss(s, tok, m, teacher_logits=t, group_size=3)),
        ("ends_out must be", lambda: distil.distil_loss(s, tok, m, teacher_logits=t, ends_out=m[0, :1])),
        ("needs group_size >= 2", lambda: distil.distil_loss(s, tok, m, teacher_logits=t, baseline="loo")),
        ("baseline must be one of", lambda: distil.distil_loss(s, tok, m, teacher_logits=t, baseline="mean")),
        (
            "future_cost must be one of",
            lambda: distil.distil_loss(s, tok, m, teacher_logits=t, future_cost="x"),
        ),
        (
            "reduction must be one of",
            lambda: distil.distil_loss(s, tok, m, teacher_logits=t, reduction="avg"),
        ),
        ("stop must be one of", lambda: distil.distil_loss(s, tok, m, teacher_logits=t, stop="early")),
        (
            "horizon must be an int >= the longest response",
            lambda: distil.distil_loss(s, tok, m, teacher_logits=t, horizon=2),
        ),
        (
            "infinite price",
            lambda: distil.distil_loss(
                s, tok, m, teacher_logits=t.index_fill(-1, torch.tensor([0]), -math.inf)
            ),
        ),
        ("topk must be in", lambda: distil.distil_loss(s, tok, m, teacher_logits=t, topk=6)),
        (
            "states must leave S for good",
            lambda: distil.distil_loss(
                s, tok, m, teacher_logits=t, states=torch.tensor([[0, 1, 1]] * 4).bool()
            ),
        ),
        ("rewards must be", lambda: distil.grpo_loss(s, tok, m, torch.zeros(3), 2)),
        ("needs the sampled tokens", lambda: distil.sdpo_loss(s, t, m, sampled=True)),
    ]


@pytest.mark.parametrize(
    "message,call", bad_inputs(), ids=[f"{i}-{m[:20]}" for i, (m, _) in enumerate(bad_inputs())]
)
def test_bad_input_raises_a_clear_value_error(message, call):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_bf16_logits_are_upcast_before_log_softmax():
    t, s = rand_logits(3, 50, seed=50), rand_logits(3, 50, seed=51)
    exact = distil.forward_ce(t, s)
    half = distil.forward_ce(t.bfloat16(), s.bfloat16())
    assert half.dtype == torch.float32
    assert torch.allclose(half.double(), exact, atol=0.05)
