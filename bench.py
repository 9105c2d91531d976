"""
bench.py — how fast the pieces run: the KV-cached sampler against the naive recompute, one DistIL
step against one GRPO step phase by phase (train_gpt.rl_step itself), the null test (a zero-gradient
objective must not move the policy), and on CUDA the gpt2 preset's
training tokens/s and model FLOPs utilisation. Prints markdown tables; times nothing in the tests.

    tokens/s = B · new tokens / best wall time;   MFU = flops_per_token(T) · tokens/s / peak bf16 FLOP/s

Run (every train_gpt.py flag is accepted; the step uses out_dir/sft.pt if there is one):
    python bench.py                                     # CPU: sampler, one RL step by phase
    python bench.py --device cuda --preset gpt2 --compile true
"""

import copy
import dataclasses
import math
import os
import random
import time

import torch
import torch.nn.functional as F

import tasks
import train_gpt as tg
from model import GPT, model_from, sample
from runs import Runtime, load_checkpoint

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16, vendor data sheets


def timed(fn, device, repeat=1):
    """(best wall time of `repeat` calls of fn after one warm-up call, fn's last output)."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else lambda: None
    out, best = fn(), math.inf
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_sampler(device, amp, seed=0, B=64, L=32, new=128):
    """Tokens/s of sample() on the tiny preset, KV cache against the naive recompute; prints a table."""
    torch.manual_seed(seed)
    model = GPT.of_preset("tiny", 257).to(device).eval()
    prompt = torch.randint(256, (B, L), device=device)
    n_pad = torch.zeros(B, dtype=torch.long, device=device)
    gen, res = torch.Generator(device).manual_seed(seed), {}
    with amp:
        for name, cache, repeat in (("kv_cache", True, 3), ("naive", False, 1)):
            res[name] = timed(
                lambda: sample(model, prompt, new, n_pad, 1.0, None, gen, None, cache), device, repeat
            )[0]
    print(f"\n| sampler: tiny preset, batch {B}, {L}-token prompt, {new} new tokens | tokens/s | time |")
    print("| --- | --- | --- |")
    for name, t in res.items():
        print(f"| {name} | {B * new / t:,.0f} | {t:.2f} s |")
    print(f"| speed-up of the KV cache | {res['naive'] / res['kv_cache']:.1f}x | |")
    return {k: B * new / t for k, t in res.items()}


def bench_update(device, amp, compile=False, B=32, T=512):
    """CUDA: training tokens/s and model FLOPs utilisation of the gpt2 preset; sampler tokens/s."""
    model = GPT.of_preset("gpt2", 257).to(device)
    fwd = torch.compile(model) if compile else model
    opt = model.configure_optimizers(1e-4, 0.0, True)
    x = torch.randint(257, (B, T + 1), device=device)  # 16k tokens per update: a typical RL batch

    def step():
        with amp:
            loss = F.cross_entropy(fwd(x[:, :-1]).float().view(-1, 257), x[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    tok_s = B * T / timed(step, device, 5)[0]
    name = torch.cuda.get_device_name(device)
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)
    mfu = model.flops_per_token(T) * tok_s / peak if peak else math.nan
    prompt, gen = torch.randint(256, (256, 64), device=device), torch.Generator(device).manual_seed(0)
    with amp:
        sample_s = timed(lambda: sample(model.eval(), prompt, 256, None, 1.0, None, gen), device)[0]
    print(f"\n| gpt2 preset on {name} | value |\n| --- | --- |")
    print(f"| update tokens/s (batch {B} x {T}) | {tok_s:,.0f} |")
    print(f"| MFU of the update (peak {peak or 0:.3g} FLOP/s) | {mfu:.1%} |")
    print(f"| KV-cached sampler tokens/s (batch 256, 256 new) | {256 * 256 / sample_s:,.0f} |")
    return {"update_tok_s": tok_s, "mfu": mfu, "sample_tok_s": 256 * 256 / sample_s, "device": name}


class EveryRowTeacher(tg.ModelTeacher):
    """A self-teacher that gives every rollout a context of the lengths the task produces: the
    feedback on a corrupted attempt and/or a reference solution as the peer (--context)."""

    def contexts(self, problems, *_):
        rng, task, context = random.Random(self.cfg.seed), self.rt.task, self.cfg.context
        contexts = []
        for p in problems:
            feedback = task.verify(p, task.corrupt(p, rng))[1] if context != "peer" else None
            contexts.append(tasks.teacher_context(p, feedback, p.solution if context != "feedback" else None))
        return contexts


def bench_rl_step(cfg, rt):
    """One RL step of distil (each --context) and of grpo, best of 3 per phase; prints a table."""
    sft = cfg.init_from or os.path.join(cfg.out_dir, "sft.pt")  # the SFT model if there is one
    raw = model_from(load_checkpoint(sft), sft, rt.enc.n_vocab) if os.path.exists(sft) else None
    train = tg.problem_sets(cfg, rt.task)[0]
    times, lengths = {}, {}
    for col in ("peer", "feedback", "both", "grpo"):
        method, context = ("grpo", "both") if col == "grpo" else ("distil", col)
        c = dataclasses.replace(cfg, method=method, context=context, states="all")  # the self-teacher's costs
        student = copy.deepcopy(raw) if raw else GPT.of_preset("tiny", rt.enc.n_vocab)
        student = student.to(rt.device)
        teacher = EveryRowTeacher(c, rt, student, "self")
        opt = student.configure_optimizers(c.rl_lr, 0.0, rt.device.type == "cuda")
        steps = [tg.rl_step(c, rt, student, student, opt, teacher, train, 0, "none") for _ in range(3)]
        times[col] = {k: min(t[k] for _, t in steps) for k in steps[0][1]}
        lengths[col] = sum(map(len, teacher.contexts(train[:64]))) / 64, steps[0][0]["len"]
    cols, total = list(times), {c: sum(t.values()) for c, t in times.items()}
    header = (
        f"one RL step, ms ({sft if raw else 'a random tiny model'}; {cfg.prompts} prompts x {cfg.group} "
        f"rollouts of {lengths['grpo'][1]:.1f} tokens; every row has a teacher context)"
    )
    contexts = [f"distil, --context {c} ({lengths[c][0]:.0f}-token contexts)" for c in cols[:3]]
    print(f"\n| {header} | " + " | ".join(contexts) + " | grpo |\n" + "| --- " * (len(cols) + 1) + "|")
    rows = [(k, {c: f"{times[c][k] * 1e3:.0f}" for c in cols}) for k in times["grpo"]]
    rows.append(("total", {c: f"{total[c] * 1e3:.0f}" for c in cols}))
    rows.append(("ratio to grpo", {c: f"{total[c] / total['grpo']:.2f}x" for c in cols}))
    print("\n".join(f"| {k} | " + " | ".join(r[c] for c in cols) + " |" for k, r in rows))
    return {"phases": times, "ratio": {c: total[c] / total["grpo"] for c in cols}}


def bench_null(cfg, rt, steps=20, lr=3e-3):
    """The null test: `steps` RL steps at `lr` of an objective whose gradient is zero in exact arithmetic
    (the live student as its own teacher in its own context). distil.py writes each divergence's
    gradient so that it is zero bit for bit there (tests/test_train_gpt.py); prints how far each moved."""
    sft = cfg.init_from or os.path.join(cfg.out_dir, "sft.pt")
    raw = model_from(load_checkpoint(sft), sft, rt.enc.n_vocab) if os.path.exists(sft) else None
    start = (raw or GPT.of_preset("tiny", rt.enc.n_vocab)).to(rt.device)
    train = tg.problem_sets(cfg, rt.task)[1]
    print(f"\n| null test: {steps} steps at lr {lr:g}, the student as its own teacher | max abs Δθ |")
    print("| --- | --- |")
    out = {}
    for method in ("distil_token", "sdpo", "opsd"):
        c = dataclasses.replace(cfg, method=method, teacher="self", context="none", states="all", rl_lr=lr)
        student = copy.deepcopy(start)
        teacher = tg.ModelTeacher(c, rt, student, "self")
        opt = student.configure_optimizers(lr, 0.0, rt.device.type == "cuda")
        for step in range(steps):
            tg.rl_step(c, rt, student, student, opt, teacher, train, step, "none")
        out[method] = max(
            (p - q).abs().max().item() for p, q in zip(student.parameters(), start.parameters())
        )
        print(f"| {method} | {out[method]:.2e} |")
    return out


def bench(cfg):
    """Every table; returns the numbers."""
    rt = Runtime(cfg)
    try:
        out = {"sampler": bench_sampler(rt.device, rt.amp, cfg.seed)} | bench_rl_step(cfg, rt)
        out["null"] = bench_null(cfg, rt)
        if rt.device.type == "cuda":
            out["gpu"] = bench_update(rt.device, rt.amp, cfg.compile)
        return out
    finally:
        rt.close()


if __name__ == "__main__":
    bench(tg.parse_args())
