"""
train_gpt.py — DistIL end to end on the GPT of model.py: SFT warm start, on-policy distillation from
a feedback-conditioned teacher (and every baseline on the same rollouts), evaluation, torchrun. The
objectives are distil.py's, the tasks tasks.py's, the run's files runs.py's; the README explains the loop.

One RL step (rl_step), P prompts x G rollouts; s_t = (x, y_<t) are the student's states:
    y ~ π_θ(·|x);  r, f = verify(x, y);  c = teacher context (f if r = 0 and/or a successful peer)
    π_T(·|c, y_<t) at every t: ONE no-grad teacher forward on the student's own tokens
    L(θ) = E_y[ Σ_t H×(π_T(·|c, y_<t), π_θ(·|s_t)) ] + the end's price (--stop)   distil.distil_loss
    ∇L   = E[ Σ_t ∇H×_t + Σ_t ∇log π_θ(y_t|s_t) (Σ_{t'>t} H×_t' − b_t) ]   b: leave-one-out
    θ ← AdamW(θ, ∇L);  teacher.update(θ)  (EMA: θ_T ← (1 − τ) θ_T + τ θ)
Baselines (sdpo, opsd, grpo, offline, the DistIL ablations) change only method_loss(); teachers
(self, ema, frozen, a checkpoint, the task's oracle) are one Teacher interface.

Simplifications: 1. models start from scratch (SFT on references plus teacher-format examples, so
feedback in context helps); 2. byte tokenizer by default (any tiktoken encoding runs); 3. on-policy, one
update per batch: no ratios, no clipping; 4. feedback is held fixed for the step; 5. no KL anchor,
no entropy bonus; 6. the oracle is smoothed by distil.ORACLE_EPS so reverse KL stays finite; 7. the
teacher's own success (t_rew) and its advantage at the student's states whose costs count (t_adv) are
measured at evaluations only.

Run (CPU first; every Config field is a flag):
    python train_gpt.py      # SFT -> eval -> DistIL from the SFT model reading the feedback, on the support
    python train_gpt.py --stage rl --method grpo --states all   # GRPO from the same out/sft.pt
    torchrun --standalone --nproc_per_node=8 train_gpt.py --preset gpt2 --task listprog ...
Output: a line per RL step (SFT: per 25); out/{sft,rl_<method>}.{pt,jsonl}. See: bench.py, experiment.py.
"""

import argparse
import copy
import dataclasses
import math
import os
import random
import time
from collections import Counter

import torch
import torch.distributed as dist

import distil
import runs
import tasks
from model import BLOCK_SIZE, GPT, PRESETS, generate_responses, model_from, response_logits, right_pad

# -----------------------------------------------------------------------------
# Configuration: one dataclass; every field is a command-line flag

# what each method learns from (teacher_signal): the teacher's log-probs at the student's states,
# K samples of its next token there (a black box), its own answers (off-policy), or nothing
METHODS = dict.fromkeys(("distil", "distil_token", "distil_kl", "distil_topk"), "logprobs")
METHODS |= {"distil_sampled": "samples", "sdpo": "logprobs", "opsd": "logprobs"}
METHODS |= {"grpo": None, "offline": "answers"}
TEACHERS = ("self", "ema", "frozen", "oracle")  # the live student, its moving average, the RL start, the
# task's programmatic expert; or a .pt path (a teacher model)
SELF_TEACHERS = ("self", "ema", "frozen")  # the student's weights at step 0: the SFT evaluation is theirs


# Fixed choices, each with its reason (a fork changes them here, not through flags)
TEMPERATURE = 1.0  # of rollouts, teacher answers and evaluation samples: 1 samples π itself (on-policy)
SAMPLES = 8  # samples per held-out problem: avg@8, pass@8, maj@8
ADV_SAMPLES = 2  # t_adv: completions per cut from the teacher and from the student (paired draws)
TOPK = 16  # distil_topk: the teacher's 16 likeliest tokens + a tail bucket (a top-k teacher server's)
TEACHER_SAMPLES = 4  # distil_sampled: K samples of the black-box teacher's next token per state
EMA_TAU = 0.05  # the EMA teacher's rate τ (SDPO's teacher_update_rate)
OPSD_BETA = 0.5  # β of OPSD's generalised Jensen-Shannon (TRL GKD's default)
GRAD_CLIP = 1.0  # max global gradient norm, SFT and RL (nanoGPT's)
SAMPLE_BATCH = 512  # most rows per sampler call (bounds the KV cache's memory)
DATA_SEED = 1337  # seed of the problem lists: every run (student, teacher, each RL seed) sees the same


