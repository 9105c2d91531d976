"""
train_gpt.py — DistIL end to end on a nanoGPT-style model: SFT warm start, on-policy distillation
from a feedback-conditioned teacher (and every baseline on the same rollouts), evaluation,
checkpoints, and multi-GPU with torchrun. The objectives live in distil.py, the tasks in tasks.py.

The concept. A student π_θ answers prompts x from a task's training split; a verifier returns a 0/1
reward and rich feedback f (what went wrong, and where). The teacher is a model (by default the
student itself, SDPO-style) that reads x together with f and/or a successful sibling rollout, and
scores the student's *own* response token by token. DistIL trains the student on its own states
toward the teacher's next-token distributions (a distributional DAgger). One RL step:

    x_1..x_P ~ train split;  y_ig ~ π_θ(·|x_i), g = 1..G                  sample()         KV-cached
    r_ig, f_ig = verify(x_i, y_ig)                                         score_rollouts()
    c_ig = teacher_context(x_i, f_ig if r_ig = 0, first y_ig' with r = 1, g' ≠ g)   (SDPO's reprompt;
           --context picks feedback and/or peer; a rollout with neither gets no signal: `nosig`)
    π_T(·|c_ig, y_ig,<t) at every t, in ONE no-grad forward                teacher_signal()
    L(θ) = E_y[ Σ_t H×_t ],   H×_t = −Σ_a π_T(a|c, y_<t) log π_θ(a|x, y_<t)      distil.distil_loss
    ∇L   = E[ Σ_t ∇H×_t + Σ_t ∇log π_θ(y_t|x, y_<t) · (Σ_{t'>t} H×_t' − b_t) ]  (b: leave-one-out over G)
    θ ← AdamW(θ, ∇L);   EMA teacher: θ_T ← (1 − τ) θ_T + τ θ                   rl_update()

The baselines (sdpo, opsd, grpo, offline, and the DistIL ablations) swap only the loss call; rollouts,
teacher and budget are the same. Evaluation on the held-out split: greedy pass@1, unbiased pass@k
(Chen et al. 2021) from n samples, avg@n, maj@n, and the teacher's own success ("teacher lift").

Simplifications (each a deliberate choice for a readable reference, not the paper's setup):
 1. Models are trained from scratch by the SFT stage (nothing can be downloaded); the SFT data mixes
    the student's format with teacher formats (feedback on a corrupted attempt, a peer solution), so
    that a model with feedback in its context is better than without — the premise of self-distillation.
 2. Byte-level tokenizer (tasks.py): one character is one token, so the oracle's character
    distribution is a token distribution, and a response means the same bytes after any context.
 3. Fully on-policy: one optimizer step per batch of rollouts, so no importance ratios or clipping.
 4. The feedback f is treated as fixed for the step (DESIGN §2), although it depends on the rollout.
 5. No KL anchor to the SFT model and no entropy bonus: the objectives are distil.py's, unmodified.
 6. The oracle teacher's distribution is smoothed with ORACLE_EPS so that KL-type losses stay finite.
 7. The teacher's own success ("t_rew") is measured at evaluation points only, not every step, so
    that the RL step costs one teacher forward and nothing more.

Defaults, and why. The CPU quickstart trains the tiny preset on mult with 2-digit x 1-digit
problems ("63*9=567\n567=567": minutes to learn on two cores), the teacher sees successful peers
only (--context peer, SDPO's protocol for science), and a success without a successful sibling is
its own peer (--self_peer), so the sequence-level term reinforces it like any low-cost rollout.
With the environment feedback (--context both) mult's feedback names the corrected line: on the
student's states after its own error the teacher then demands a value the student cannot compute
(6-10 nats a token, where the error itself costs ~1), forward CE there teaches it to stop copying
its own line, and the shared-weight self-teacher decays with it; the README has the numbers.

Run (CPU first; every field of Config is a flag, e.g. --rl_steps 100):
    python train_gpt.py                         # SFT -> eval -> DistIL (self-teacher) -> eval, < 10 min
    python train_gpt.py --stage rl --method grpo               # another method from out/sft.pt
    python train_gpt.py --stage rl --compare distil,distil_token,sdpo,opsd,grpo,offline
    python train_gpt.py --bench                                # sampler and step timings
    python train_gpt.py --preset gpt2 --task countdown --sft_steps 5000 --sft_batch 256 --sft_lr 6e-4 \\
        --rl_steps 300 --prompts 64 --group 8 --rl_lr 1e-5 --eval_n 512 --compile   # one GPU (untested)
    torchrun --standalone --nproc_per_node=8 train_gpt.py --preset gpt2 --task countdown ...   # 8 GPUs
Output: one line per step and out/{sft,rl_<method>}.{pt,jsonl,png}; the README explains each metric.
"""

import argparse
import ast
import contextlib
import copy
import dataclasses
import inspect
import json
import math
import os
import random
import re
import signal
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

import distil as D
import tasks

# -----------------------------------------------------------------------------
# Configuration: one dataclass; every field is a command-line flag (see parse_args)

STAGES = ("all", "sft", "rl", "eval")
METHODS = ("distil", "distil_token", "distil_kl", "distil_topk", "distil_sampled",
           "sdpo", "opsd", "grpo", "offline")
TEACHERS = ("self", "ema", "frozen", "oracle")  # or a path to a .pt checkpoint
CONTEXTS = ("peer", "feedback", "both", "none")
DEVICES = ("auto", "cpu", "cuda", "mps")
# (n_layer, n_head, n_embd): tiny fits the CPU quickstart; small is nanoGPT's shakespeare-char size;
# gpt2 is GPT-2 small (124M with its 50k vocabulary, ~85M here with 257 byte tokens).
PRESETS = {"micro": (2, 2, 32), "tiny": (4, 4, 128), "small": (6, 6, 384), "gpt2": (12, 12, 768)}
BLOCK_SIZE = 1024  # positions: GPT-2's context; the longest teacher context + response must fit
ORACLE_EPS = 1e-3  # uniform mass mixed into the oracle's distribution: reverse KL to a zero is +inf


@dataclass
class Config:
    # what to run
    stage: str = "all"  # all (sft -> eval -> rl -> eval) | sft | rl | eval
    task: str = "mult:digits_a=2,digits_b=1"  # a name in tasks.TASKS, optionally ":knob=value,..." (difficulty)
    method: str = "distil"  # RL objective (distil.py)
    teacher: str = "self"  # self (live weights) | ema | frozen (RL start) | oracle | path/to/ckpt.pt
    compare: str = ""  # comma-separated methods run from the same SFT checkpoint; writes a table + plot
    bench: bool = False  # time the sampler and the phases of one RL step, print a table, exit
    out_dir: str = "out"  # checkpoints, JSONL logs and plots
    init_from: str = ""  # checkpoint for the rl/eval stage ("" = out_dir/sft.pt, or the rl one for eval)
    resume: bool = False  # continue the stage from its own checkpoint in out_dir
    seed: int = 1337  # every random draw is a function of (seed, stage, step, rank)
    # model and device
    preset: str = "tiny"  # model size (n_layer, n_head, n_embd) in PRESETS
    device: str = "auto"  # auto picks cuda > mps > cpu
    compile: bool = False  # torch.compile the training forward (CUDA; costs a minute of compile)
    # SFT warm start (from scratch)
    sft_steps: int = 500  # optimizer steps
    sft_batch: int = 32  # sequences per step, all ranks together
    sft_lr: float = 3e-3  # peak AdamW learning rate (warmup, then cosine to 10%)
    sft_teacher_frac: float = 0.5  # fraction of SFT examples in teacher format (feedback and/or peer)
    n_train: int = 4000  # training problems; SFT examples and RL prompts are drawn from them
    data_seed: int = -1  # seed of the problem lists (train, validation, test); -1 = --seed
    val_n: int = 0  # validation set: the first val_n distinct training problems, removed from SFT and RL
    # on-policy RL
    rl_steps: int = 100  # optimizer steps, one batch of fresh rollouts each
    prompts: int = 16  # P: prompts per step, all ranks together
    group: int = 8  # G: rollouts per prompt (peers for the teacher context, leave-one-out baseline)
    rl_lr: float = 1e-4  # constant AdamW learning rate
    temperature: float = 1.0  # rollout temperature (1 = sample π_θ itself, i.e. on-policy)
    top_k: int = 0  # restrict rollout sampling to the k likeliest tokens (0 = off)
    context: str = "peer"  # teacher context: peer | feedback | both | none (= the student's context)
    self_peer: bool = True  # a success with no successful sibling is its own peer (else: no signal)
    baseline: str = "loo"  # future-credit baseline: loo (leave-one-out over the group) | none
    reduction: str = "sum"  # loss reduction: sum (over positions, mean over rollouts) | token_mean
    ema_tau: float = 0.05  # EMA teacher rate τ (SDPO's teacher_update_rate)
    distil_topk: int = 16  # k of distil_topk (teacher's k likeliest tokens + a tail bucket)
    teacher_samples: int = 4  # K teacher samples per position for distil_sampled
    opsd_beta: float = 0.5  # β of OPSD's generalised Jensen-Shannon (TRL GKD default)
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    micro_batch: int = 0  # rollouts per forward/backward chunk, a multiple of group (0 = all at once)
    # evaluation (held-out test split, or the validation set)
    eval_n: int = 128  # test problems
    eval_split: str = "test"  # held-out problems evaluated: test (eval_n of the test split) | val (the val_n)
    eval_samples: int = 8  # n samples per problem at `temperature` for pass@k, avg@n, maj@n
    eval_k: int = 4  # k of the unbiased pass@k estimator (2 <= k <= n)
    eval_every: int = 25  # RL steps between evaluations (0 = before and after only)
    ckpt_every: int = 50  # steps between checkpoints (the last step is always saved)
    sample_batch: int = 512  # most rows per sampler call (bounds KV-cache memory)


