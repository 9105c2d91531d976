"""
toy_mdp.py — exact tabular token trees: the finite-horizon MDP on which DistIL's theory is checked.

Generation as an MDP whose states are prefixes (numbered breadth first); the reward, the probability
that the response is judged correct, arrives at a leaf. With branching A and horizon H every quantity
is an exact dynamic program over all A^H rollouts, so theory_checks.py's claims are computations.
With π(a|s) = softmax(θ_s), a teacher q, r(leaf) ∈ [0, 1] and distil.py's per-position costs c:

    occupancy   d(root) = 1,  d(child(s, a)) = d(s) π(a|s)
    values      V(leaf) = r,  Q(s, a) = V(child(s, a)),  V(s) = Σ_a π(a|s) Q(s, a),  J = V(root)
    objectives  sequence level Σ_s d_θ(s) c(q_s, π_s) (d differentiated: the future credit appears by
                itself), token level Σ_s sg(d(s)) c(q_s, π_s); c = H× (distil), KL(q‖π) (distil_kl),
                KL(π‖q) (sdpo), JSD_β (opsd); grpo = −J (the exact policy gradient)
    teachers    success q = π Q / V = π(·|s, success);  feedback q ∝ π^κ (Q + ε)^λ exp(σ ξ);
                expert q = softmax(Q*/τ)
    rules       gd θ ← θ − η ∇L;  npg θ_s ← θ_s − η ∇_{θ_s} L / (d(s) π_s)
                (x = g/(dπ) solves F x = g for the tabular Fisher, as g sums to 0);
                prox π_s ← (1−η) π_s + η q_s (fwd CE), π_s ∝ π_s^{1−η} q_s^η (reverse KL, npg)

Variants: `obs=` an aliased student, one logit row per observation; `states=` costs on a set S only,
leaving S priced as an end (T8); `end=True` action A−1 is END, after which END is forced at no cost
(`played`), so a response is the prefix up to its first END and every DP above is unchanged.
Simplifications: 1. deterministic transitions (a token tree); 2. reward only at the leaves;
3. batched over a leading axis of instances. `TreeMDPEnv` (`DistIL/TreeMDP-v0`) is the gymnasium view.

Run: `python toy_mdp.py` prints J, the teacher's J and one step of every objective and rule.
"""

from dataclasses import dataclass

import gymnasium as gym
import torch

import distil

DTYPE = torch.float64  # exact DP: differences of 1e-12 must be visible (set per tensor, not globally)

OBJECTIVES = ("distil", "distil_token", "distil_kl", "sdpo", "opsd", "grpo")
SEQUENCE_LEVEL = ("distil", "distil_kl", "grpo")  # the occupancy d_θ is differentiated
RULES = ("gd", "npg", "prox")

# -----------------------------------------------------------------------------
# The tree: states are prefixes, numbered breadth first; leaves follow the internal states


@dataclass
class TreeMDP:
    horizon: int  # H: actions per episode (with end: the maximum response length, END included)
    branching: int  # A: actions per state
    rewards: torch.Tensor  # (..., A^H) reward of each leaf, in [0, 1]
    end: bool = False  # action A−1 is END: it ends the response; afterwards END is forced, at no cost

    def __post_init__(self):
        if self.horizon < 1 or self.branching < (3 if self.end else 2):
            raise ValueError(
                f"need H >= 1, branching >= 2 (3 with END), got H={self.horizon}, A={self.branching}"
            )
        if self.rewards.shape[-1] != self.n_leaves:
            raise ValueError(f"rewards must have A^H = {self.n_leaves} leaves, got {self.rewards.shape[-1]}")
        # alive[s]: s is a response state (its prefix holds no END) — where the student acts and pays
        keep = torch.ones(self.branching, dtype=torch.bool)
        keep[-1] = not self.end
        alive = [torch.ones(1, dtype=torch.bool)]
        for _ in range(1, self.horizon):
            alive.append((alive[-1].unsqueeze(-1) & keep).flatten())
        self.alive = torch.cat(alive)

    @property
    def n_states(self):  # internal states (where an action is taken)
        return self.offset(self.horizon)

    @property
    def n_leaves(self):
        return self.branching**self.horizon

    def offset(self, t):  # index of the first state at depth t
        return (self.branching**t - 1) // (self.branching - 1)

    def depth_slice(self, t):
        return slice(self.offset(t), self.offset(t + 1))

    @property
    def reachable(self):  # (A^H,) bool: the leaves a rollout can end at (with end: END, END, ... after END)
        uniform = torch.full((self.n_states, self.branching), 1.0 / self.branching, dtype=DTYPE)
        return leaf_probs(uniform, self) > 0

    @property
    def ends(self):  # (S, A) bool: the actions that end a response: END, and every action at depth H−1
        e = torch.zeros(self.n_states, self.branching, dtype=torch.bool)
        e[self.depth_slice(self.horizon - 1)] = True
        if self.end:
            e[:, -1] = True
        return e

    def child(self, s, a):  # works for every depth; leaves get indices n_states .. n_states+A^H-1
        t = 0
        while self.offset(t + 1) <= s:  # the depth of s
            t += 1
        return self.offset(t + 1) + (s - self.offset(t)) * self.branching + a


