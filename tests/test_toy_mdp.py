"""Tests for toy_mdp.py: hand-solved values, the gymnasium env, the exact gradients against distil.py's
surrogate enumerated over all rollouts, and the closed forms of the update rules."""

import itertools
import json

import gymnasium as gym
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import distil
import theory_checks
import toy_mdp as tm

F64 = tm.DTYPE  # float64: the exact tables


def small_instance():
    """H=2, A=2, rewards at leaves (00, 01, 10, 11) = (1, 0, 0, 1); a hand-written policy."""
    mdp = tm.TreeMDP(2, 2, torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=F64))
    pi = torch.tensor([[0.8, 0.2], [0.9, 0.1], [0.3, 0.7]], dtype=F64)
    return mdp, pi


def test_dynamic_programming_matches_hand_solved_values():
    mdp, pi = small_instance()
    V, Q = tm.values(pi, mdp)
    assert torch.allclose(Q, torch.tensor([[0.9, 0.7], [1.0, 0.0], [0.0, 1.0]], dtype=F64))
    assert torch.allclose(V, torch.tensor([0.8 * 0.9 + 0.2 * 0.7, 0.9, 0.7], dtype=F64))
    assert torch.allclose(tm.occupancy(pi, mdp), torch.tensor([1.0, 0.8, 0.2], dtype=F64))
    assert torch.allclose(tm.leaf_probs(pi, mdp), torch.tensor([0.72, 0.08, 0.06, 0.14], dtype=F64))
    assert torch.isclose(tm.expected_reward(pi, mdp), torch.tensor(0.86, dtype=F64))
    assert torch.allclose(tm.optimal_q(mdp), torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=F64))


def test_occupancy_sums_to_one_per_depth_on_random_trees():
    mdp = tm.random_tree(4, 3, n=5, seed=1)
    pi = torch.softmax(torch.randn(5, mdp.n_states, 3, dtype=F64), -1)
    d = tm.occupancy(pi, mdp)
    for t in range(mdp.horizon):
        assert torch.allclose(d[:, mdp.depth_slice(t)].sum(-1), torch.ones(5, dtype=F64))
    assert torch.allclose(tm.leaf_probs(pi, mdp).sum(-1), torch.ones(5, dtype=F64))


def test_env_passes_gymnasium_checker_and_follows_the_tree():
    env = gym.make("DistIL/TreeMDP-v0", horizon=3, branching=2, instance_seed=4)
    check_env(env.unwrapped)
    raw = env.unwrapped
    obs, _ = env.reset(seed=0)
    path = [1, 0, 1]
    for i, a in enumerate(path):
        obs, reward, terminated, truncated, _ = env.step(a)
        assert terminated == (i == len(path) - 1) and not truncated
    leaf = int("".join(map(str, path)), 2)
    assert obs == raw.mdp.n_states + leaf and reward == raw.mdp.rewards[leaf].item()


def test_env_with_end_action_ends_at_once_and_passes_the_checker():
    env = gym.make("DistIL/TreeMDP-v0", horizon=3, branching=3, instance_seed=4, end=True)
    check_env(env.unwrapped)
    raw = env.unwrapped
    env.reset(seed=0)
    env.step(1)
    obs, reward, terminated, _, info = env.step(2)  # END after one token: a response of length 2
    leaf = 1 * 9 + 2 * 3 + 2  # the path (1, END, END)
    assert terminated and info["length"] == 2 and raw.mdp.reachable[leaf]
    assert obs == raw.mdp.n_states + leaf and reward == raw.mdp.rewards[leaf].item()
    assert raw.mdp.rewards[~raw.mdp.reachable].abs().sum() == 0  # unreachable leaves carry no reward