def field_help(cls=None):
    """The trailing comment of each field of a config dataclass (Config by default), read from its
    source: the field's --help text."""
    src = inspect.getsource(cls or Config)
    return dict(re.findall(r"^\s+(\w+): \w+ = .*?  # (.*)$", src, flags=re.M))


def add_flags(parser, cls, helps):
    """One --flag per field of the dataclass `cls`, typed by its annotation (a bool flag alone means
    true, or takes true/false); `helps` maps field names to help texts."""
    for f in dataclasses.fields(cls):
        text = helps.get(f.name, "").replace("%", "%%")  # argparse %-formats help
        if f.type in (bool, "bool"):
            parser.add_argument(f"--{f.name}", nargs="?", const=True, default=f.default, type=str2bool, help=text)
        else:
            typ = {"int": int, "float": float, "str": str}.get(f.type, f.type)
            parser.add_argument(f"--{f.name}", type=typ, default=f.default, help=text)


def field_choices():
    """The accepted values of the fields that take one of a fixed set (--teacher also takes a path)."""
    return {"stage": STAGES, "task": tuple(tasks.TASKS), "method": METHODS, "teacher": TEACHERS,
            "preset": tuple(PRESETS), "device": DEVICES, "context": CONTEXTS, "baseline": D.BASELINES,
            "reduction": ("sum", "token_mean"), "eval_split": ("test", "val")}


def check_config(cfg):
    """Return an error message for an invalid value (naming what is accepted), or None."""
    for name, ok in field_choices().items():
        if name == "teacher":
            continue
        value = getattr(cfg, name).partition(":")[0] if name == "task" else getattr(cfg, name)
        if value not in ok:
            return f"--{name} {value!r} is not one of: {', '.join(ok)}"
    if cfg.teacher not in TEACHERS and not cfg.teacher.endswith(".pt"):
        return f"--teacher {cfg.teacher!r} is not one of: {', '.join(TEACHERS)}, or a path to a .pt checkpoint"
    bad = [m for m in cfg.compare.split(",") if m and m not in METHODS]
    if bad:
        return f"--compare {','.join(bad)!r}: methods must be among: {', '.join(METHODS)}"
    if cfg.baseline == "loo" and cfg.group < 2:
        return "--baseline loo needs --group >= 2 (the other rollouts of the prompt are the baseline)"
    if cfg.micro_batch % cfg.group:
        return f"--micro_batch {cfg.micro_batch} must be a multiple of --group {cfg.group} (groups stay whole)"
    if cfg.eval_split == "val" and cfg.val_n < 1:
        return "--eval_split val needs --val_n >= 1 (the training problems held out for validation)"
    if not 2 <= cfg.eval_k <= cfg.eval_samples:  # pass@1 is the greedy metric; sampled pass@1 is avg@n
        return f"--eval_k {cfg.eval_k} must lie in [2, --eval_samples={cfg.eval_samples}]"
    return None


def str2bool(s):
    if s.lower() not in ("1", "true", "yes", "0", "false", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")
    return s.lower() in ("1", "true", "yes")


def parse_args(argv=None):
    """Config from command-line flags generated from the dataclass; unknown flags are rejected."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    helps = field_help()
    for name, ok in field_choices().items():
        helps[name] += f" [{', '.join(ok)}]"
    add_flags(p, Config, helps)
    cfg = Config(**vars(p.parse_args(argv)))
    err = check_config(cfg)
    if err:
        p.error(err)
    return cfg


# -----------------------------------------------------------------------------
# The model: GPT-2 in nanoGPT's names, pre-norm, causal SDPA, tied embeddings, KV cache
#
# Positions are *learned* (wpe, as in GPT-2/nanoGPT) and given per row: a row with n_pad left-pad
# tokens has its first real token at position 0. Left padding is how rows of different prompt
# lengths decode in lockstep (every row writes the same KV-cache slot each step); with per-row
# positions and a key-padding mask, a padded row computes the same function as the unpadded one.
# Rotary positions would also work; learned ones are simpler and keep GPT-2's names, and lengths
# never exceed the block size the model was trained with, so rotary's extrapolation buys nothing.


@dataclass
class GPTConfig:
    vocab_size: int = 257  # tokens (the byte tokenizer's 256 bytes + end-of-text)
    block_size: int = BLOCK_SIZE  # most positions a sequence may have
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 128  # residual stream width


class KVCache:
    """Preallocated keys and values, one (2, B, n_head, max_len, head_dim) tensor per layer, plus a
    position pointer `pos` (tokens already cached). Allocated on first use, in the keys' dtype."""

    def __init__(self, n_layer, max_len):
        self.kv, self.max_len, self.pos = [None] * n_layer, max_len, 0

    def update(self, layer, k, v):
        """Store k, v (B, nh, T, hs) at positions pos..pos+T; return all keys/values so far."""
        if self.kv[layer] is None:
            B, nh, _, hs = k.shape
            self.kv[layer] = torch.empty(2, B, nh, self.max_len, hs, dtype=k.dtype, device=k.device)
        t1 = self.pos + k.shape[2]
        self.kv[layer][0, :, :, self.pos:t1] = k
        self.kv[layer][1, :, :, self.pos:t1] = v
        return self.kv[layer][0, :, :, :t1], self.kv[layer][1, :, :, :t1]


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x, mask, cache, layer):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (z.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, nh, pos+T, hs)
        # mask None: plain causal (flash kernel on GPU); else a (B|1, 1, T, pos+T) boolean keep-mask
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=False)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=False)
        self.mlp = MLP(config)

    def forward(self, x, mask, cache, layer):
        x = x + self.attn(self.ln_1(x), mask, cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=False),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied embeddings
        # the one init spot: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer) (GPT-2)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * config.n_layer) if name.endswith("c_proj.weight") else 0.02
                torch.nn.init.normal_(p, mean=0.0, std=std)

    def num_params(self):
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx, n_pad=None, cache=None):
        """idx (B, T) -> logits (B, T, vocab) at every position. n_pad (B,): left-pad tokens per row
        (masked out as keys; positions count from the first real token). cache: a KVCache whose
        `pos` tokens precede idx; it is advanced by T."""
        B, T = idx.shape
        t0 = cache.pos if cache is not None else 0
        if t0 + T > self.config.block_size:
            raise ValueError(f"sequence of {t0 + T} tokens exceeds block_size {self.config.block_size}")
        q_pos = torch.arange(t0, t0 + T, device=idx.device)
        pos = q_pos[None] if n_pad is None else (q_pos[None] - n_pad[:, None]).clamp_min(0)  # (B|1, T)
        mask = None
        if n_pad is not None or cache is not None:
            k_pos = torch.arange(t0 + T, device=idx.device)
            keep = (k_pos[None] <= q_pos[:, None])[None]  # causal (1, T, t0+T)
            if n_pad is not None:  # no pad keys; a pad query sees itself only (no empty softmax row)
                keep = keep & ((k_pos[None, None] >= n_pad[:, None, None]) | (k_pos[None] == q_pos[:, None])[None])
            mask = keep.unsqueeze(1)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, mask, cache, layer)
        if cache is not None:
            cache.pos += T
        return self.lm_head(self.transformer.ln_f(x))  # (B, T, vocab)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """nanoGPT-compatible: append max_new_tokens sampled tokens to idx (B, T) (global RNG)."""
        tokens, _ = sample(self, idx, max_new_tokens, temperature=temperature, top_k=top_k)
        return torch.cat([idx, tokens], dim=1)


# -----------------------------------------------------------------------------
# Sampling: a pure function of (model, prompts, generator); the naive path is the tested reference