@dataclasses.dataclass
class Config:
    # what to run
    stage: str = "all"  # all (sft -> eval -> rl -> eval) | sft | rl | eval
    task: str = "mult:digits_a=2,digits_b=1"  # a tasks.py task, optionally with knobs: name:knob=value,...
    method: str = "distil"  # RL objective (METHODS; distil.py)
    teacher: str = "frozen"  # self (live weights) | ema | frozen (RL start) | oracle | path/to/ckpt.pt
    context: str = "feedback"  # teacher context: peer | feedback | both | none (= the student's context)
    stop: str = distil.STOP_RULES[0]  # how distil prices the end of a response (distil.STOP_RULES)
    states: str = "support"  # where the teacher's costs count: all | support (the task oracle's S, T8)
    out_dir: str = "out"  # checkpoints and JSONL logs
    init_from: str = ""  # checkpoint for the rl/eval stage ("" = out_dir/sft.pt, or the rl one for eval)
    resume: bool = False  # continue the stage from its own checkpoint in out_dir
    seed: int = 1337  # every random draw is a function of (seed, stage, step, rank)
    # model and device
    preset: str = "tiny"  # model size (n_layer, n_head, n_embd) in model.PRESETS
    device: str = "auto"  # auto picks cuda > mps > cpu (bf16 autocast on CUDA)
    compile: bool = False  # torch.compile the training forward (minutes; on CPU needs a C++ compiler)
    # data: problem lists drawn with DATA_SEED; validation and RL prompts are held out of SFT
    n_train: int = 4000  # training problems drawn (SFT examples come from them)
    val_n: int = 0  # validation set: the first val_n distinct training problems
    rl_n: int = 0  # RL prompts: the next rl_n distinct training problems (0 = SFT's problems)
    # SFT warm start (from scratch)
    sft_steps: int = 500  # optimizer steps
    sft_batch: int = 32  # sequences per step, all ranks together
    sft_lr: float = 3e-3  # peak AdamW learning rate (warmup, then cosine to 10%)
    sft_teacher_frac: float = 0.8  # fraction of SFT examples in teacher format (feedback and/or peer)
    # on-policy RL
    rl_steps: int = 200  # optimizer steps, one batch of fresh rollouts each
    prompts: int = 32  # P: prompts per step, all ranks together
    group: int = 4  # G: rollouts per prompt (peers for the teacher context, leave-one-out baseline)
    rl_lr: float = 3e-4  # AdamW learning rate, constant after the warmup
    rl_warmup: int = 50  # RL steps of linear warmup to rl_lr (0 = constant from the first step)
    # evaluation (the held-out test split, or the validation set)
    eval_n: int = 256  # test problems
    eval_split: str = "test"  # held-out problems evaluated: test (eval_n of the test split) | val (the val_n)
    eval_every: int = 100  # RL steps between evaluations (0 = before and after only)


# the accepted values of the fields that take one of a fixed set (--teacher also takes a path), and
# the range [low, high] (None: unbounded) of the numeric fields not in the default: ints >= 1, floats >= 0
CHOICES = {
    "stage": ("all", "sft", "rl", "eval"),
    "method": tuple(METHODS),
    "teacher": tuple(TEACHERS),
    "context": ("peer", "feedback", "both", "none"),
    "stop": distil.STOP_RULES,
    "states": ("all", "support"),
    "preset": tuple(PRESETS),
    "device": ("auto", "cpu", "cuda", "mps"),
    "eval_split": ("test", "val"),
}
RANGES = dict.fromkeys(
    ("seed", "sft_steps", "val_n", "rl_n", "rl_steps", "rl_warmup", "eval_every"), (0, None)
)
RANGES |= {"sft_teacher_frac": (0, 1)}


def check_config(cfg):
    """A one-line error for an invalid value, naming what is accepted; None if cfg is valid."""
    for name, ok in CHOICES.items():
        value = getattr(cfg, name)
        if value not in ok and not (name == "teacher" and value.endswith(".pt")):
            path = ", or a .pt path" if name == "teacher" else ""
            return f"--{name} {value!r} is not one of: {', '.join(ok)}{path}"
    for f in dataclasses.fields(cfg):
        if f.type not in (int, float, "int", "float"):
            continue
        lo, hi = RANGES.get(f.name, (int(f.type in (int, "int")), None))  # else ints >= 1, floats >= 0
        value = getattr(cfg, f.name)
        if not (lo <= value and (hi is None or value <= hi)):  # also false for nan
            return f"--{f.name} {value} must be " + (f">= {lo}" if hi is None else f"in [{lo}, {hi}]")
    try:
        task = tasks.make_task(cfg.task)
    except ValueError as e:
        return f"--task: {e}"
    if (cfg.teacher == "oracle" or cfg.states == "support") and not hasattr(task, "oracle"):
        return f"--teacher oracle, --states support need the task's oracle; {cfg.task} has none; --states all"
    if cfg.teacher == "oracle" and tasks.get_tokenizer().n_vocab != 257:
        return "--teacher oracle needs the byte tokenizer: its characters are tokens only there"
    world = int(os.environ.get("WORLD_SIZE", 1))  # torchrun's ranks share the batches
    if cfg.states != "all" and METHODS[cfg.method] not in ("logprobs", "samples"):
        return f"--method {cfg.method} reads no teacher at the student's states: use --states all"
    if cfg.group < 2:
        return "--group must be >= 2 (the other rollouts of a prompt are its baseline)"
    if 0 < cfg.rl_n < cfg.prompts:
        return f"--rl_n {cfg.rl_n} must be 0 or >= --prompts {cfg.prompts} (a step's distinct prompts)"
    if cfg.eval_split == "val" and cfg.val_n < 1:
        return "--eval_split val needs --val_n >= 1 (the held-out training problems)"
    if cfg.sft_batch % world or cfg.prompts % world:
        return f"--sft_batch {cfg.sft_batch} and --prompts {cfg.prompts} must divide among {world} ranks"
    return None