def test_env_rejects_invalid_actions_and_steps_after_the_end():
    env = tm.TreeMDPEnv(horizon=1, branching=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be"):
        env.step(5)
    env.step(0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_bad_trees_and_unnormalised_teachers_raise_clear_errors():
    with pytest.raises(ValueError, match="A\\^H"):
        tm.TreeMDP(2, 3, torch.zeros(8, dtype=F64))
    with pytest.raises(ValueError, match="branching >= 2"):
        tm.TreeMDP(2, 1, torch.zeros(1, dtype=F64))
    with pytest.raises(ValueError, match="sum to 1"):
        tm.check_distribution(torch.tensor([[0.5, 0.6]], dtype=F64))
    with pytest.raises(ValueError, match="unknown objective"):
        tm.objective(
            torch.zeros(3, 2, dtype=F64), small_instance()[0], torch.full((3, 2), 0.5, dtype=F64), "rkl"
        )
    with pytest.raises(ValueError, match="no closed-form proximal"):
        tm.update(
            torch.zeros(3, 2, dtype=F64),
            small_instance()[0],
            torch.full((3, 2), 0.5, dtype=F64),
            "opsd",
            "prox",
            0.1,
        )


# -----------------------------------------------------------------------------
# The exact tabular gradients are the expectation of distil.py's surrogates over all rollouts


def rollout_batch(mdp, theta, teacher):
    """All A^H rollouts as a batch for distil.py: tokens, student/teacher logits per position, the
    response mask (with an END action: up to and including the first END), π(y) (0 if unreachable)."""
    A, H = mdp.branching, mdp.horizon
    paths = list(itertools.product(range(A), repeat=H))
    tokens = torch.tensor(paths)
    sid = torch.zeros(len(paths), H, dtype=torch.long)
    for n, path in enumerate(paths):
        s = 0
        for t, a in enumerate(path):
            sid[n, t], s = s, mdp.child(s, a)
    prob = tm.leaf_probs(torch.softmax(theta, -1), mdp).detach()
    return tokens, theta[sid], teacher.log()[sid], mdp.alive[sid].to(F64), prob


@pytest.mark.parametrize("end", [False, True], ids=["fixed_depth", "with_end"])
@pytest.mark.parametrize("stop", distil.STOP_RULES)
@pytest.mark.parametrize(
    "kind,kwargs",
    [("distil", {}), ("distil_token", {"sequence_level": False}), ("distil_kl", {"future_cost": "kl"})],
)
def test_tabular_gradient_equals_expected_distil_surrogate_gradient(kind, kwargs, stop, end):
    mdp = tm.random_tree(3, 3, seed=2, end=end)
    mdp = tm.TreeMDP(3, 3, mdp.rewards[0], end)
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(mdp.n_states, 3, generator=g, dtype=F64).requires_grad_()
    teacher = torch.softmax(torch.randn(mdp.n_states, 3, generator=g, dtype=F64), -1)
    tokens, s_logits, t_logits, mask, prob = rollout_batch(mdp, theta, teacher)
    per = distil.distil_loss(
        s_logits, tokens, mask, teacher_logits=t_logits, reduction="none", stop=stop, **kwargs
    )
    (g_sur,) = torch.autograd.grad((prob * per).sum(), theta)
    assert torch.allclose(g_sur, tm.gradient(theta, mdp, teacher, kind, stop), atol=1e-12)
    if kind == "distil":  # the value estimates the objective too
        assert torch.allclose((prob * per).sum(), tm.objective(theta, mdp, teacher, kind, stop))


def test_end_trees_have_variable_length_and_a_forced_end():
    """H=2, A=3 with END=2: responses (END), (a, END), (a, b) for a, b in {0, 1}; 7 of 9 leaves reachable."""
    mdp = tm.TreeMDP(2, 3, torch.zeros(9, dtype=F64), end=True)
    assert mdp.alive.tolist() == [True, True, True, False]
    assert mdp.reachable.int().tolist() == [1, 1, 1, 1, 1, 1, 0, 0, 1]
    pi = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2], [0.4, 0.4, 0.2]], dtype=F64)
    played = tm.played(pi, mdp)
    assert played[3].tolist() == [0.0, 0.0, 1.0] and torch.equal(played[:3], pi[:3])
    assert torch.allclose(
        tm.leaf_probs(pi, mdp), torch.tensor([0.05, 0.05, 0.4, 0.18, 0.06, 0.06, 0, 0, 0.2], dtype=F64)
    )
    assert torch.isclose(
        (tm.occupancy(pi, mdp) * mdp.alive).sum(), torch.tensor(1.8, dtype=F64)
    )  # mean length


def test_end_surprise_is_the_expected_teacher_surprise_at_the_last_action():
    mdp = tm.TreeMDP(2, 3, torch.zeros(9, dtype=F64), end=True)
    pi = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2], [1 / 3] * 3], dtype=F64)
    q = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25], [1 / 3] * 3], dtype=F64)
    lq = -q.log()
    by_hand = 0.2 * lq[0, 2] + 0.5 * (pi[1] * lq[1]).sum() + 0.3 * (pi[2] * lq[2]).sum()
    assert torch.isclose(tm.end_surprise(pi, mdp, q), by_hand)
    held = (
        2 * 0.2 * lq[0, 2] + 0.5 * (pi[1] * lq[1]).sum() + 0.3 * (pi[2] * lq[2]).sum()
    )  # the empty one skips 1
    assert torch.isclose(tm.end_surprise(pi, mdp, q, held=True), held)