@torch.no_grad()
def sample(model, prompt, max_new_tokens, n_pad=None, temperature=1.0, top_k=None, gen=None,
           stop_id=None, use_cache=True):
    """Batched autoregressive sampling. prompt (B, L), left-padded by n_pad (B,) tokens per row.
    temperature 0 = greedy. Once a row emits stop_id it holds stop_id (log-prob 0) for the rest;
    sampling ends when every row has stopped. use_cache=False recomputes the whole prefix each
    step (the reference). Returns tokens (B, T<=max_new_tokens) and their log-probabilities under
    the distribution they were drawn from (= log π_θ when temperature = 1 and top_k is None)."""
    B = prompt.shape[0]
    cache = KVCache(model.config.n_layer, prompt.shape[1] + max_new_tokens) if use_cache else None
    seq, done = prompt, torch.zeros(B, dtype=torch.bool, device=prompt.device)
    logits = model(prompt, n_pad, cache)[:, -1]
    tokens, logps = [], []
    for i in range(max_new_tokens):
        logits = logits.float()
        if temperature == 0:
            logp = F.log_softmax(logits, dim=-1)
            tok = logp.argmax(-1)
        else:
            logits = logits / temperature
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, [-1]]
                logits = logits.masked_fill(logits < kth, -math.inf)
            logp = F.log_softmax(logits, dim=-1)
            tok = torch.multinomial(logp.exp(), 1, generator=gen).squeeze(1)
        lp = logp.gather(1, tok[:, None]).squeeze(1)
        if stop_id is not None:
            tok, lp = tok.masked_fill(done, stop_id), lp.masked_fill(done, 0.0)
            done = done | (tok == stop_id)
        tokens.append(tok)
        logps.append(lp)
        if i == max_new_tokens - 1 or (stop_id is not None and bool(done.all())):
            break
        if use_cache:
            logits = model(tok[:, None], n_pad, cache)[:, -1]
        else:
            seq = torch.cat([seq, tok[:, None]], dim=1)
            logits = model(seq, n_pad)[:, -1]
    return torch.stack(tokens, 1), torch.stack(logps, 1)


# -----------------------------------------------------------------------------
# Batches. Sampling left-pads the contexts (rows decode in lockstep). Training forwards (SFT,
# student, teacher) lay each row out as [context | response], right-padded: plain causal attention
# needs no mask (the fast kernel), padding is never attended, and response_logits() gathers each
# row's response positions, so student_logits[b, t] and teacher_logits[b, t] both predict resp[b, t]
# whatever the two contexts' lengths.


def left_pad(seqs, pad_id, device):
    """list of token lists -> idx (B, L) with each row right-aligned, n_pad (B,)."""
    L = max(len(s) for s in seqs)
    idx = torch.tensor([[pad_id] * (L - len(s)) + s for s in seqs], dtype=torch.long, device=device)
    return idx, torch.tensor([L - len(s) for s in seqs], device=device)


def right_pad(seqs, pad_id, device):
    """list of token lists -> tokens (B, T), mask (B, T) with 1 on real tokens."""
    T = max(len(s) for s in seqs)
    tok = torch.tensor([s + [pad_id] * (T - len(s)) for s in seqs], dtype=torch.long, device=device)
    mask = torch.arange(T, device=device)[None] < torch.tensor([len(s) for s in seqs], device=device)[:, None]
    return tok, mask


def response_logits(model, ctx_ids, resp):
    """Logits predicting each response token: row b's state at t is (ctx_ids[b], resp[b, :t]).
    ctx_ids: list of B token lists; resp (B, T) -> (B, T, vocab)."""
    T = resp.shape[1]
    # the last response token predicts nothing we train on; pads follow, so any id would do
    x, _ = right_pad([c + r for c, r in zip(ctx_ids, resp[:, :-1].tolist())], tasks.EOT_ID, resp.device)
    first = torch.tensor([len(c) - 1 for c in ctx_ids], device=resp.device)  # predicts resp[b, 0]
    at = (first[:, None] + torch.arange(T, device=resp.device)[None])[..., None]  # (B, T, 1)
    logits = model(x)  # (B, L, vocab)
    return logits.gather(1, at.expand(-1, -1, logits.shape[-1]))


def response_lengths(resp, stop_id):
    """Tokens up to and including the first stop_id (all T if the row never stopped)."""
    stop = resp == stop_id
    return torch.where(stop.any(1), stop.int().argmax(1) + 1, resp.shape[1])


def generate_responses(model, ctx_ids, max_new, temperature, top_k, gen, amp, chunk):
    """Sample one response per context, `chunk` rows per sampler call -> resp (B, T) (EOT after
    the end), mask (B, T) (1 up to and including EOT)."""
    parts = []
    for i in range(0, len(ctx_ids), chunk):
        idx, n_pad = left_pad(ctx_ids[i:i + chunk], tasks.EOT_ID, gen.device)
        with amp:
            parts.append(sample(model, idx, max_new, n_pad, temperature, top_k or None, gen, tasks.EOT_ID)[0])
    T = max(p.shape[1] for p in parts)
    resp = torch.cat([F.pad(p, (0, T - p.shape[1]), value=tasks.EOT_ID) for p in parts])
    mask = torch.arange(T, device=resp.device)[None] < response_lengths(resp, tasks.EOT_ID)[:, None]
    return resp, mask


def decode_responses(enc, resp, mask):
    """Response texts without the end-of-text token (what the verifier scores)."""
    return [enc.decode([t for t in row[:n] if t != tasks.EOT_ID])
            for row, n in zip(resp.tolist(), mask.sum(1).tolist())]


def encode(enc, text):
    return enc.encode_ordinary(text)  # plain text: a literal "<|endoftext|>" in it stays bytes


# -----------------------------------------------------------------------------
# Teachers: contexts (SDPO's reprompt), the programmatic oracle, and the one batched forward


def teacher_contexts(problems, rewards, texts, feedback, group, mode, self_peer=False):
    """SDPO's reprompt for every rollout (rows are consecutive groups of `group` per prompt):
    environment feedback if the rollout failed, and/or the first *other* successful rollout of the
    same prompt as a peer solution (self_peer: a success without one is its own peer, SDPO's
    dont_reprompt_on_self_success=False). None where neither exists: that rollout gets no signal."""
    out = []
    for i, p in enumerate(problems):
        if mode == "none":
            out.append(tasks.student_context(p))
            continue
        g0 = i - i % group
        peer = next((texts[j] for j in range(g0, g0 + group) if j != i and rewards[j] > 0.5), None)
        if peer is None and self_peer and rewards[i] > 0.5:
            peer = texts[i]
        fb = feedback[i] if rewards[i] <= 0.5 and feedback[i] else None
        fb, peer = (fb if mode in ("both", "feedback") else None), (peer if mode in ("both", "peer") else None)
        out.append(tasks.teacher_context(p, feedback=fb, peer=peer) if (fb or peer) else None)
    return out


def oracle_logits(task, problems, resp, mask, vocab_size):
    """The task's programmatic expert at every state the student visited, as smoothed log-probs
    (B, T, V): log((1 − ε) p + ε/V). The oracle returns a character distribution; with the byte
    tokenizer a character is a token, and the key EOT means "the response ends here". Zero-probability
    tokens get ε/V: forward CE barely changes (by ≤ ε log V), while reverse KL / JSD stay finite."""
    probs = torch.zeros(resp.shape[0], resp.shape[1], vocab_size)
    for b, (row, n) in enumerate(zip(resp.tolist(), mask.sum(1).tolist())):
        text = bytes(t for t in row[:n] if t < 256).decode("latin-1")  # one char per byte token
        for t in range(n):
            for ch, pr in task.oracle(problems[b], text[:t]).items():
                probs[b, t, tasks.EOT_ID if ch == tasks.EOT else ord(ch)] += pr
    return torch.log((1 - ORACLE_EPS) * probs + ORACLE_EPS / vocab_size).to(resp.device)


def oracle_response(task, problem, rng, max_chars):
    """Sample a whole response from the oracle (the black-box expert's own answer)."""
    text = ""
    for _ in range(max_chars):
        probs = task.oracle(problem, text)
        ch = rng.choices(list(probs), weights=list(probs.values()))[0]
        if ch == tasks.EOT:
            break
        text += ch
    return text


@torch.no_grad()
def teacher_logits(teacher, task, problems, tctx, resp, mask, enc, amp):
    """π_T at each of the student's states, for the rows with a teacher context: ONE forward of
    [teacher context | the student's own response]. Rows without a context stay 0 (and masked)."""
    rows = [i for i, c in enumerate(tctx) if c is not None]
    V = enc.n_vocab
    out = torch.zeros(resp.shape[0], resp.shape[1], V, device=resp.device)
    if not rows:
        return out
    if teacher == "oracle":
        out[rows] = oracle_logits(task, [problems[i] for i in rows], resp[rows], mask[rows], V)
    else:
        with amp:
            out[rows] = response_logits(teacher, [encode(enc, tctx[i]) for i in rows], resp[rows]).float()
    return out