def parse_args(argv=None):
    """Config from command-line flags generated from the dataclass; unknown flags are rejected."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    helps = runs.field_help(Config)
    for name, ok in CHOICES.items():
        helps[name] += f" [{', '.join(ok)}]"
    runs.add_flags(p, Config, helps)
    cfg = Config(**vars(p.parse_args(argv)))
    if check_config(cfg):
        p.error(check_config(cfg))
    return cfg


# -----------------------------------------------------------------------------
# Problems, rollouts, teacher contexts


def encode(enc, text):
    return enc.encode_ordinary(text)  # plain text: a literal "<|endoftext|>" in it stays bytes


def decode_responses(enc, resp, mask):  # the texts the verifier scores: no end-of-text token
    lengths = mask.sum(1).tolist()
    return [enc.decode([t for t in row[:n] if t != enc.eot_token]) for row, n in zip(resp.tolist(), lengths)]


def problem_sets(cfg, task):
    """(SFT problems, RL prompts, evaluation problems) drawn with DATA_SEED (tasks.problem_sets). The
    first --val_n distinct training problems are the validation set (--eval_split val evaluates it),
    the next --rl_n the RL prompts; SFT never sees either (--rl_n 0: RL prompts are SFT problems)."""
    try:
        train, held, test = tasks.problem_sets(task, cfg.n_train, cfg.eval_n, DATA_SEED, cfg.val_n + cfg.rl_n)
    except ValueError as e:
        raise SystemExit(f"error: --{e} (--val_n + --rl_n)") from None
    val, rl = held[: cfg.val_n], held[cfg.val_n :]
    return train, rl or train, val if cfg.eval_split == "val" else test


@dataclasses.dataclass
class Rollouts:
    problems: list  # (B) the problem of each row: G consecutive rows per prompt
    ctx: list  # (B) student-context token ids
    resp: torch.Tensor  # (B, T) response token ids (EOT after the end)
    mask: torch.Tensor  # (B, T) bool: response tokens, up to and including EOT
    texts: list = None  # (B) decoded responses
    rewards: torch.Tensor = None  # (B,) 0/1 from the verifier
    feedback: list = None  # (B) the verifier's feedback


def generate(model, rt, ids, max_new, temperature, gen):
    """(resp, mask) of responses to the token contexts `ids`: KV-cached, SAMPLE_BATCH rows a call."""
    with rt.amp:
        return generate_responses(model, ids, max_new, rt.eot, temperature, None, gen, SAMPLE_BATCH)


def sample_rollouts(model, cfg, rt, prompts, group, temperature, gen):
    """`group` rollouts of each prompt from the student context."""
    rows = [p for p in prompts for _ in range(group)]
    ctx = [encode(rt.enc, tasks.student_context(p)) for p in rows]
    resp, mask = generate(model, rt, ctx, rt.task.max_response_chars + 1, temperature, gen)
    return Rollouts(rows, ctx, resp, mask)


def score_rollouts(rt, ro):
    """Verify every rollout: reward and rich feedback."""
    ro.texts = decode_responses(rt.enc, ro.resp, ro.mask)
    scored = [rt.task.verify(p, t) for p, t in zip(ro.problems, ro.texts)]
    ro.rewards = torch.tensor([r for r, _ in scored], device=ro.resp.device)
    ro.feedback = [f for _, f in scored]
    return ro


# -----------------------------------------------------------------------------
# Teachers. A fork adds one as a subclass (logprobs, complete, more if it wants) and a line in make_teacher().


class Teacher:
    """What a method may ask of a teacher, at the student's states s_t = (x, y_<t):
    contexts(problems, rewards, texts, feedback, group)  its context per rollout (None: no signal)
    logprobs(problems, ctx, resp, mask)    log π_T(·|c_b, resp[b, :t]), (B, T, V); 0 where ctx is None
    next_tokens(.., resp, mask, k, gen)    K samples a_k ~ π_T(·|s_t) per position, (B, T, K): a black box
    complete(problems, ctx, prefixes, gen) its samples at the student's states: each student prefix, continued
    answers(problems, ctx, gen)            its own answers (complete from the empty prefix)
    update(student)                        after every optimizer step of the student
    state_dict()                           what the RL checkpoint keeps of it (None: nothing)"""

    def __init__(self, cfg, rt, model=None, kind=None):
        self.cfg, self.rt, self.model, self.kind = cfg, rt, model, kind

    def contexts(self, problems, rewards, texts, feedback, group):
        """SDPO's reprompt (tasks.reprompt): --context picks the feedback and/or a successful peer."""
        return tasks.reprompt(problems, rewards, texts, feedback, group, self.cfg.context)

    def answers(self, problems, ctx, gen):
        return self.complete(problems, ctx, [""] * len(ctx), gen)

    def next_tokens(self, problems, ctx, resp, mask, k, gen):
        logp = self.logprobs(problems, ctx, resp, mask)
        B, T, V = logp.shape
        return torch.multinomial(logp.view(-1, V).exp(), k, replacement=True, generator=gen).view(B, T, k)

    def update(self, student):
        pass

    def state_dict(self):
        return None


class ModelTeacher(Teacher):
    """A GPT reading the teacher context: the live student (self; no-grad = stop-gradient), a copy
    that follows it (ema) or stays (frozen), or another checkpoint."""

    @torch.no_grad()
    def logprobs(self, problems, ctx, resp, mask):
        rows = [i for i, c in enumerate(ctx) if c is not None]
        out = torch.zeros(*resp.shape, self.rt.enc.n_vocab, device=resp.device)
        if rows:  # ONE forward of [teacher context | the student's own response]
            with self.rt.amp:
                logits = response_logits(
                    self.model, [encode(self.rt.enc, ctx[i]) for i in rows], resp[rows], self.rt.eot
                )
            out[rows] = distil.log_probs(logits)
        return out

    def complete(self, problems, ctx, prefixes, gen):
        rows, out = [i for i, c in enumerate(ctx) if c is not None], [None] * len(ctx)
        if rows:
            ids = [encode(self.rt.enc, ctx[i] + prefixes[i]) for i in rows]
            max_new = max(1, self.rt.task.max_response_chars + 1 - min(len(prefixes[i]) for i in rows))
            resp, mask = generate(self.model, self.rt, ids, max_new, TEMPERATURE, gen)
            for i, text in zip(rows, decode_responses(self.rt.enc, resp, mask)):
                out[i] = prefixes[i] + text
        return out

    @torch.no_grad()
    def update(self, student):
        if self.kind == "ema":
            for pt, p in zip(self.model.parameters(), student.parameters()):
                pt.lerp_(p, EMA_TAU)  # θ_T ← (1 − τ) θ_T + τ θ

    def state_dict(self):
        return self.model.state_dict() if self.kind in ("ema", "frozen") else None