def test_sampled_env_rollouts_estimate_the_exact_gradient():
    env = tm.TreeMDPEnv(horizon=3, branching=2, instance_seed=5)
    mdp = env.mdp
    g = torch.Generator().manual_seed(6)
    theta = torch.randn(mdp.n_states, 2, generator=g, dtype=F64).requires_grad_()
    teacher = torch.softmax(torch.randn(mdp.n_states, 2, generator=g, dtype=F64), -1)
    pi = torch.softmax(theta, -1).detach()
    n, rows, sids = 4000, [], []
    for i in range(n):
        s, _ = env.reset(seed=i)
        path, states, done = [], [], False
        while not done:
            a = torch.multinomial(pi[s], 1, generator=g).item()
            states.append(s), path.append(a)
            s, _, done, _, _ = env.step(a)
        rows.append(path), sids.append(states)
    tokens, sid = torch.tensor(rows), torch.tensor(sids)
    loss = distil.distil_loss(
        theta[sid], tokens, torch.ones(n, 3, dtype=F64), teacher_logits=teacher.log()[sid]
    )
    (g_mc,) = torch.autograd.grad(loss, theta)
    g_exact = tm.gradient(theta, mdp, teacher, "distil")
    cos = (g_mc * g_exact).sum() / (g_mc.norm() * g_exact.norm())
    assert cos > 0.97 and (g_mc.norm() / g_exact.norm() - 1).abs() < 0.1


# -----------------------------------------------------------------------------
# The aliased student and costs on a set S (theory_checks T8)


def state_ids(mdp):
    """The state id at each position of every one of the A^H responses (itertools.product order)."""
    paths = list(itertools.product(range(mdp.branching), repeat=mdp.horizon))
    sid = torch.zeros(len(paths), mdp.horizon, dtype=torch.long)
    for n, path in enumerate(paths):
        s = 0
        for t, a in enumerate(path):
            sid[n, t], s = s, mdp.child(s, a)
    return sid


def random_support(mdp, seed):
    """A support S as toy_mdp builds it: the states reached by actions a random 'expert' plays."""
    best = torch.rand(mdp.n_states, mdp.branching, generator=torch.Generator().manual_seed(seed)) < 0.6
    return tm.support_states(mdp, best)


def test_aliased_student_seeing_the_full_prefix_is_the_tabular_student():
    mdp = tm.random_tree(3, 3, seed=21, end=True)
    mdp = tm.TreeMDP(3, 3, mdp.rewards[0], True)
    g = torch.Generator().manual_seed(22)
    theta = torch.randn(mdp.n_states, 3, generator=g, dtype=F64)
    q = torch.softmax(torch.randn(mdp.n_states, 3, generator=g, dtype=F64), -1)
    ident, S = torch.arange(mdp.n_states), random_support(mdp, 23)
    for kind in ("distil", "distil_token", "distil_kl", "grpo"):
        for stop in distil.STOP_RULES:
            for states, priced in ((None, True), (S, True), (S, False)):
                args = (mdp, q, kind, stop)
                assert torch.allclose(
                    tm.gradient(theta, *args, ident, states, priced),
                    tm.gradient(theta, *args, None, states, priced),
                    atol=1e-14,
                )
    for rule in ("gd", "npg"):
        assert torch.allclose(
            tm.update(theta, mdp, q, "distil", rule, 0.1, "horizon", ident),
            tm.update(theta, mdp, q, "distil", rule, 0.1, "horizon"),
        )