def teacher_responses(teacher, task, problems, tctx, cfg, rt, gen):
    """The teacher's own answers from its contexts (for `offline` and for measuring t_rew):
    list of texts, None for rows without a context."""
    rows = [i for i, c in enumerate(tctx) if c is not None]
    out = [None] * len(tctx)
    if teacher == "oracle":
        rng = random.Random(int(torch.randint(2**31, (1,), generator=gen, device=gen.device)))
        for i in rows:
            out[i] = oracle_response(task, problems[i], rng, task.max_response_chars)
    elif rows:
        ids = [encode(rt.enc, tctx[i]) for i in rows]
        resp, mask = generate_responses(teacher, ids, task.max_response_chars + 1, cfg.temperature,
                                        cfg.top_k, gen, rt.amp, cfg.sample_batch)
        for i, text in zip(rows, decode_responses(rt.enc, resp, mask)):
            out[i] = text
    return out


# -----------------------------------------------------------------------------
# Metrics and evaluation


def pass_at_k(n, c, k):
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021): 1 − C(n−c, k) / C(n, k),
    as a numerically stable product."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def majority_correct(task, problem, texts):
    """maj@n: the most common final answer (first seen wins ties) equals the reference's."""
    answers = [a for a in (task.answer(problem, t) for t in texts) if a is not None]
    return float(bool(answers) and Counter(answers).most_common(1)[0][0] == task.answer(problem, problem.solution))


def eval_keys(cfg):
    return ["pass@1", f"pass@{cfg.eval_k}", f"avg@{cfg.eval_samples}", f"maj@{cfg.eval_samples}", "t_rew", "lift"]


@torch.no_grad()
def evaluate(model, teacher, cfg, rt, problems):
    """Held-out metrics, sharded over ranks and summed. Every evaluation draws the same random
    numbers (seeded by seed and rank only): differences between checkpoints are not sampling noise."""
    task, n, k = rt.task, cfg.eval_samples, cfg.eval_k
    mine = problems[rt.rank::rt.world]
    gen = torch.Generator(rt.device).manual_seed(seed_of(cfg.seed, "eval", 0, rt.rank))
    ids = [encode(rt.enc, tasks.student_context(p)) for p in mine]
    max_new = task.max_response_chars + 1
    resp, mask = generate_responses(model, ids, max_new, 0.0, None, gen, rt.amp, cfg.sample_batch)
    greedy = [task.verify(p, t)[0] for p, t in zip(mine, decode_responses(rt.enc, resp, mask))]
    rows = [p for p in mine for _ in range(n)]
    resp, mask = generate_responses(model, [i for i in ids for _ in range(n)], max_new, cfg.temperature,
                                    cfg.top_k, gen, rt.amp, cfg.sample_batch)
    texts = decode_responses(rt.enc, resp, mask)
    scored = [task.verify(p, t) for p, t in zip(rows, texts)]
    rewards = [r for r, _ in scored]
    tctx = teacher_contexts(rows, rewards, texts, [f for _, f in scored], n, cfg.context, cfg.self_peer)
    t_texts = teacher_responses(teacher, task, rows, tctx, cfg, rt, gen)
    t_rewards = [task.verify(p, t)[0] for p, t in zip(rows, t_texts) if t is not None]
    s = reduce_sums(rt, [
        len(mine), sum(greedy),
        sum(pass_at_k(n, int(sum(rewards[i:i + n])), k) for i in range(0, len(rows), n)),
        sum(rewards) / n,
        sum(majority_correct(task, p, texts[i * n:(i + 1) * n]) for i, p in enumerate(mine)),
        sum(t_rewards), len(t_rewards)])
    N, t_rew = max(s[0], 1.0), s[5] / max(s[6], 1.0)
    return dict(zip(eval_keys(cfg), [s[1] / N, s[2] / N, s[3] / N, s[4] / N, t_rew, t_rew - s[3] / N]))


def format_eval(m):
    return " | ".join(f"{key} {val:+.3f}" if key == "lift" else f"{key} {val:.3f}" for key, val in m.items())


# -----------------------------------------------------------------------------
# Run plumbing: devices, distributed, seeds, optimizer


@dataclass
class Runtime:
    """What every stage needs besides the config (built once by setup())."""
    device: torch.device
    rank: int
    world: int
    amp: object  # autocast context (bf16 on CUDA) or a no-op
    enc: object  # tiktoken.Encoding
    task: object
    owns_pg: bool  # whether main() created the process group (and so destroys it)

    def log(self, *args):
        if self.rank == 0:
            print(*args, flush=True)


def setup(cfg):
    """Device, torchrun/DDP process group, precision, tokenizer, task."""
    world, rank, local = (int(os.environ.get(k, d)) for k, d in (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0)))
    name = cfg.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    device = torch.device(f"cuda:{local}" if name == "cuda" else name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls for any fp32 work (Ampere+)
        torch.backends.cudnn.allow_tf32 = True
    owns_pg = world > 1 and not dist.is_initialized()
    if owns_pg:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    return Runtime(device, rank, world, amp, tasks.get_tokenizer(), make_task(cfg.task), owns_pg)


def make_task(spec):
    """"name" -> tasks.TASKS[name]; "name:knob=value,..." -> a fresh instance with those difficulty
    knobs (the task's constructor arguments, listed in tasks.py)."""
    name, _, args = spec.partition(":")
    task = tasks.TASKS[name]
    if not args:
        return task
    try:
        kw = {k.strip(): ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in args.split(","))}
        return type(task)(**kw)
    except (ValueError, SyntaxError, TypeError) as e:
        knobs = ", ".join(list(inspect.signature(type(task).__init__).parameters)[1:])
        raise SystemExit(f"error: --task {spec!r}: {e} (knobs of {name}: {knobs})")


def problem_sets(cfg, task):
    """(training problems, evaluation problems), drawn with --data_seed. With --val_n the first val_n
    distinct training problems (by the task's split key, so equivalent problems count once) are the
    validation set: every copy of them leaves the training list, so SFT and RL never see them."""
    seed = cfg.seed if cfg.data_seed < 0 else cfg.data_seed
    train = task.generate("train", cfg.n_train, seed)
    if cfg.val_n == 0:
        return train, task.generate("test", cfg.eval_n, seed)
    first = {}
    for p in train:
        first.setdefault(task.split_key(p), p)
    if cfg.val_n >= len(first):
        raise SystemExit(f"error: --val_n {cfg.val_n} leaves no training problems ({len(first)} distinct)")
    val = list(first.values())[:cfg.val_n]
    held = {task.split_key(p) for p in val}
    train = [p for p in train if task.split_key(p) not in held]
    return train, val if cfg.eval_split == "val" else task.generate("test", cfg.eval_n, seed)


def reduce_sums(rt, values):
    """Sum a list of floats over ranks (one all-reduce); float64 where the device has it."""
    x = torch.tensor(values, dtype=torch.float32 if rt.device.type == "mps" else torch.float64, device=rt.device)
    if rt.world > 1:
        dist.all_reduce(x)
    return x.tolist()


def seed_of(seed, stage, step, rank):
    """A 31-bit seed that is a fixed function of its arguments (Python's hash() is salted per process)."""
    return zlib.crc32(f"{seed}/{stage}/{step}/{rank}".encode()) & 0x7FFFFFFF


def sync(rt):
    if rt.device.type == "cuda":
        torch.cuda.synchronize(rt.device)


def wrap(raw, cfg, rt):
    """The module the training forward goes through: optionally compiled, DDP across ranks."""
    model = torch.compile(raw, dynamic=True) if cfg.compile and rt.device.type == "cuda" else raw
    if rt.world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    return model