def oracle_text(enc, resp, mask):
    """A response row as the task's oracle reads it, and the token each character came from: (text,
    [token index per character] + [the last token's], where the end sits); the end-of-text token has no
    character (ASCII tasks: a byte is a character)."""
    text, owner, row = [], [], resp[: int(mask.sum())].tolist()
    for i, t in enumerate(row):
        if t != enc.eot_token:
            text.append(enc.decode_single_token_bytes(t).decode("latin-1"))
            owner += [i] * len(text[-1])
    return "".join(text), owner + [len(row) - 1]


def on_support(task, enc, problems, resp, mask):
    """mask through each rollout's first token the oracle rules out: 1[s_t ∈ S], the states on the
    expert's support (the first mistake's state is on S, and its label is the correction); and (B,)
    bool, the rollouts whose end is that token (ending there leaves S: distil_loss's ends_out)."""
    keep, ends_out = mask.clone(), torch.zeros(len(problems), dtype=torch.bool, device=mask.device)
    for b, p in enumerate(problems):
        text, owner = oracle_text(enc, resp[b], mask[b])
        i = tasks.first_off_support(task, p, text)  # the first character off S; None: all on S
        keep[b, resp.shape[1] if i is None else owner[i] + 1 :] = False
        ends_out[b] = i == len(text) and resp[b, owner[i]] == enc.eot_token  # not a cut at the budget
    return keep, ends_out


class OracleTeacher(Teacher):
    """The task's programmatic expert. It reads the problem, not a context, so every rollout gets a
    signal; its character distribution is a token distribution (the byte tokenizer only), EOT = the end."""

    def contexts(self, problems, rewards, texts, feedback, group):
        return [tasks.student_context(p) for p in problems]

    def logprobs(self, problems, ctx, resp, mask):
        """log((1 − ε) p + ε/V): H× gains ε(H×(u, π) − H×(p, π)); reverse KL, JSD stay finite."""
        enc = self.rt.enc
        V, out = enc.n_vocab, torch.zeros(*resp.shape, enc.n_vocab)
        for b in (b for b, c in enumerate(ctx) if c is not None):
            probs, text = torch.zeros(resp.shape[1], V), oracle_text(enc, resp[b], mask[b])[0]
            for t in range(int(mask[b].sum())):
                for ch, pr in self.rt.task.oracle(problems[b], text[:t]).items():
                    probs[t, self.rt.eot if ch == tasks.EOT else ord(ch)] += pr
            out[b] = torch.log((1 - distil.ORACLE_EPS) * probs + distil.ORACLE_EPS / V)
        return out.to(resp.device)

    def complete(self, problems, ctx, prefixes, gen):
        rng = random.Random(int(torch.randint(2**31, (1,), generator=gen, device=gen.device)))
        task = self.rt.task
        return [
            None if c is None else tasks.oracle_greedy(task, p, x, task.max_response_chars, rng)
            for p, c, x in zip(problems, ctx, prefixes)
        ]


def make_teacher(cfg, rt, student, ck=None):
    """The --teacher (ema / frozen: a copy of the student, or the one in the RL checkpoint `ck`)."""
    if cfg.teacher == "oracle":
        return OracleTeacher(cfg, rt)
    if cfg.teacher == "self":
        return ModelTeacher(cfg, rt, student, "self")
    if cfg.teacher in ("ema", "frozen"):
        model = copy.deepcopy(student)
        if ck is not None and ck.get("teacher") is not None:
            model.load_state_dict(ck["teacher"])
    else:
        ck = runs.load_checkpoint(cfg.teacher, "teacher checkpoint")
        model = model_from(ck, cfg.teacher, rt.enc.n_vocab).to(rt.device)
    kind = cfg.teacher if cfg.teacher in TEACHERS else "checkpoint"
    return ModelTeacher(cfg, rt, model.requires_grad_(False).eval(), kind)


# -----------------------------------------------------------------------------
# Evaluation: greedy pass@1, unbiased pass@k, avg@n, maj@n, the teacher's success and advantage


def pass_at_k(n, c, k):
    """Unbiased pass@k from n samples, c correct (Chen et al. 2021): 1 − C(n−c, k) / C(n, k), stably."""
    return 1.0 if n - c < k else 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def majority_correct(task, problem, texts):
    """maj@n: the most common final answer (first seen wins ties) equals the reference's."""
    answers = [a for a in (task.answer(problem, t) for t in texts) if a is not None]
    return float(
        bool(answers) and Counter(answers).most_common(1)[0][0] == task.answer(problem, problem.solution)
    )


TEACHER_KEYS = ("t_rew", "lift", "t_adv", "t_adv_se", "t_adv_n")  # the teacher's success and advantage
SE = f"avg@{SAMPLES}_se"  # avg@n's sampling standard error with the problems fixed: the noise of a change


def student_keys():
    """The student's held-out metrics: greedy pass@1, unbiased pass@k, avg@n and maj@n of n samples."""
    return ["pass@1", f"pass@{SAMPLES}", f"avg@{SAMPLES}", f"maj@{SAMPLES}", SE]