def enumerate_aliased(theta_obs, obs, mdp, q, S, price_exit):
    """Brute force over every response y: π(y) as the product of the aliased student's probabilities,
    J = Σ π(y) r(y) and L_S = Σ π(y) [Σ_{t: s_t ∈ S} H×_t + (H − e + 1) σ_e], e the last
    position on S (price_exit=False: σ only if the response ends on S)."""
    A, H = mdp.branching, mdp.horizon
    logp = torch.log_softmax(theta_obs, -1)
    ce = distil.forward_ce(q.log(), theta_obs[obs])
    J = L = 0.0
    for leaf, path in enumerate(itertools.product(range(A), repeat=H)):
        s, prob, cost, priced = 0, 1.0, 0.0, None
        for t, a in enumerate(path):
            if t > 0 and path[t - 1] == A - 1:  # after END: forced, no cost
                if a != A - 1:
                    prob = prob * 0.0
                continue
            prob = prob * logp[obs[s], a].exp()
            child = mdp.child(s, a)
            is_end = a == A - 1 or t == H - 1
            if S[s]:
                cost = cost + ce[s]
                if is_end or (price_exit and not S[child]):
                    priced = (H - t) * -q[s, a].log()  # e = t + 1: H − e + 1 = H − t
            s = child
        J = J + prob * mdp.rewards[leaf]
        L = L + prob * (cost + (priced if priced is not None else 0.0))
    return J, L


@pytest.mark.parametrize("price_exit", [True, False], ids=["priced_exit", "free_exit"])
def test_aliased_dp_and_support_price_match_brute_force_enumeration(price_exit):
    mdp = tm.random_tree(3, 3, seed=24, end=True)
    mdp = tm.TreeMDP(3, 3, mdp.rewards[0], True)
    g = torch.Generator().manual_seed(25)
    obs = torch.randint(4, (mdp.n_states,), generator=g)  # 13 states seen through 4 observations
    theta = torch.randn(4, 3, generator=g, dtype=F64).requires_grad_()
    q = torch.softmax(torch.randn(mdp.n_states, 3, generator=g, dtype=F64), -1)
    S = random_support(mdp, 26)
    assert 1 < S.sum() < mdp.alive.sum()  # S is a proper, non-trivial subset
    J_enum, L_enum = enumerate_aliased(theta, obs, mdp, q, S, price_exit)
    J_dp = tm.expected_reward(torch.softmax(tm.aliased(theta, obs), -1), mdp)
    L_dp = tm.objective(theta, mdp, q, "distil", "horizon", obs, S, price_exit)
    assert torch.isclose(J_enum, J_dp) and torch.isclose(L_enum, L_dp)
    for enum, dp in ((J_enum, -tm.objective(theta, mdp, q, "grpo", obs=obs)), (L_enum, L_dp)):
        (g_enum,) = torch.autograd.grad(enum, theta, retain_graph=True)
        (g_dp,) = torch.autograd.grad(dp, theta, retain_graph=True)
        assert torch.allclose(g_enum, g_dp, atol=1e-12)


@pytest.mark.parametrize("price_exit", [True, False], ids=["priced_exit", "free_exit"])
@pytest.mark.parametrize("stop", distil.STOP_RULES)
def test_support_objective_equals_expected_distil_loss_with_states(stop, price_exit):
    """toy_mdp's L_S (the exit priced as an end, or free) is distil_loss(states=, price_exit=) on average."""
    mdp = tm.random_tree(3, 3, seed=27, end=True)
    mdp = tm.TreeMDP(3, 3, mdp.rewards[0], True)
    g = torch.Generator().manual_seed(28)
    theta = torch.randn(mdp.n_states, 3, generator=g, dtype=F64).requires_grad_()
    teacher = torch.softmax(torch.randn(mdp.n_states, 3, generator=g, dtype=F64), -1)
    S = random_support(mdp, 29)
    tokens, s_logits, t_logits, mask, prob = rollout_batch(mdp, theta, teacher)
    sid = state_ids(mdp)  # (A^H, H) the state at each position
    per = distil.distil_loss(
        s_logits,
        tokens,
        mask,
        teacher_logits=t_logits,
        reduction="none",
        stop=stop,
        horizon=mdp.horizon,
        states=S[sid] & mask.bool(),
        price_exit=price_exit,
    )
    exact = tm.objective(theta, mdp, teacher, "distil", stop, states=S, price_exit=price_exit)
    assert torch.isclose((prob * per).sum(), exact)
    (g_sur,) = torch.autograd.grad((prob * per).sum(), theta)
    g_exact = tm.gradient(theta, mdp, teacher, "distil", stop, states=S, price_exit=price_exit)
    assert torch.allclose(g_sur, g_exact, atol=1e-12)


def test_support_is_left_for_good_and_its_exits_are_the_actions_off_it():
    mdp = tm.TreeMDP(3, 3, torch.zeros(27, dtype=F64), end=True)
    best = torch.zeros(mdp.n_states, 3, dtype=torch.bool)
    best[0, 0] = best[1, 1] = True  # the expert plays 0, then 1, then anything
    best[5] = True
    S = tm.support_states(mdp, best)
    assert S.nonzero()[:, 0].tolist() == [0, 1, 5]  # root, (0), (0, 1)
    assert tm.exits(mdp, S).nonzero().tolist() == [[0, 1], [1, 0]]  # END and depth H−1 are ends, not exits