def make_optimizer(model, lr, weight_decay, device):
    """AdamW; weight decay on matrices only (nanoGPT); fused kernel on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    # betas (0.9, 0.95): nanoGPT/GPT-3's choice for transformers
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=device.type == "cuda")


# -----------------------------------------------------------------------------
# Checkpoints (atomic), logs, Ctrl-C and NaN handling


def save_checkpoint(path, **state):
    """Atomic: write a temporary file, then rename over the old checkpoint."""
    state["rng"] = {"python": random.getstate(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, what="checkpoint"):
    """Load a train_gpt.py checkpoint or exit with one line saying what is wrong."""
    if not os.path.exists(path):
        raise SystemExit(f"error: {what} {path} not found (train one with --stage sft, or pass --init_from PATH)")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say so in one line
        raise SystemExit(f"error: {what} {path} is unreadable ({type(e).__name__}: {str(e).splitlines()[0]})")
    if not isinstance(ck, dict) or not {"model", "model_args"} <= set(ck):
        raise SystemExit(f"error: {what} {path} is not a train_gpt.py checkpoint (no model/model_args)")
    return ck


def model_from(ck, path, vocab_size, preset=None):
    """GPT from a checkpoint; exits naming the mismatch if the vocabulary (or, when `preset` is
    given, the shape) is not what this run expects."""
    args = ck["model_args"]
    if args["vocab_size"] != vocab_size:
        raise SystemExit(f"error: {path} has vocab_size {args['vocab_size']}, but the tokenizer has "
                         f"{vocab_size} tokens (a checkpoint from another tokenizer)")
    shape = (args["n_layer"], args["n_head"], args["n_embd"])
    if preset is not None and shape != PRESETS[preset]:
        raise SystemExit(f"error: {path} has (n_layer, n_head, n_embd) = {shape}, but --preset {preset} "
                         f"is {PRESETS[preset]}; pass the matching --preset")
    model = GPT(GPTConfig(**args))
    model.load_state_dict(ck["model"])
    return model


def append_jsonl(path, row):
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def read_jsonl(path):
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


def restart_log(rt, path, start):
    """Keep the rows of steps before `start` (all of them for a fresh run: none) and return them."""
    rows = [r for r in read_jsonl(path) if r["step"] < start] if rt.rank == 0 else []
    if rt.rank == 0:
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return rows


def resume_from(ck, opt):
    """Restore the optimizer and the global RNGs from a checkpoint; return its step. (Every per-step
    draw is seeded by seed_of(), so the RNG state matters only to code that uses the global RNGs.)"""
    opt.load_state_dict(ck["optimizer"])
    random.setstate(ck["rng"]["python"])
    torch.set_rng_state(ck["rng"]["torch"])
    return ck["step"]


def fmt_time(s):
    return f"{int(s // 60)}m{int(s % 60):02d}s"


def stop_on_ctrl_c():
    """First Ctrl-C: finish the current step, save a checkpoint, stop. Second: abort at once.
    Returns a dict whose "stop" entry the training loops poll (installed only in the main thread)."""
    flag = {"stop": False}

    def handler(signum, frame):
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True
        print("\nCtrl-C: finishing this step, then saving a checkpoint (press again to abort)", flush=True)

    if threading.current_thread() is threading.main_thread():
        flag["restore"] = signal.signal(signal.SIGINT, handler)
    return flag


def restore_ctrl_c(flag):
    if "restore" in flag:
        signal.signal(signal.SIGINT, flag["restore"])


def check_finite(loss, stage, step, ckpt):
    """Stop with the step and the last good checkpoint named if the loss is NaN or inf."""
    if not math.isfinite(loss):
        last = ckpt if os.path.exists(ckpt) else "none yet"
        raise SystemExit(f"error: {stage} loss is {loss} at step {step}; stopped before the update. "
                         f"Last good checkpoint: {last}")


# -----------------------------------------------------------------------------
# Stage 1: SFT warm start on reference solutions and teacher-format examples


def sft_example(task, problem, rng, teacher_frac):
    """(context, response) for one problem: the student's format, or (with prob teacher_frac) a
    teacher format — feedback on a corrupted attempt, a peer solution, or both, a third each."""
    if rng.random() >= teacher_frac:
        return tasks.student_context(problem), problem.solution
    kind = rng.randrange(3)
    feedback = task.verify(problem, task.corrupt(problem, rng))[1] if kind != 1 else None
    peer = problem.solution if kind != 0 else None
    return tasks.teacher_context(problem, feedback=feedback, peer=peer), problem.solution


def lr_at(step, total, peak):
    """Linear warmup over the first 5% of steps, then cosine to 10% of peak (nanoGPT's schedule)."""
    warm = max(1, total // 20)
    if step < warm:
        return peak * (step + 1) / warm
    return peak * (0.1 + 0.45 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm))))


def train_sft(cfg, rt):
    """Train a GPT from scratch on the task; save out_dir/sft.pt; return the final eval metrics."""
    path, log_path = os.path.join(cfg.out_dir, "sft.pt"), os.path.join(cfg.out_dir, "sft.jsonl")
    task, enc = rt.task, rt.enc
    raw = GPT(GPTConfig(rt.enc.n_vocab, BLOCK_SIZE, *PRESETS[cfg.preset])).to(rt.device)
    opt = make_optimizer(raw, cfg.sft_lr, 0.1, rt.device)  # wd 0.1: nanoGPT's
    start = 0
    if cfg.resume and os.path.exists(path):
        ck = load_checkpoint(path)
        raw.load_state_dict(model_from(ck, path, enc.n_vocab, cfg.preset).state_dict())
        start = resume_from(ck, opt)
    model = wrap(raw, cfg, rt)
    train, test = problem_sets(cfg, task)
    if rt.world > 1 and cfg.sft_batch % rt.world:
        raise SystemExit(f"error: --sft_batch {cfg.sft_batch} must be divisible by the {rt.world} ranks")
    per_rank = cfg.sft_batch // rt.world
    rt.log(f"sft: {raw.num_params():,} parameters | {cfg.sft_steps} steps x {cfg.sft_batch} sequences | "
           f"{len(train)} train problems, {len(test)} {cfg.eval_split}")
    restart_log(rt, log_path, start)

    def save(step):
        if rt.rank == 0:
            save_checkpoint(path, model=raw.state_dict(), model_args=dataclasses.asdict(raw.config),
                            optimizer=opt.state_dict(), step=step, config=dataclasses.asdict(cfg), stage="sft")

    flag, t_start, step = stop_on_ctrl_c(), time.time(), start
    try:
        for step in range(start, cfg.sft_steps):
            t0 = time.time()
            rng = random.Random(seed_of(cfg.seed, "sft", step, rt.rank))
            pairs = [sft_example(task, rng.choice(train), rng, cfg.sft_teacher_frac) for _ in range(per_rank)]
            resp, mask = right_pad([encode(enc, r) + [tasks.EOT_ID] for _, r in pairs], tasks.EOT_ID, rt.device)
            lr = lr_at(step, cfg.sft_steps, cfg.sft_lr)
            for g in opt.param_groups:
                g["lr"] = lr
            with rt.amp:
                logits = response_logits(model, [encode(enc, c) for c, _ in pairs], resp)
            loss = D.offline_loss(logits, resp, mask, reduction="token_mean")  # NLL of the solution
            stats = reduce_sums(rt, [loss.item(), mask.sum().item(), float(flag["stop"])])
            check_finite(stats[0], "sft", step, path)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(raw.parameters(), 1.0)  # SFT from scratch: nanoGPT's clip
            opt.step()
            dt = time.time() - t0
            if rt.rank == 0 and (step % 25 == 0 or step == cfg.sft_steps - 1):
                row = {"step": step, "loss": stats[0] / rt.world, "lr": lr, "tok_s": stats[1] / dt}
                append_jsonl(log_path, row)
                eta = (time.time() - t_start) / (step + 1 - start) * (cfg.sft_steps - step - 1)
                rt.log(f"sft {step:5d}/{cfg.sft_steps} | loss {row['loss']:.4f} | lr {lr:.2e} | "
                       f"{row['tok_s'] / 1e3:.1f}k tok/s | {dt * 1e3:.0f} ms | eta {fmt_time(eta)}")
            if stats[2] > 0:
                break
            if (step + 1) % cfg.ckpt_every == 0:
                save(step + 1)
    finally:
        restore_ctrl_c(flag)
    done = step + 1 if cfg.sft_steps > start else start
    save(done)
    if done < cfg.sft_steps:
        rt.log(f"sft: stopped at step {done}; saved {path} (continue with --resume)")
        return None
    t0 = time.time()
    metrics = evaluate(raw, raw, cfg, rt, test)
    rt.log(f"eval after sft: {format_eval(metrics)} | {time.time() - t0:.1f} s")
    if rt.rank == 0:
        append_jsonl(log_path, {"step": cfg.sft_steps, **metrics})
    return metrics



# -----------------------------------------------------------------------------
# Stage 2: one on-policy RL step — rollouts, verification, teacher signal, the method's loss, update


@dataclass
class Rollouts:
    problems: list  # (B) the problem of each row: G consecutive rows per prompt
    ctx: list  # (B) student-context token ids
    resp: torch.Tensor  # (B, T) response token ids (EOT after the end)
    mask: torch.Tensor  # (B, T) bool: response tokens, up to and including EOT
    texts: list = None  # (B) decoded responses
    rewards: torch.Tensor = None  # (B,) 0/1 from the verifier
    feedback: list = None  # (B) the verifier's feedback


def sample_rollouts(model, cfg, rt, prompts, gen):
    """G rollouts of each prompt from the student, one batched KV-cached sampler call."""
    rows = [p for p in prompts for _ in range(cfg.group)]
    ctx = [encode(rt.enc, tasks.student_context(p)) for p in rows]
    resp, mask = generate_responses(model, ctx, rt.task.max_response_chars + 1, cfg.temperature,
                                    cfg.top_k, gen, rt.amp, cfg.sample_batch)
    return Rollouts(rows, ctx, resp, mask)