@torch.no_grad()
def evaluate(model, teacher, cfg, rt, problems):
    """Held-out metrics, sharded over ranks and summed. Every evaluation draws the same random
    numbers (seeded by seed and rank only): differences between checkpoints carry less sampling noise.
    Per problem, its first sample with a teacher context (the rollouts DistIL trains on) measures the
    teacher: t_rew, its success answering from that context (nan if no problem has one), and t_adv, its
    advantage at the student's states (teacher_advantage) with its standard error and n of cuts. A
    method that reads no teacher (grpo) skips both (nan)."""
    n, k, mine = SAMPLES, SAMPLES, problems[rt.rank :: rt.world]
    gen = torch.Generator(rt.device).manual_seed(runs.seed_of(cfg.seed, "eval", 0, rt.rank))
    greedy = score_rollouts(rt, sample_rollouts(model, cfg, rt, mine, 1, 0.0, gen))
    ro = score_rollouts(rt, sample_rollouts(model, cfg, rt, mine, n, TEMPERATURE, gen))
    rewards = ro.rewards.tolist()
    ctx = teacher.contexts(ro.problems, rewards, ro.texts, ro.feedback, n)
    rows = first_with_context(ctx, n) if METHODS[cfg.method] else []
    answers = teacher.answers([ro.problems[i] for i in rows], [ctx[i] for i in rows], gen) if rows else []
    t_rewards = [rt.task.verify(ro.problems[i], t)[0] for i, t in zip(rows, answers)]
    s = {"problems": len(mine), "pass@1": greedy.rewards.sum().item()}
    s[f"pass@{k}"] = sum(pass_at_k(n, int(sum(rewards[i : i + n])), k) for i in range(0, len(rewards), n))
    s[f"avg@{n}"] = sum(rewards) / n
    rates = [sum(rewards[i : i + n]) / n for i in range(0, len(rewards), n)]
    s[SE] = sum(r * (1 - r) / (n - 1) for r in rates)  # Σ_problems var(mean of n draws), unbiased
    s[f"maj@{n}"] = sum(
        majority_correct(rt.task, p, ro.texts[i * n : (i + 1) * n]) for i, p in enumerate(mine)
    )
    s["t_rew"] = sum(t_rewards)
    s["t_rows"] = len(t_rewards)
    s = runs.reduce_sums(rt, s | teacher_advantage(model, teacher, cfg, rt, ro, ctx, rows))
    out = {key: s[key] / max(s["problems"], 1) for key in student_keys()}
    out[SE] = math.sqrt(s[SE]) / max(s["problems"], 1)
    out["t_rew"] = s["t_rew"] / s["t_rows"] if s["t_rows"] else math.nan
    out["lift"] = out["t_rew"] - out[f"avg@{n}"]
    out["t_adv"], out["t_adv_se"], out["t_adv_n"] = mean_se(int(s["cuts"]), s["d"], s["d2"])
    return out


def first_with_context(ctx, n):
    """The row of each problem's first sample with a teacher context (n consecutive rows a problem)."""
    firsts = (next((i for i in range(g, g + n) if ctx[i] is not None), None) for g in range(0, len(ctx), n))
    return [i for i in firsts if i is not None]


def mean_se(n, total, total_sq):
    """(mean, standard error = sample std / sqrt(n), n) of n values from their sums Σd and Σd²."""
    mean = total / n if n else math.nan
    return mean, math.sqrt(max(total_sq - n * mean * mean, 0.0) / (n - 1) / n) if n > 1 else math.nan, n


@torch.no_grad()
def teacher_advantage(model, teacher, cfg, rt, ro, ctx, rows):
    """t_adv, the premise of T2/T4: one cut of each of `rows` (a sample with a teacher context per
    problem), uniform over the states whose costs count (--states; the empty prefix included); from it
    the teacher (its context) and the student (its own) complete ADV_SAMPLES times from one seed. Returns
    the sums {cuts, d: Σd, d2: Σd²} of d = the teacher's success rate − the student's, one d per cut."""
    M, seed, mask = ADV_SAMPLES, runs.seed_of(cfg.seed, "adv", 0, rt.rank), ro.mask[rows]
    probs = [ro.problems[i] for i in rows for _ in range(M)]
    costed = mask if cfg.states == "all" else on_support(rt.task, rt.enc, probs[::M], ro.resp[rows], mask)[0]
    rng, rates = random.Random(seed), []
    cuts = [rng.randrange(int(n)) for n in costed.sum(1)]
    prefixes = [rt.enc.decode(ro.resp[i, :c].tolist()) for i, c in zip(rows, cuts) for _ in range(M)]
    teacher_ctx = [ctx[i] for i in rows for _ in range(M)]
    student_ctx = [tasks.student_context(p) for p in probs]
    for who, c in ((teacher, teacher_ctx), (ModelTeacher(cfg, rt, model, "self"), student_ctx)):
        texts = who.complete(probs, c, prefixes, torch.Generator(rt.device).manual_seed(seed))  # paired draws
        rewards = torch.tensor([rt.task.verify(p, t)[0] for p, t in zip(probs, texts)])
        rates.append(rewards.reshape(len(rows), M).mean(1))
    d = rates[0] - rates[1]
    return {"cuts": len(rows), "d": d.sum().item(), "d2": (d * d).sum().item()}


def format_eval(m):
    """Metrics on one line: counts as integers, the teacher's lift and advantage with their sign."""
    fmt = {
        k: "d" if isinstance(v, int) else "+.3f" if k in ("lift", "t_adv") else ".3f" for k, v in m.items()
    }
    return " | ".join(f"{k} {v:{fmt[k]}}" for k, v in m.items())


# -----------------------------------------------------------------------------
# Stage 1: SFT warm start on reference solutions and teacher-format examples


def load_stage(cfg, rt, name, init, lr, weight_decay):
    """(model, AdamW, start step, checkpoint) of the stage `name`: its own out_dir/<name>.pt with --resume
    if there is one (then start > 0 and the checkpoint is returned), else `init` (None: a fresh GPT)."""
    path = os.path.join(cfg.out_dir, name + ".pt")
    ck = runs.load_checkpoint(path) if cfg.resume and os.path.exists(path) else None
    source = ck or (runs.load_checkpoint(init, "initial checkpoint") if init else None)
    if source:
        raw = model_from(source, path if ck else init, rt.enc.n_vocab, cfg.preset)
    else:
        raw = GPT.of_preset(cfg.preset, rt.enc.n_vocab)
    opt = raw.to(rt.device).configure_optimizers(lr, weight_decay, rt.device.type == "cuda")
    return raw, opt, runs.resume_from(ck, opt) if ck else 0, ck