# -----------------------------------------------------------------------------
# Update rules: closed forms


def test_npg_steps_have_their_closed_forms():
    mdp = tm.random_tree(3, 3, seed=7)
    g = torch.Generator().manual_seed(8)
    theta = torch.randn(1, mdp.n_states, 3, generator=g, dtype=F64)
    q = torch.softmax(torch.randn(1, mdp.n_states, 3, generator=g, dtype=F64), -1)
    pi, eta = torch.softmax(theta, -1), 0.05
    # logits are defined up to a per-state constant
    center = lambda x: x - x.mean(-1, keepdim=True)  # noqa: E731
    # forward CE: θ ← θ + η (q/π − 1);  reverse KL: θ ← θ − η log(π/q)
    assert torch.allclose(
        center(tm.update(theta, mdp, q, "distil_token", "npg", eta)), center(theta + eta * q / pi)
    )
    assert torch.allclose(
        center(tm.update(theta, mdp, q, "sdpo", "npg", eta)), center(theta - eta * (pi / q).log())
    )
    # policy gradient: θ ← θ + η A^π
    V, Q = tm.values(pi, mdp)
    assert torch.allclose(center(tm.update(theta, mdp, q, "grpo", "npg", eta)), center(theta + eta * Q))


def test_prox_steps_are_arithmetic_and_geometric_mixtures():
    mdp, pi = small_instance()
    q = torch.tensor([[0.1, 0.9], [0.5, 0.5], [0.2, 0.8]], dtype=F64)
    new = torch.softmax(tm.update(pi.log(), mdp, q, "distil_token", "prox", 0.3), -1)
    assert torch.allclose(new, 0.7 * pi + 0.3 * q)
    geo = pi**0.7 * q**0.3
    assert torch.allclose(
        torch.softmax(tm.update(pi.log(), mdp, q, "sdpo", "prox", 0.3), -1), geo / geo.sum(-1, keepdim=True)
    )


def test_reverse_kl_natural_gradient_step_is_its_geometric_mixture():
    mdp = tm.random_tree(2, 3, seed=12)
    g = torch.Generator().manual_seed(13)
    theta = torch.randn(1, mdp.n_states, 3, generator=g, dtype=F64)
    q = torch.softmax(torch.randn(1, mdp.n_states, 3, generator=g, dtype=F64), -1)
    for eta in (0.05, 0.5):
        npg = torch.softmax(tm.update(theta, mdp, q, "sdpo", "npg", eta), -1)
        assert torch.allclose(npg, torch.softmax(tm.update(theta, mdp, q, "sdpo", "prox", eta), -1))


def test_reverse_kl_toward_a_teacher_with_zeros_is_refused_not_nan():
    mdp, pi = small_instance()
    q = tm.success_teacher(pi, mdp)  # exact zeros on failing actions
    assert (q == 0).any()
    with pytest.raises(ValueError, match="probability 0"):
        tm.update(pi.log(), mdp, q, "sdpo", "npg", 0.1)
    assert torch.isfinite(tm.update(pi.log(), mdp, q, "distil", "npg", 0.1)).all()  # forward CE is fine


def test_feedback_teacher_limits_and_expert_teacher():
    mdp = tm.random_tree(3, 3, n=4, seed=14)
    pi = torch.softmax(
        torch.randn(4, mdp.n_states, 3, generator=torch.Generator().manual_seed(15), dtype=F64), -1
    )
    exact = tm.feedback_teacher(pi, mdp, strength=1.0, noise=0.0, prior=1.0, eps=1e-12)
    assert torch.allclose(exact, tm.success_teacher(pi, mdp), atol=1e-9)
    assert torch.allclose(tm.feedback_teacher(pi, mdp, strength=0.0), pi)  # feedback that says nothing
    flat = tm.feedback_teacher(pi, mdp, strength=0.0, prior=0.0)
    assert torch.allclose(flat, torch.full_like(pi, 1 / 3))
    expert = tm.expert_teacher(mdp, temperature=1e-3)
    assert torch.allclose(tm.expected_reward(expert, mdp), mdp.rewards.max(-1).values)