def random_tree(horizon, branching, n=1, p_success=0.3, binary=True, seed=0, end=False):
    """n random instances: leaf rewards Bernoulli(p_success) (binary) or Uniform(0, 1), with at least
    one rewarding leaf each (with end: a reachable one, and unreachable leaves are 0)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, branching**horizon, generator=g, dtype=DTYPE)
    r = (u < p_success).to(DTYPE) if binary else u
    mdp = TreeMDP(horizon, branching, r, end)
    r *= mdp.reachable
    reach = mdp.reachable.nonzero()[:, 0]
    r[torch.arange(n), reach[torch.randint(len(reach), (n,), generator=g)]] = 1.0
    return mdp


def check_distribution(q, name="teacher"):
    """Raise ValueError unless q (..., A) is a probability table: non-negative, rows summing to 1."""
    if (q < 0).any() or not torch.isfinite(q).all():
        raise ValueError(f"{name}: probabilities must be finite and >= 0")
    err = (q.sum(-1) - 1).abs().max().item()
    if err > 1e-9:
        raise ValueError(
            f"{name}: rows must sum to 1 (max deviation {err:.2e}); pass probabilities, not logits"
        )


def aliased(theta, obs):
    """The logits (..., S, A) an aliased student plays: theta (..., O, A) holds a row per observation
    and obs (S,) maps a state to its observation (obs = arange(S): the tabular student)."""
    if obs is None:
        return theta
    if obs.shape != (obs.numel(),) or obs.min() < 0 or obs.max() >= theta.shape[-2]:
        raise ValueError(f"obs must be (S,) indices into the {theta.shape[-2]} observation rows of theta")
    return theta[..., obs, :]


def support_states(mdp, best):
    """S (S,) bool: the response states a rollout reaches while every action so far is one the expert
    plays (best (S, A) bool); the state where it first plays another is the last one on S."""
    on = torch.zeros(mdp.n_states + mdp.n_leaves, dtype=torch.bool)
    on[0] = True
    for s in range(mdp.n_states):  # children of s are s·A + 1 + a (breadth first)
        on[s * mdp.branching + 1 : (s + 1) * mdp.branching + 1] = on[s] & best[s]
    return on[: mdp.n_states] & mdp.alive


# -----------------------------------------------------------------------------
# Exact dynamic programming (batched over leading axes, differentiable)


def played(pi, mdp):
    """The policy a rollout follows: π on response states; with end, END forever after an END (as
    train_gpt's sampler holds end-of-text), so every rollout has H steps and ended states cost nothing."""
    if not mdp.end:
        return pi
    forced = torch.zeros_like(pi)
    forced[..., -1] = 1.0
    return torch.where(mdp.alive.unsqueeze(-1), pi, forced)


def occupancy(pi, mdp):
    """d(s): probability that a rollout of π visits s. pi (..., S, A) -> (..., S)."""
    pi = played(pi, mdp)
    d = [torch.ones(pi.shape[:-2] + (1,), dtype=pi.dtype)]
    for t in range(mdp.horizon - 1):
        d.append((d[-1].unsqueeze(-1) * pi[..., mdp.depth_slice(t), :]).flatten(-2))
    return torch.cat(d, -1)


def leaf_probs(pi, mdp):
    """π(y) for every complete rollout y (leaf), (..., A^H)."""
    last = mdp.depth_slice(mdp.horizon - 1)
    return (occupancy(pi, mdp)[..., last].unsqueeze(-1) * played(pi, mdp)[..., last, :]).flatten(-2)


def values(pi, mdp):
    """V (..., S) and Q (..., S, A) of policy π by backward induction."""
    pi = played(pi, mdp)
    v, Vs, Qs = mdp.rewards.expand(pi.shape[:-2] + mdp.rewards.shape[-1:]), [], []
    for t in reversed(range(mdp.horizon)):
        q = v.reshape(v.shape[:-1] + (-1, mdp.branching))
        v = (pi[..., mdp.depth_slice(t), :] * q).sum(-1)
        Qs.insert(0, q), Vs.insert(0, v)
    return torch.cat(Vs, -1), torch.cat(Qs, -2)


def expected_reward(pi, mdp):
    """J(π) = Σ_y π(y) r(y)."""
    return (leaf_probs(pi, mdp) * mdp.rewards).sum(-1)


def optimal_q(mdp):
    """Q* by backward induction with max instead of the policy average (after an END: END's value)."""
    v, Qs = mdp.rewards, []
    for t in reversed(range(mdp.horizon)):
        q = v.reshape(v.shape[:-1] + (-1, mdp.branching))
        v = torch.where(mdp.alive[mdp.depth_slice(t)], q.max(-1).values, q[..., -1])
        Qs.insert(0, q)
    return torch.cat(Qs, -2)


# -----------------------------------------------------------------------------
# Teachers: probability tables (..., S, A)


def success_teacher(pi, mdp):
    """q(a|s) = π(a|s, success) = π(a|s) Q(s,a) / V(s); π itself where success is impossible."""
    V, Q = values(pi, mdp)
    q = pi * Q / V.unsqueeze(-1).clamp_min(1e-300)
    return torch.where(V.unsqueeze(-1) > 0, q, pi).detach()


def feedback_teacher(pi, mdp, strength=1.0, noise=0.0, prior=1.0, eps=1e-3, seed=0):
    """A self-teacher of dialled quality, q ∝ π^prior (Q + eps)^strength exp(noise ξ), ξ ~ N(0, 1) per
    (state, action). strength: how much the feedback reveals; noise: how badly the model reads it;
    prior: how much of π the teacher keeps (1: a tilt of π, the posterior π(·|s, success) when
    strength=1, noise=0, eps→0; <1: the feedback also flattens it)."""
    _, Q = values(pi, mdp)
    xi = torch.randn(pi.shape, generator=torch.Generator().manual_seed(seed), dtype=pi.dtype)
    return torch.softmax(prior * pi.log() + strength * (Q + eps).log() + noise * xi, -1).detach()


def expert_teacher(mdp, temperature=0.1, shape=None):
    """A fixed stronger model: softmax(Q*/τ), independent of the student."""
    q = torch.softmax(optimal_q(mdp) / temperature, -1)
    return q if shape is None else q.expand(shape)


# -----------------------------------------------------------------------------
# Objectives (distil.py's per-position costs, weighted by the exact occupancy) and update rules


def exits(mdp, states):
    """(S, A) bool: the actions that leave S, from a response state on S to one off it (not an end)."""
    child_on = torch.cat([states, torch.zeros(mdp.n_leaves, dtype=torch.bool)])[1:].view(-1, mdp.branching)
    return (states & mdp.alive).unsqueeze(-1) & ~mdp.ends & ~child_on


def end_surprise(pi, mdp, teacher, held=False, states=None, price_exit=True):
    """E_π[w σ], σ = −log q(last action | last state): the teacher's surprise at the response's last
    action, END or the action at depth H−1 (distil.py's stop="surprise", w = 1; stop="horizon", held:
    w = H − |y| + 1, once per skipped position too). states=S: the last action taken on S is priced,
    the end if the rollout stays on S, else the exit off S (price_exit; w = H − e + 1) or nothing."""
    last = mdp.ends & mdp.alive.unsqueeze(-1)
    if states is not None:
        last = last & states.unsqueeze(-1)  # the end counts on S; off S it is no one's
        if price_exit:
            last = last | exits(mdp, states)  # exits start on response states
    depth = torch.cat([torch.full((mdp.branching**t,), t, dtype=pi.dtype) for t in range(mdp.horizon)])
    weight = (mdp.horizon - depth).unsqueeze(-1) if held else 1.0  # |y| (or e) = depth + 1
    surprise = torch.where(last, -teacher.log() * weight, 0.0)  # +inf where q = 0 on it: a true price
    return (occupancy(pi, mdp).unsqueeze(-1) * pi * torch.where(pi > 0, surprise, 0.0)).sum((-2, -1))


def objective(theta, mdp, teacher, kind, stop="literal", obs=None, states=None, price_exit=True):
    """The loss each method minimises, exactly, per instance (...,). stop: distil.STOP_RULES, for the
    sequence-level distil objectives ("literal", the paper's sum, is what T1–T5 study). obs: theta
    holds a row per observation (aliased). states: (S,) bool, the costs count on S only (distil.py's
    states=; leaving S for good), its exit priced as an end (price_exit) or free."""
    if kind not in OBJECTIVES:
        raise ValueError(f"unknown objective {kind!r}; choose from {OBJECTIVES}")
    if stop not in distil.STOP_RULES:
        raise ValueError(f"stop must be one of {distil.STOP_RULES}, got {stop!r}")
    check_distribution(teacher)
    theta = aliased(theta, obs)
    pi = torch.softmax(theta, -1)
    if kind == "sdpo" and ((teacher == 0) & (pi > 0)).any():
        raise ValueError("reverse KL(π‖q) = +inf: the teacher gives probability 0 to an action π plays")
    if kind == "grpo":
        return -expected_reward(pi, mdp)
    d = occupancy(pi, mdp) * mdp.alive  # response states only: an ended state costs nothing
    if states is not None:
        d = d * states
    if kind not in SEQUENCE_LEVEL:
        d = d.detach()
    log_q = teacher.log()  # −inf marks probability 0; distil.py handles it exactly
    if kind in ("distil", "distil_token"):
        cost = distil.forward_ce(log_q, theta)
    elif kind == "distil_kl":
        cost = distil.forward_kl(log_q, theta)
    elif kind == "sdpo":
        cost = distil.reverse_kl(theta, log_q)
    else:  # opsd, β = 0.5
        cost = distil.jsd(log_q, theta, 0.5)
    loss = (d * cost).sum(-1)
    if stop == "literal" or kind not in SEQUENCE_LEVEL:
        return loss
    return loss + end_surprise(pi, mdp, teacher, stop == "horizon", states, price_exit)


def gradient(theta, mdp, teacher, kind, stop="literal", obs=None, states=None, price_exit=True):
    theta = theta.detach().requires_grad_()
    loss = objective(theta, mdp, teacher, kind, stop, obs, states, price_exit)
    (g,) = torch.autograd.grad(loss.sum(), theta)
    return g


def update(theta, mdp, teacher, kind, rule, eta, stop="literal", obs=None):
    """One step of `rule` on objective `kind` with step size eta (a float or a 0-d tensor, so that
    dJ/dη can be taken by autograd). Returns the new logits (per observation with obs: npg divides
    by the observation's Fisher weight Σ_{s: obs(s)=o} d(s) π_o)."""
    if rule == "prox":
        if obs is not None:
            raise ValueError("the proximal steps are per state; an aliased student takes gd or npg steps")
        objective(theta, mdp, teacher, kind)  # the same input checks as the gradient rules
        pi = torch.softmax(theta, -1)
        if kind == "distil_token":
            return ((1 - eta) * pi + eta * teacher).log()
        if kind == "sdpo":
            return (1 - eta) * pi.log() + eta * teacher.log()
        raise ValueError(f"no closed-form proximal step for {kind!r} (only distil_token, sdpo)")
    g = gradient(theta, mdp, teacher, kind, stop, obs)
    if rule == "gd":
        return theta - eta * g
    if rule == "npg":
        pi = torch.softmax(theta, -1)
        d = occupancy(torch.softmax(aliased(theta, obs), -1), mdp)
        if obs is not None:  # response states only: an ended state's forced END is no observation's
            zeros = torch.zeros(d.shape[:-1] + theta.shape[-2:-1], dtype=d.dtype)
            d = zeros.index_add(-1, obs, d * mdp.alive)
        weight = (d.unsqueeze(-1) * pi).clamp_min(torch.finfo(pi.dtype).tiny)  # 0/0 -> 0
        return theta - eta * g / weight
    raise ValueError(f"unknown update rule {rule!r}; choose from {RULES}")


def reward_slope(theta, mdp, teacher, kind, rule):
    """dJ/dη at η = 0 for every instance: the first-order change of the expected reward under one
    step of `rule` (autograd through the update with one η per instance)."""
    eta = torch.zeros(theta.shape[:-2], dtype=theta.dtype, requires_grad=True)
    new = update(theta, mdp, teacher, kind, rule, eta[..., None, None])
    (slope,) = torch.autograd.grad(expected_reward(torch.softmax(new, -1), mdp).sum(), eta)
    return slope


# -----------------------------------------------------------------------------
# The same MDP as a gymnasium environment


class TreeMDPEnv(gym.Env):
    """Observation: the node (states 0..S-1, leaves S..S+A^H-1); action: a branch; reward: the leaf's
    at the end, 0 before. end=True: END ends the episode at once, at the leaf that END, END, ...
    reaches (info["length"]: the response length, END included)."""

    def __init__(self, horizon=3, branching=3, p_success=0.3, instance_seed=0, rewards=None, end=False):
        if rewards is None:
            rewards = random_tree(horizon, branching, 1, p_success, seed=instance_seed, end=end).rewards[0]
        self.mdp = TreeMDP(horizon, branching, torch.as_tensor(rewards, dtype=DTYPE), end)
        self.observation_space = gym.spaces.Discrete(self.mdp.n_states + self.mdp.n_leaves)
        self.action_space = gym.spaces.Discrete(branching)
        self.state, self.length = 0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state, self.length = 0, 0
        return self.state, {"depth": 0}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {self.mdp.branching}), got {action!r}")
        if self.state >= self.mdp.n_states:
            raise RuntimeError("episode is over; call reset()")
        self.state, self.length = self.mdp.child(self.state, int(action)), self.length + 1
        while self.mdp.end and action == self.mdp.branching - 1 and self.state < self.mdp.n_states:
            self.state = self.mdp.child(self.state, action)  # after END: END, END, ... to the leaf
        done = self.state >= self.mdp.n_states
        reward = float(self.mdp.rewards[self.state - self.mdp.n_states]) if done else 0.0
        return self.state, reward, done, False, {"length": self.length} if done else {}


if "DistIL/TreeMDP-v0" not in gym.registry:
    gym.register(id="DistIL/TreeMDP-v0", entry_point=TreeMDPEnv)


# -----------------------------------------------------------------------------


def main():
    mdp = random_tree(horizon=3, branching=3, seed=0)
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(1, mdp.n_states, mdp.branching, generator=g, dtype=DTYPE)
    pi = torch.softmax(theta, -1)
    q = feedback_teacher(pi, mdp, noise=0.5)
    print(
        f"random tree H={mdp.horizon} A={mdp.branching}: J(random π) = "
        f"{expected_reward(pi, mdp).item():.4f}, "
        f"J(feedback teacher) = {expected_reward(q, mdp).item():.4f}, max J = {mdp.rewards.max().item():.0f}"
    )
    for kind in OBJECTIVES:
        for rule in RULES:
            if rule == "prox" and kind not in ("distil_token", "sdpo"):
                continue
            new = torch.softmax(update(theta, mdp, q, kind, rule, 0.5), -1)
            print(f"  {kind:13s} {rule:5s} η=0.5: J → {expected_reward(new, mdp).item():.4f}")


if __name__ == "__main__":
    main()