def lr_at(step, total, peak):
    """Linear warmup over the first 5% of steps, then cosine to 10% of peak (nanoGPT's schedule)."""
    warm = max(1, total // 20)
    cosine = 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    return peak * ((step + 1) / warm if step < warm else cosine)


def sft_batch(cfg, rt, train, step):
    """This rank's SFT examples of a step: (contexts, response tokens, mask), references and
    teacher-format examples (tasks.sft_example) drawn from the training problems."""
    rng = random.Random(runs.seed_of(cfg.seed, "sft", step, rt.rank))
    n = cfg.sft_batch // rt.world
    pairs = [tasks.sft_example(rt.task, rng.choice(train), rng, cfg.sft_teacher_frac) for _ in range(n)]
    resp, mask = right_pad([encode(rt.enc, r) + [rt.eot] for _, r in pairs], rt.eot, rt.device)
    return [encode(rt.enc, c) for c, _ in pairs], resp, mask


def train_sft(cfg, rt):
    """Train a GPT from scratch; save out_dir/sft.pt. Returns (eval metrics or None if interrupted, model)."""
    raw, opt, start, _ = load_stage(cfg, rt, "sft", None, cfg.sft_lr, 0.1)  # wd 0.1: nanoGPT's
    stage = runs.Stage(cfg, rt, "sft", start)
    model = runs.wrap(raw, cfg, rt)
    train, _, test = problem_sets(cfg, rt.task)
    rt.log(
        f"sft: {raw.num_params():,} parameters | {cfg.sft_steps} steps x {cfg.sft_batch} sequences | "
        f"{len(train)} train problems, {len(test)} {cfg.eval_split}"
    )
    with runs.ctrl_c_stops() as flag:
        for step in range(start, cfg.sft_steps):
            t0 = time.time()
            ctx, resp, mask = sft_batch(cfg, rt, train, step)
            lr = lr_at(step, cfg.sft_steps, cfg.sft_lr)
            for g in opt.param_groups:
                g["lr"] = lr
            with rt.amp:
                logits = response_logits(model, ctx, resp, rt.eot)
            loss = distil.offline_loss(logits, resp, mask, reduction="token_mean")  # NLL of the solution
            s = runs.reduce_sums(rt, {"loss": loss.item(), "tokens": mask.sum().item()})
            runs.check_finite(s["loss"], "sft", step, stage.ckpt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(raw.parameters(), GRAD_CLIP)
            opt.step()
            row = {"step": step, "loss": s["loss"] / rt.world, "lr": lr, "tokens": s["tokens"]}
            stage.append(row)
            if step % 25 == 0 or step == cfg.sft_steps - 1:
                rt.log(stage.line(step, cfg.sft_steps, row, SFT_LINE, time.time() - t0))
            if stage.after_step(step, flag, raw, opt):
                return None, raw
    stage.save(cfg.sft_steps, raw, opt)
    t0 = time.time()
    metrics = evaluate(raw, ModelTeacher(cfg, rt, raw, "self"), cfg, rt, test)
    rt.log(f"eval after sft: {format_eval(metrics)} | {time.time() - t0:.1f} s")
    stage.append({"step": cfg.sft_steps, **metrics})
    return metrics, raw


# -----------------------------------------------------------------------------
# Stage 2: one on-policy RL step — rollouts, verifier, teacher signal, the method's loss, update


def teacher_signal(cfg, rt, teacher, ro, gen):
    """What the method learns from (METHODS[method]): the teacher's log-probs at the student's states
    "logp" (B, T, V), K samples of its next token there "tokens" (B, T, K), or its own answers
    "resp", "mask"; "has" (B,) marks the rollouts with a teacher context. GRPO reads no teacher."""
    need = METHODS[cfg.method]
    if need is None:
        return {"has": torch.ones(len(ro.problems), dtype=torch.bool, device=ro.resp.device)}
    ctx = teacher.contexts(ro.problems, ro.rewards.tolist(), ro.texts, ro.feedback, cfg.group)
    sig = {"has": torch.tensor([c is not None for c in ctx], device=ro.resp.device)}
    if need == "answers":  # behaviour cloning: the teacher's own responses, from its context
        texts = teacher.answers(ro.problems, ctx, gen)
        ids = [encode(rt.enc, t or "") + [rt.eot] for t in texts]
        sig["resp"], sig["mask"] = right_pad(ids, rt.eot, ro.resp.device)
        sig["mask"] &= sig["has"][:, None]
    elif need == "samples":  # black box: the loss sees K samples a_k ~ π_T(·|s_t), never π_T itself
        sig["tokens"] = teacher.next_tokens(ro.problems, ctx, ro.resp, ro.mask, TEACHER_SAMPLES, gen)
    else:
        sig["logp"] = teacher.logprobs(ro.problems, ctx, ro.resp, ro.mask)
    return sig


def method_loss(cfg, logits, tokens, mask, rewards, sig, horizon, costed, ends_out):
    """The method's loss from distil.py, the one place a method is defined: `mask` every response token
    (the leave-one-out baseline needs the rollouts without a teacher too), `costed` the states where the
    teacher's costs count (the taught tokens, or those on the expert's support, whose exit, an end in
    ends_out too, is priced at the ε-smoothed oracle's surprise at a token it rules out, log(V/ε))."""
    m, G = cfg.method, cfg.group
    if m == "grpo":
        return distil.grpo_loss(logits, tokens, mask, rewards, G)
    if m == "offline":
        return distil.offline_loss(logits, tokens, mask)
    if m == "sdpo":
        return distil.sdpo_loss(logits, sig["logp"], costed)
    if m == "opsd":
        return distil.opsd_loss(logits, sig["logp"], costed, beta=OPSD_BETA)
    sampled = m == "distil_sampled"
    return distil.distil_loss(
        logits,
        tokens,
        mask if m != "distil_token" else costed,
        teacher_logits=None if sampled else sig["logp"],
        teacher_tokens=sig["tokens"] if sampled else None,
        sequence_level=m != "distil_token",
        future_cost="kl" if m == "distil_kl" else "ce",
        baseline="loo",
        group_size=G,
        topk=TOPK if m == "distil_topk" else None,
        stop=cfg.stop,
        horizon=horizon,
        states=costed,
        exit_surprise=math.log(logits.shape[-1] / distil.ORACLE_EPS),
        ends_out=ends_out,
    )


def rl_step(cfg, rt, model, raw, opt, teacher, train, step, ckpt):
    """One on-policy step (the loop in the header docstring): rollouts, verifier, teacher signal, the
    method's loss, one AdamW step, the teacher's update. Returns (metrics by name, phase times in s)."""
    rng = random.Random(runs.seed_of(cfg.seed, "rl", step, 0))  # the same P prompts on every rank ...
    prompts = rng.sample(train, cfg.prompts)[rt.rank :: rt.world]  # ... each rank samples its share
    gen = torch.Generator(rt.device).manual_seed(runs.seed_of(cfg.seed, "rl", step, rt.rank))
    lap = runs.Laps(rt.device)
    ro = sample_rollouts(raw, cfg, rt, prompts, cfg.group, TEMPERATURE, gen)
    lap("sample")
    score_rollouts(rt, ro)
    lap("verify")
    sig = teacher_signal(cfg, rt, teacher, ro, gen)
    lap("teacher")
    tokens, mask = (sig["resp"], sig["mask"]) if "resp" in sig else (ro.resp, ro.mask)
    taught = mask & sig["has"][:, None]  # the tokens of the rollouts with a teacher context
    S = cfg.states == "support"  # costs and the exit's price on the expert's support, else every taught token
    costed, ends_out = on_support(rt.task, rt.enc, ro.problems, tokens, taught) if S else (taught, None)
    opt.zero_grad(set_to_none=True)
    with rt.amp:
        logits = response_logits(model, ro.ctx, tokens, rt.eot)
    # normalised exactly as the teacher's log-probs are: a teacher equal to the student then gives a
    # gradient of exactly zero (distil.forward_ce), not a rounding bias that AdamW would amplify
    logits = distil.log_probs(logits)
    horizon = rt.task.max_response_chars + 1  # the sampler's budget: every position a response may have
    loss = method_loss(cfg, logits, tokens, mask, ro.rewards, sig, horizon, costed, ends_out)
    loss.backward()
    metrics = step_metrics(rt, ro, sig, loss, logits, mask, costed)
    runs.check_finite(metrics["loss"], "rl", step, ckpt)
    torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    opt.step()
    teacher.update(raw)
    lap("update")
    return metrics, lap.times


@torch.no_grad()
def step_metrics(rt, ro, sig, loss, logits, mask, costed):
    """The step's metrics, summed over ranks, by name: loss, reward, the share of rollouts with a
    signal, the share of successes that went through a recovery, length, H× and KL to the teacher
    per costed token (where the loss counts them), the student's entropy per token, and the sampled tokens."""
    lg, won, logp = logits.float(), [r > 0.5 for r in ro.rewards.tolist()], sig.get("logp")
    s = {"loss": loss.item(), "reward": ro.rewards.sum().item(), "signal": sig["has"].sum().item()}
    recovered = getattr(rt.task, "has_recovery", None)  # an optional capability of a task (with its oracle)
    s["recov"] = (
        sum(w and recovered(p, t) for p, t, w in zip(ro.problems, ro.texts, won)) if recovered else math.nan
    )
    s["len"] = ro.mask.sum().item()
    s["H×"] = distil.forward_ce(logp, lg)[costed].sum().item() if logp is not None else math.nan
    s["KL"] = distil.forward_kl(logp, lg)[costed].sum().item() if logp is not None else math.nan
    s["ent"] = distil.entropy(lg)[mask].sum().item()
    s |= {"rollouts": len(won), "successes": sum(won), "costed": costed.sum().item()}  # the denominators
    s = runs.reduce_sums(rt, s | {"masked": mask.sum().item()})
    per = dict.fromkeys(("reward", "signal", "len"), "rollouts") | {"recov": "successes", "ent": "masked"}
    per |= dict.fromkeys(("H×", "KL"), "costed")
    out = {k: s[k] / s[d] if s[d] else math.nan for k, d in per.items()}
    return {"loss": s["loss"] / rt.world} | out | {"tokens": s["len"]}


# the console line of a step: (metric, format)
SFT_LINE = (("loss", ".4f"), ("lr", ".2e"))
RL_LINE = (("loss", "8.4f"), ("reward", ".3f"), ("signal", ".2f"), ("recov", ".2f"), ("len", ".1f"))
RL_LINE += tuple((k, ".3f") for k in ("t_rew", "pass@1", "H×", "KL", "ent"))


def gain_line(a0, a1, se, init):
    """avg@n a0 -> a1 in units of σ, avg@n's sampling standard error at the start, and GRPO's command."""
    sigmas = f"{(a1 - a0) / se:+.1f}σ" if se > 0 else "σ = 0, every start rate 0 or 1"
    return (
        f"avg@{SAMPLES} {a0:.3f} -> {a1:.3f}: {a1 - a0:+.3f} = {sigmas} (σ {se:.3f}, its sampling standard "
        f"error at the start); GRPO from the same checkpoint and steps (the README has its number): "
        f"--stage rl --method grpo --states all --init_from {init}"
    )


def train_rl(cfg, rt, eval0=None):
    """RL from the SFT checkpoint (or --init_from); evaluates every eval_every steps; saves
    out_dir/rl_<method>.{pt,jsonl}. eval0: the start model's metrics, if already measured.
    Returns {"rows", "model", "interrupted", "eval" (the last evaluation)}."""
    init = cfg.init_from or os.path.join(cfg.out_dir, "sft.pt")
    name = f"rl_{cfg.method}"
    raw, opt, start, ck = load_stage(cfg, rt, name, init, cfg.rl_lr, 0.0)  # no decay: few steps from SFT
    stage = runs.Stage(cfg, rt, name, start)
    teacher = make_teacher(cfg, rt, raw, ck)
    model = runs.wrap(raw, cfg, rt)
    _, train, test = problem_sets(cfg, rt.task)
    rt.log(
        f"rl: method {cfg.method} | teacher {cfg.teacher} | {cfg.prompts} prompts x {cfg.group} rollouts "
        f"per step | from {stage.ckpt if ck else init}" + (f" at step {start}" if ck else "")
    )

    def evaluated(step):
        t0 = time.time()
        m = eval0 if step == 0 and eval0 else evaluate(raw, teacher, cfg, rt, test)
        rt.log(f"eval @ rl step {step}: {format_eval(m)} | {time.time() - t0:.1f} s")
        return m

    interrupted = False
    with runs.ctrl_c_stops() as flag:
        for step in range(start, cfg.rl_steps):
            t0 = time.time()
            row = {"step": step}
            if step == 0 or (cfg.eval_every and step % cfg.eval_every == 0):
                row |= evaluated(step)
            for g in opt.param_groups:
                g["lr"] = cfg.rl_lr * min(1.0, (step + 1) / max(1, cfg.rl_warmup))
            metrics, times = rl_step(cfg, rt, model, raw, opt, teacher, train, step, stage.ckpt)
            row |= metrics | {f"time_{k}": v for k, v in times.items()}
            stage.append(row)
            rt.log(stage.line(step, cfg.rl_steps, row, RL_LINE, time.time() - t0))
            interrupted = stage.after_step(step, flag, raw, opt, teacher=teacher.state_dict())
            if interrupted:
                break
    if not interrupted:
        stage.save(cfg.rl_steps, raw, opt, teacher=teacher.state_dict())
        stage.append({"step": cfg.rl_steps, **evaluated(cfg.rl_steps)})
        a, b = next(r for r in stage.rows if "pass@1" in r), stage.rows[-1]
        rt.log(
            f"held-out ({len(test)} {cfg.eval_split} problems), step {a['step']} -> {cfg.rl_steps}: "
            + " | ".join(f"{k} {a[k]:.3f} -> {b[k]:.3f}" for k in student_keys())
        )
        rt.log(gain_line(a[f"avg@{SAMPLES}"], b[f"avg@{SAMPLES}"], a[SE], init))
        rt.log(f"saved {stage.ckpt}, {stage.log_path}")
    last = next((r for r in reversed(stage.rows) if "pass@1" in r), None)
    evaluation = last and {k: last[k] for k in student_keys() + list(TEACHER_KEYS)}
    return {"rows": stage.rows, "model": raw, "interrupted": interrupted, "eval": evaluation}


# -----------------------------------------------------------------------------
# The entry point


def describe(cfg, rt):
    """The config, and what it implies: device, ranks, precision, parameters, rollouts per step."""
    rt.log(runs.config_text(cfg))
    n_layer, _, n_embd = PRESETS[cfg.preset]
    params = n_layer * (12 * n_embd * n_embd + 2 * n_embd) + (rt.enc.n_vocab + BLOCK_SIZE + 1) * n_embd
    rt.log(
        f"derived: device {rt.device} x {rt.world} rank(s) | {'bf16' if rt.bf16 else 'fp32'} | "
        f"{params / 1e6:.2f}M parameters | task {cfg.task} ({rt.task.domain}) | "
        f"{cfg.prompts * cfg.group} rollouts/step of <= {rt.task.max_response_chars + 1} tokens"
    )


def run(cfg):
    """Run what cfg asks for (the CLI and experiment.py call this). Returns a dict: "eval" (the last
    held-out metrics), "sft" (after SFT), "rows" (the RL log rows), "model" (the GPT trained or evaluated),
    "interrupted" (by Ctrl-C), "eval_problems" (distinct held-out problems: a binomial error bar's n)."""
    if check_config(cfg):
        raise SystemExit(f"error: {check_config(cfg)}")
    t0 = time.time()
    rt = runs.Runtime(cfg)
    try:
        os.makedirs(cfg.out_dir, exist_ok=True)
        torch.manual_seed(cfg.seed)  # model initialisation (identical on every rank)
        describe(cfg, rt)
        out = {"interrupted": False}
        test = problem_sets(cfg, rt.task)[2]
        if cfg.stage in ("all", "sft"):
            out["sft"], out["model"] = train_sft(cfg, rt)
            out["eval"], out["interrupted"] = out["sft"], out["sft"] is None
        if cfg.stage in ("all", "rl") and not out["interrupted"]:
            same_start = cfg.stage == "all" and cfg.teacher in SELF_TEACHERS
            out.update(train_rl(cfg, rt, eval0=out.get("sft") if same_start else None))
        if cfg.stage == "eval":
            rl = os.path.join(cfg.out_dir, f"rl_{cfg.method}.pt")
            path = cfg.init_from or (rl if os.path.exists(rl) else os.path.join(cfg.out_dir, "sft.pt"))
            out["model"] = model_from(runs.load_checkpoint(path), path, rt.enc.n_vocab).to(rt.device)
            out["eval"] = evaluate(out["model"], make_teacher(cfg, rt, out["model"]), cfg, rt, test)
            rt.log(f"eval {path}: {format_eval(out['eval'])}")
        out["eval_problems"] = len({rt.task.split_key(p) for p in test})
        rt.log(f"done in {runs.fmt_time(time.time() - t0)}")
        if rt.world > 1:
            dist.barrier()  # leave together: no rank tears the group down while a peer still uses it
        return out
    finally:
        rt.close()


if __name__ == "__main__":
    run(parse_args())