def score_rollouts(rt, ro):
    """Verify every rollout: reward and rich feedback."""
    ro.texts = decode_responses(rt.enc, ro.resp, ro.mask)
    scored = [rt.task.verify(p, t) for p, t in zip(ro.problems, ro.texts)]
    ro.rewards = torch.tensor([r for r, _ in scored], device=ro.resp.device)
    ro.feedback = [f for _, f in scored]


def teacher_signal(cfg, rt, teacher, ro, gen):
    """What the method learns from, on these rollouts: teacher logits (B, T, V) at the student's
    states, or K teacher samples per state (distil_sampled), or whole teacher responses (offline);
    `signal` (B,) marks rollouts that have a teacher context. GRPO needs no teacher."""
    m = cfg.method
    if m == "grpo":
        return {"signal": torch.ones(len(ro.problems), dtype=torch.bool, device=ro.resp.device)}
    mode = "none" if teacher == "oracle" else cfg.context  # the oracle reads the problem, not a context
    tctx = teacher_contexts(ro.problems, ro.rewards.tolist(), ro.texts, ro.feedback, cfg.group, mode, cfg.self_peer)
    out = {"signal": torch.tensor([c is not None for c in tctx], device=ro.resp.device)}
    if m == "offline":  # behaviour cloning: the teacher's own responses, from its context
        texts = teacher_responses(teacher, rt.task, ro.problems, tctx, cfg, rt, gen)
        resp, mask = right_pad([encode(rt.enc, t) + [tasks.EOT_ID] if t is not None else [tasks.EOT_ID]
                                for t in texts], tasks.EOT_ID, ro.resp.device)
        out["resp"], out["mask"] = resp, mask & out["signal"][:, None]
        return out
    out["logits"] = teacher_logits(teacher, rt.task, ro.problems, tctx, ro.resp, ro.mask, rt.enc, rt.amp)
    if m == "distil_sampled":  # black box: the loss sees K samples a_k ~ π_T(·|s_t), never π_T itself
        B, T, V = out["logits"].shape
        probs = F.softmax(out["logits"].view(-1, V), dim=-1)
        out["tokens"] = torch.multinomial(probs, cfg.teacher_samples, replacement=True, generator=gen).view(B, T, -1)
    return out


def method_loss(cfg, logits, tokens, mask, rewards, ts, rows):
    """The method's loss from distil.py on rows `rows` (a slice of whole groups)."""
    m, G, red = cfg.method, cfg.group, cfg.reduction
    if m == "grpo":
        return D.grpo_loss(logits, tokens, mask, rewards[rows], G, reduction=red)
    if m == "offline":
        return D.offline_loss(logits, tokens, mask, reduction=red)
    t_logits = ts["logits"][rows]
    if m == "sdpo":
        return D.sdpo_loss(logits, t_logits, mask, reduction=red)
    if m == "opsd":
        return D.opsd_loss(logits, t_logits, mask, beta=cfg.opsd_beta, reduction=red)
    sampled = m == "distil_sampled"
    return D.distil_loss(logits, tokens, mask, teacher_logits=None if sampled else t_logits,
                         teacher_tokens=ts["tokens"][rows] if sampled else None,
                         sequence_level=m != "distil_token", future_cost="kl" if m == "distil_kl" else "ce",
                         baseline=cfg.baseline, group_size=G, reduction=red,
                         topk=cfg.distil_topk if m == "distil_topk" else None)


def rl_update(cfg, rt, model, opt, ro, ts, step, ckpt):
    """Student forward on [student context | tokens], the method's loss, backward (in chunks of
    whole groups when micro_batch is set), one AdamW step. Returns the step's reduced metrics."""
    offline = cfg.method == "offline"
    tokens = ts["resp"] if offline else ro.resp
    mask = ts["mask"] if offline else ro.mask & ts["signal"][:, None]
    ent_mask = mask if offline else ro.mask  # student entropy on the sequences it is trained on
    B = tokens.shape[0]
    mb = cfg.micro_batch or B
    opt.zero_grad(set_to_none=True)
    loss_sum, ce, kl, ent = 0.0, 0.0, 0.0, 0.0
    for i0 in range(0, B, mb):
        rows = slice(i0, i0 + mb)
        last = i0 + mb >= B
        with contextlib.nullcontext() if last or rt.world == 1 else model.no_sync():
            with rt.amp:
                logits = response_logits(model, ro.ctx[rows], tokens[rows])
            loss = method_loss(cfg, logits, tokens[rows], mask[rows], ro.rewards, ts, rows)
            (loss * (logits.shape[0] / B)).backward()  # exact for "sum" (a mean over rollouts)
        with torch.no_grad():
            lg, on = logits.float(), mask[rows]
            loss_sum += loss.item() * logits.shape[0] / B
            if "logits" in ts:
                ce += D.forward_ce(ts["logits"][rows], lg)[on].sum().item()
                kl += D.forward_kl(ts["logits"][rows], lg)[on].sum().item()
            ent += D.entropy(lg)[ent_mask[rows]].sum().item()
    s = reduce_sums(rt, [loss_sum, ro.rewards.sum().item(), B, (~ts["signal"]).sum().item(), ce, kl,
                         mask.sum().item(), ent, ent_mask.sum().item(), ro.mask.sum().item(), 1.0])
    check_finite(s[0], "rl", step, ckpt)
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    nan = float("nan")
    return {"loss": s[0] / s[10], "reward": s[1] / s[2], "nosig": s[3] / s[2],
            "H×": s[4] / s[6] if "logits" in ts and s[6] else nan,
            "KL": s[5] / s[6] if "logits" in ts and s[6] else nan,
            "ent": s[7] / max(s[8], 1.0), "tokens": s[9]}


# -----------------------------------------------------------------------------
# The RL loop: teachers, evaluation schedule, step lines, checkpoints


def make_teacher(cfg, rt, raw, ck):
    """The teacher module (or "oracle"): self = the live student (its forward runs under no_grad:
    stop-gradient); ema / frozen = a copy, restored from the RL checkpoint `ck` when resuming."""
    if cfg.teacher in ("self", "oracle"):
        return raw if cfg.teacher == "self" else "oracle"
    if cfg.teacher in ("ema", "frozen"):
        teacher = copy.deepcopy(raw)
        if ck is not None and ck.get("teacher") is not None:
            teacher.load_state_dict(ck["teacher"])
    else:
        teacher = model_from(load_checkpoint(cfg.teacher, "teacher checkpoint"), cfg.teacher, rt.enc.n_vocab).to(rt.device)
    return teacher.requires_grad_(False).eval()


def rl_step(cfg, rt, model, raw, opt, teacher, train, step, ckpt):
    """One on-policy step (the loop in the header docstring). Returns metrics and phase times (s)."""
    rng = random.Random(seed_of(cfg.seed, "rl", step, 0))  # the same P prompts on every rank ...
    prompts = rng.sample(train, cfg.prompts)[rt.rank::rt.world]  # ... each rank samples its share
    gen = torch.Generator(rt.device).manual_seed(seed_of(cfg.seed, "rl", step, rt.rank))
    times, t0 = {}, time.time()

    def lap(name):
        nonlocal t0
        sync(rt)
        times[name], t0 = time.time() - t0, time.time()

    ro = sample_rollouts(raw, cfg, rt, prompts, gen)
    lap("sample")
    score_rollouts(rt, ro)
    lap("verify")
    ts = teacher_signal(cfg, rt, teacher, ro, gen)
    lap("teacher")
    metrics = rl_update(cfg, rt, model, opt, ro, ts, step, ckpt)
    if cfg.teacher == "ema":
        with torch.no_grad():
            for pt, p in zip(teacher.parameters(), raw.parameters()):
                pt.lerp_(p, cfg.ema_tau)  # θ_T ← (1 − τ) θ_T + τ θ
    lap("update")
    return metrics, times


def rl_line(step, total, m, dt, eta):
    """The fixed-format step line; '-' where a metric was not measured this step."""
    f = lambda key, spec: format(m[key], spec) if key in m and m[key] == m[key] else "-"
    return (f"rl {step:4d}/{total} | loss {f('loss', '8.4f')} | reward {f('reward', '.3f')} | "
            f"t_rew {f('t_rew', '.3f')} | pass@1 {f('pass@1', '.3f')} | H× {f('H×', '.3f')} | "
            f"KL {f('KL', '.3f')} | ent {f('ent', '.3f')} | nosig {f('nosig', '.2f')} | "
            f"{m.get('tokens', 0) / dt / 1e3:.1f}k tok/s | {dt * 1e3:.0f} ms | eta {fmt_time(eta)}")