def test_reward_slope_matches_finite_differences():
    mdp = tm.random_tree(3, 2, n=4, binary=False, seed=9)
    g = torch.Generator().manual_seed(10)
    theta = torch.randn(4, mdp.n_states, 2, generator=g, dtype=F64)
    q = torch.softmax(torch.randn(4, mdp.n_states, 2, generator=g, dtype=F64), -1)
    h = 1e-6
    for kind, rule in [("distil", "gd"), ("sdpo", "npg"), ("distil_token", "prox"), ("opsd", "gd")]:
        fd = (
            tm.expected_reward(torch.softmax(tm.update(theta, mdp, q, kind, rule, h), -1), mdp)
            - tm.expected_reward(torch.softmax(theta, -1), mdp)
        ) / h
        assert torch.allclose(tm.reward_slope(theta, mdp, q, kind, rule), fd, atol=1e-5)


def test_success_teacher_is_the_posterior_given_success():
    mdp = tm.random_tree(3, 3, n=3, seed=11)
    pi = torch.softmax(torch.randn(3, mdp.n_states, 3, dtype=F64), -1)
    q = tm.success_teacher(pi, mdp)
    tm.check_distribution(q)
    posterior = tm.leaf_probs(pi, mdp) * mdp.rewards
    posterior = posterior / posterior.sum(-1, keepdim=True)
    assert torch.allclose(tm.leaf_probs(q, mdp), posterior)
    assert torch.allclose(tm.expected_reward(q, mdp), torch.ones(3, dtype=F64))  # binary rewards


# -----------------------------------------------------------------------------


def test_theory_checks_pass_on_a_reduced_budget_and_write_their_instances(tmp_path):
    out = tmp_path / "results.json"
    cfg = theory_checks.parse_args(
        [
            "--n_bandits",
            "1500",
            "--n_trees",
            "300",
            "--figures",
            str(tmp_path / "fig"),
            "--json",
            str(out),
        ]
    )
    assert theory_checks.main(cfg)
    results = {r["name"]: r for r in json.loads(out.read_text())}
    assert sorted(results) == ["T1", "T2", "T3", "T4", "T5", "T7", "T8"]  # T6 removed; no renumbering
    assert all(r["passed"] for r in results.values())
    t1 = results["T1"]["data"]["instance"]  # the counterexample can be recomputed from the JSON alone
    mdp = tm.TreeMDP(1, 3, torch.tensor([t1["rewards"]], dtype=F64))
    q, pi = torch.tensor([[t1["teacher"]]], dtype=F64), torch.tensor([[t1["pi"]]], dtype=F64)
    assert (
        tm.reward_slope(pi.log(), mdp, q, "sdpo", "npg").item()
        < 0
        < tm.expected_reward(q, mdp) - tm.expected_reward(pi, mdp)
    )
    assert len(list((tmp_path / "fig").glob("*.png"))) == 6
    mdp, q = theory_checks.stop_instance(True)  # T7's teacher, rebuilt from the code
    assert tm.expected_reward(q, mdp).item() == pytest.approx(results["T7"]["data"]["J_teacher"][0])
    t8 = results["T8"]["data"]  # T8's numbers, and its expert and support rebuilt from the code
    blind = t8["rows"]["aliased/token, all"]
    assert all(t8["claims"].values()) and blind["J_end"][0] < blind["J_start"][0]
    mdp, q, S, _ = theory_checks.t8_instance()
    assert tm.expected_reward(q, mdp).item() > 0.99 and S.sum().item() == 3  # root, (R), (R, R)


def test_only_runs_one_check_and_a_failed_check_makes_main_fail(tmp_path, monkeypatch):
    out = tmp_path / "t3.json"
    cfg = theory_checks.parse_args(["--only", "t3", "--figures", "", "--json", str(out)])
    assert theory_checks.main(cfg) and [r["name"] for r in json.loads(out.read_text())] == ["T3"]
    failing = lambda cfg: theory_checks.Result("T1", "claim", "numbers", False, {})  # noqa: E731
    monkeypatch.setitem(theory_checks.CHECKS, "T1", failing)
    assert not theory_checks.main(theory_checks.parse_args(["--only", "T1", "--figures", ""]))


def test_theory_checks_reject_unknown_checks_and_empty_budgets():
    for argv in (["--only", "T9"], ["--only", "T6"], ["--n_trees", "0"], ["--no_such_flag", "1"]):
        with pytest.raises(SystemExit):
            theory_checks.parse_args(argv)