def train_rl(cfg, rt, eval0=None):
    """RL from the SFT checkpoint (or --init_from); eval every eval_every steps; saves
    out_dir/rl_<method>.{pt,jsonl,png}. eval0: metrics of the start model, if already measured."""
    run = os.path.join(cfg.out_dir, f"rl_{cfg.method}")
    path, log_path = run + ".pt", run + ".jsonl"
    resume = cfg.resume and os.path.exists(path)
    init = path if resume else (cfg.init_from or os.path.join(cfg.out_dir, "sft.pt"))
    ck = load_checkpoint(init, "checkpoint" if resume else "initial checkpoint")
    raw = model_from(ck, init, rt.enc.n_vocab, cfg.preset).to(rt.device)
    teacher = make_teacher(cfg, rt, raw, ck if resume else None)
    opt = make_optimizer(raw, cfg.rl_lr, 0.0, rt.device)  # no weight decay: few steps from a trained model
    start = resume_from(ck, opt) if resume else 0
    model = wrap(raw, cfg, rt)
    if rt.world > 1 and cfg.prompts % rt.world:
        raise SystemExit(f"error: --prompts {cfg.prompts} must be divisible by the {rt.world} ranks")
    train, test = problem_sets(cfg, rt.task)
    rows = restart_log(rt, log_path, start)
    rt.log(f"rl: method {cfg.method} | teacher {cfg.teacher} | {cfg.prompts} prompts x {cfg.group} rollouts "
           f"per step | from {init}" + (f" at step {start}" if resume else ""))

    def save(step):
        if rt.rank == 0:
            save_checkpoint(path, model=raw.state_dict(), model_args=dataclasses.asdict(raw.config),
                            optimizer=opt.state_dict(), step=step, config=dataclasses.asdict(cfg), stage="rl",
                            teacher=teacher.state_dict() if cfg.teacher in ("ema", "frozen") else None)

    evals = [{"step": r["step"], **{k: r[k] for k in eval_keys(cfg)}} for r in rows if "pass@1" in r]
    flag, t_start, step = stop_on_ctrl_c(), time.time(), start
    try:
        for step in range(start, cfg.rl_steps + 1):
            row = {"step": step}
            if step == cfg.rl_steps or (step % cfg.eval_every == 0 if cfg.eval_every else step == 0):
                t0 = time.time()
                metrics = eval0 if step == 0 and eval0 else evaluate(raw, teacher, cfg, rt, test)
                row.update(metrics)
                evals.append({"step": step, **metrics})
                rt.log(f"eval @ rl step {step}: {format_eval(metrics)} | {time.time() - t0:.1f} s")
            if step == cfg.rl_steps:
                rows.append(row)
                if rt.rank == 0:
                    append_jsonl(log_path, row)
                break
            t0 = time.time()
            metrics, times = rl_step(cfg, rt, model, raw, opt, teacher, train, step, path)
            row.update(metrics, **{f"time_{k}": v for k, v in times.items()})
            dt = time.time() - t0
            eta = (time.time() - t_start) / (step + 1 - start) * (cfg.rl_steps - step - 1)
            rt.log(rl_line(step, cfg.rl_steps, row, dt, eta))
            rows.append(row)
            if rt.rank == 0:
                append_jsonl(log_path, row)
            stop = reduce_sums(rt, [float(flag["stop"])])[0] > 0  # every rank stops at the same step
            if stop or (step + 1) % cfg.ckpt_every == 0:
                save(step + 1)
            if stop:
                rt.log(f"rl: stopped after step {step}; saved {path} (continue with --resume)")
                return {"rows": rows, "stopped": True, "model": raw}
    finally:
        restore_ctrl_c(flag)
    save(cfg.rl_steps)
    if rt.rank == 0:
        plot_run(rows, run + ".png", f"{cfg.task}: {cfg.method}, teacher {cfg.teacher}")
    if evals:
        a, b = evals[0], evals[-1]
        rt.log(f"held-out ({len(test)} {cfg.eval_split} problems), step {a['step']} -> {b['step']}: "
               + " | ".join(f"{k} {a[k]:.3f} -> {b[k]:.3f}" for k in eval_keys(cfg)[:4]))
        rt.log(f"saved {path}, {log_path}, {run}.png")
    return {"rows": rows, "before": evals[0] if evals else None, "after": evals[-1] if evals else None,
            "model": raw}


# -----------------------------------------------------------------------------
# Stage 3: evaluation of a checkpoint; plots; --compare


def eval_stage(cfg, rt):
    """Evaluate --init_from (default: this method's RL checkpoint if any, else the SFT one)."""
    rl_path = os.path.join(cfg.out_dir, f"rl_{cfg.method}.pt")
    path = cfg.init_from or (rl_path if os.path.exists(rl_path) else os.path.join(cfg.out_dir, "sft.pt"))
    raw = model_from(load_checkpoint(path), path, rt.enc.n_vocab).to(rt.device)
    teacher = raw if cfg.teacher in ("self", "ema", "frozen") else make_teacher(cfg, rt, raw, None)
    t0 = time.time()
    metrics = evaluate(raw, teacher, cfg, rt, problem_sets(cfg, rt.task)[1])
    rt.log(f"eval {path}: {format_eval(metrics)} | {time.time() - t0:.1f} s")
    return metrics


def pyplot():
    """matplotlib, imported lazily (runs that do not plot do not pay for it), writing files only."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_run(rows, png, title):
    """Three panels from the JSONL rows: training reward, held-out metrics, teacher-student gap."""
    plt = pyplot()
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    train = [r for r in rows if "reward" in r]
    evals = [r for r in rows if "pass@1" in r]
    smooth = lambda ys: [sum(ys[max(0, i - 9):i + 1]) / len(ys[max(0, i - 9):i + 1]) for i in range(len(ys))]
    ax[0].plot([r["step"] for r in train], [r["reward"] for r in train], alpha=0.3, label="rollout reward")
    ax[0].plot([r["step"] for r in train], smooth([r["reward"] for r in train]), label="... mean of 10 steps")
    ax[0].plot([r["step"] for r in train], [1 - r["nosig"] for r in train], label="fraction with teacher signal")
    keys = [k for k in (evals[0] if evals else {}) if k.split("@")[0] in ("pass", "avg", "maj") or k == "t_rew"]
    for k in keys:
        ax[1].plot([r["step"] for r in evals], [r[k] for r in evals], marker="o", label=k)
    for k in ("H×", "KL", "ent"):
        ax[2].plot([r["step"] for r in train], [r[k] for r in train], label=k + " per token")
    for a, name in zip(ax, ("training", "held-out evaluation", "teacher vs student (nats)")):
        a.set_title(name)
        a.set_xlabel("RL step")
        a.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def compare(cfg, rt):
    """Every method in --compare from the same SFT checkpoint, seed and budget -> table + plot."""
    methods = [m for m in cfg.compare.split(",") if m]
    if cfg.stage == "all" or not (cfg.init_from or os.path.exists(os.path.join(cfg.out_dir, "sft.pt"))):
        train_sft(cfg, rt)
    results, eval0 = {}, None
    for m in methods:
        t0 = time.time()
        res = train_rl(dataclasses.replace(cfg, method=m), rt, eval0)
        eval0 = res["before"] if cfg.teacher in ("self", "ema", "frozen") else None  # same start, same eval seeds
        results[m] = (res, time.time() - t0)
    if rt.rank != 0:
        return results
    keys = [k for k in results[methods[0]][0]["after"] if k != "step"]
    lines = [f"| method | {' | '.join(keys)} | final reward (last 10 steps) | wall |",
             "|" + " --- |" * (len(keys) + 3)]
    start = results[methods[0]][0]["before"]
    lines.append(f"| start (SFT) | {' | '.join(f'{start[k]:.3f}' for k in keys)} | - | - |")
    for m, (res, wall) in results.items():
        last = [r["reward"] for r in res["rows"] if "reward" in r][-10:]
        after = res["after"]
        lines.append(f"| {m} | {' | '.join(f'{after[k]:.3f}' for k in keys)} | "
                     f"{sum(last) / len(last):.3f} | {fmt_time(wall)} |")
    table = "\n".join(lines)
    with open(os.path.join(cfg.out_dir, "compare.md"), "w") as f:
        f.write(f"{cfg.task}, teacher {cfg.teacher}, {cfg.rl_steps} steps x {cfg.prompts} prompts x "
                f"{cfg.group} rollouts, seed {cfg.seed}, {cfg.eval_n} held-out problems\n\n{table}\n")
    print(table)
    plt = pyplot()
    pk = f"pass@{cfg.eval_k}"
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for m, (res, _) in results.items():
        evals = [r for r in res["rows"] if "pass@1" in r]
        for a, k in zip(ax, ("pass@1", pk)):
            a.plot([r["step"] for r in evals], [r[k] for r in evals], marker="o", label=m)
    for a, k in zip(ax, ("pass@1 (greedy)", pk)):
        a.set_title(f"{cfg.task}: held-out {k}")
        a.set_xlabel("RL step")
        a.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(cfg.out_dir, "compare.png"), dpi=100)
    plt.close(fig)
    return results


# -----------------------------------------------------------------------------
# --bench: the sampler with and without the KV cache; one DistIL step against one GRPO step

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16, vendor data sheets


def timed(rt, fn, repeat=1, warmup=None):
    """Best wall time of `repeat` calls of fn, after one call of warmup (default: fn itself)."""
    out = (warmup or fn)()
    best = math.inf
    for _ in range(repeat):
        sync(rt)
        t0 = time.time()
        out = fn()
        sync(rt)
        best = min(best, time.time() - t0)
    return best, out


def bench(cfg, rt):
    """Print the benchmark tables (issue 4's performance targets); returns the numbers."""
    V, B, new, L = rt.enc.n_vocab, 64, 128, 32  # the issue's batch 64 and 128 new tokens; a 32-token prompt
    torch.manual_seed(cfg.seed)
    tiny = GPT(GPTConfig(V, BLOCK_SIZE, *PRESETS["tiny"])).to(rt.device).eval()
    prompt = torch.randint(V, (B, L), device=rt.device)
    n_pad = torch.zeros(B, dtype=torch.long, device=rt.device)
    res = {}
    for name, cache in (("kv_cache", True), ("naive", False)):
        gen = torch.Generator(rt.device).manual_seed(cfg.seed)
        with rt.amp:
            res[name], _ = timed(rt, lambda: sample(tiny, prompt, new, n_pad, 1.0, None, gen, None, cache),
                                 warmup=lambda: sample(tiny, prompt, 4, n_pad, 1.0, None, gen, None, cache))
    print(f"\n| sampler: tiny preset, batch {B}, {L}-token prompt, {new} new tokens | tokens/s | time |")
    print("| --- | --- | --- |")
    for name in res:
        print(f"| {name} | {B * new / res[name]:,.0f} | {res[name]:.2f} s |")
    print(f"| speed-up of the KV cache | {res['naive'] / res['kv_cache']:.1f}x | |")

    # one RL step on the same rollouts: the SFT model if there is one, else a random tiny model
    sft = cfg.init_from or os.path.join(cfg.out_dir, "sft.pt")
    raw = model_from(load_checkpoint(sft), sft, V) if os.path.exists(sft) else tiny
    raw = raw.to(rt.device).train()
    train = problem_sets(cfg, rt.task)[0]
    prompts = random.Random(cfg.seed).sample(train, cfg.prompts)
    gen = torch.Generator(rt.device).manual_seed(cfg.seed)
    t_sample, ro = timed(rt, lambda: sample_rollouts(raw, cfg, rt, prompts, gen))
    t_verify, _ = timed(rt, lambda: score_rollouts(rt, ro))
    phases = {}
    for m in ("distil", "grpo"):
        c = dataclasses.replace(cfg, method=m, teacher="self")
        student = copy.deepcopy(raw)
        opt = make_optimizer(student, c.rl_lr, 0.0, rt.device)
        t_teacher, ts = timed(rt, lambda: teacher_signal(c, rt, student, ro, gen), repeat=3)
        t_update, _ = timed(rt, lambda: rl_update(c, rt, student, opt, ro, ts, 0, "none"), repeat=3)
        phases[m] = {"sample": t_sample, "verify": t_verify, "teacher": t_teacher, "update": t_update}
    total = {m: sum(p.values()) for m, p in phases.items()}
    n_tok = ro.mask.sum().item()
    print(f"\n| one RL step ({sft if raw is not tiny else 'random tiny model'}; {cfg.prompts} prompts x "
          f"{cfg.group} rollouts, {n_tok} response tokens, --context {cfg.context}) | distil (ms) | grpo (ms) |")
    print("| --- | --- | --- |")
    for k in phases["distil"]:
        print(f"| {k} | {phases['distil'][k] * 1e3:.0f} | {phases['grpo'][k] * 1e3:.0f} |")
    print(f"| total | {total['distil'] * 1e3:.0f} | {total['grpo'] * 1e3:.0f} |")
    print(f"| ratio distil / grpo | {total['distil'] / total['grpo']:.2f}x | |")
    out = {"sampler": res, "speedup": res["naive"] / res["kv_cache"], "phases": phases,
           "ratio": total["distil"] / total["grpo"]}
    if rt.device.type == "cuda":
        out["gpu"] = bench_gpu(cfg, rt)
    return out


def bench_gpu(cfg, rt):
    """CUDA only: training tokens/s and model FLOPs utilisation of the gpt2 preset, sampler tokens/s."""
    V, B, T = rt.enc.n_vocab, 32, 512  # 16k tokens per update: a typical RL batch of responses
    model = GPT(GPTConfig(V, BLOCK_SIZE, *PRESETS["gpt2"])).to(rt.device)
    fwd = torch.compile(model) if cfg.compile else model
    opt = make_optimizer(model, 1e-4, 0.0, rt.device)
    x = torch.randint(V, (B, T + 1), device=rt.device)

    def step():
        with rt.amp:
            loss = F.cross_entropy(fwd(x[:, :-1]).float().view(-1, V), x[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    dt, _ = timed(rt, step, repeat=5)
    C, Lyr = model.config.n_embd, model.config.n_layer
    flops_per_token = 6 * model.num_params() + 12 * Lyr * C * T  # PaLM appendix B, as nanoGPT's estimate_mfu
    tok_s = B * T / dt
    name = torch.cuda.get_device_name(rt.device)
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)
    mfu = flops_per_token * tok_s / peak if peak else float("nan")
    model.eval()
    prompt = torch.randint(V, (256, 64), device=rt.device)
    gen = torch.Generator(rt.device).manual_seed(0)
    with rt.amp:
        ts, _ = timed(rt, lambda: sample(model, prompt, 256, None, 1.0, None, gen))
    print(f"\n| gpt2 preset on {name} | value |\n| --- | --- |\n| update tokens/s (batch {B} x {T}) | {tok_s:,.0f} |"
          f"\n| MFU of the update (peak {peak or 0:.3g} FLOP/s) | {mfu:.1%} |"
          f"\n| KV-cached sampler tokens/s (batch 256, 256 new) | {256 * 256 / ts:,.0f} |")
    return {"update_tok_s": tok_s, "mfu": mfu, "sample_tok_s": 256 * 256 / ts, "device": name}


# -----------------------------------------------------------------------------
# main


def print_config(cfg, rt):
    """The resolved config and the derived quantities, before step 0."""
    L, H, C = PRESETS[cfg.preset]
    params = L * (12 * C * C + 2 * C) + (rt.enc.n_vocab + BLOCK_SIZE + 1) * C  # blocks + wte/wpe + ln_f
    items = [f"{f.name}={getattr(cfg, f.name)}" for f in dataclasses.fields(cfg)]
    lines, line = [], ""
    for it in items:
        if len(line) + len(it) > 100:
            lines.append(line)
            line = ""
        line += it + "  "
    rt.log("config: " + "\n        ".join(lines + [line]))
    max_new = rt.task.max_response_chars + 1
    rt.log(f"derived: device {rt.device} x {rt.world} rank(s) | {'bf16 autocast' if rt.amp.__class__ is torch.autocast else 'fp32'} | "
           f"{params / 1e6:.2f}M parameters | vocab {rt.enc.n_vocab} | task {cfg.task} ({rt.task.domain}) | "
           f"rollouts/step {cfg.prompts * cfg.group} | <= {max_new} new tokens each | "
           f"<= {cfg.prompts * cfg.group * max_new:,} sampled tokens/step")


def main(cfg):
    """Run what cfg asks for; returns the metrics (and logs/plots under cfg.out_dir)."""
    err = check_config(cfg)
    if err:
        raise SystemExit(f"error: {err}")
    rt = setup(cfg)
    try:
        os.makedirs(cfg.out_dir, exist_ok=True)
        torch.manual_seed(cfg.seed)  # model initialisation (identical on every rank)
        print_config(cfg, rt)
        if cfg.bench:
            return bench(cfg, rt)
        if cfg.compare:
            return compare(cfg, rt)
        result, t0 = {}, time.time()
        if cfg.stage in ("all", "sft"):
            result["sft"] = train_sft(cfg, rt)
            if result["sft"] is None:  # stopped by Ctrl-C
                return result
        if cfg.stage in ("all", "rl"):
            same_start = cfg.stage == "all" and cfg.teacher in ("self", "ema", "frozen")
            result["rl"] = train_rl(cfg, rt, eval0=result["sft"] if same_start else None)
        if cfg.stage == "eval":
            result["eval"] = eval_stage(cfg, rt)
        rt.log(f"done in {fmt_time(time.time() - t0)}")
        if rt.world > 1:
            dist.barrier()  # leave together: no rank tears the group down while a peer still uses it
        return result
    finally:
        if rt.owns_pg:
            dist.destroy_process_group()


if __name__ == "__main__":
    main(parse_args())
