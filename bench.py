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

import torch
import torch.nn.functional as F

import tasks
import train_gpt as tg
from model import GPT, model_from, sample
from runs import Laps, Runtime, load_checkpoint

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16, vendor data sheets


def timed(fn, device, repeat=1):
    """Best wall time of `repeat` calls of fn after a warm-up call (runs.Laps waits for the device)."""
    fn()
    lap, best = Laps(device), math.inf
    for _ in range(repeat):
        lap("idle")
        fn()
        lap("fn")
        best = min(best, lap.times["fn"])
    return best


def bench_sampler(device, amp, seed=0, B=64, L=32, new=128):
    """Tokens/s of sample() on the tiny preset, the KV cache against the naive recompute."""
    torch.manual_seed(seed)
    model = GPT.of_preset("tiny", 257).to(device).eval()
    prompt = torch.randint(256, (B, L), device=device)
    n_pad = torch.zeros(B, dtype=torch.long, device=device)
    gen, res = torch.Generator(device).manual_seed(seed), {}
    with amp:
        for name, cache, repeat in (("kv_cache", True, 3), ("naive", False, 1)):
            res[name] = timed(
                lambda: sample(model, prompt, new, n_pad, 1.0, None, gen, None, cache), device, repeat
            )
    print(f"\n| sampler: tiny preset, batch {B}, {L}-token prompt, {new} new tokens | tokens/s | time |")
    print("| --- | --- | --- |")
    for name, t in res.items():
        print(f"| {name} | {B * new / t:,.0f} | {t:.2f} s |")
    print(f"| speed-up of the KV cache | {res['naive'] / res['kv_cache']:.1f}x | |")


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

    tok_s = B * T / timed(step, device, 5)
    name = torch.cuda.get_device_name(device)
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)
    mfu = model.flops_per_token(T) * tok_s / peak if peak else math.nan
    prompt, gen = torch.randint(256, (256, 64), device=device), torch.Generator(device).manual_seed(0)
    with amp:
        sample_s = timed(lambda: sample(model.eval(), prompt, 256, None, 1.0, None, gen), device)
    print(f"\n| gpt2 preset on {name} | value |\n| --- | --- |")
    print(f"| update tokens/s (batch {B} x {T}) | {tok_s:,.0f} |")
    print(f"| MFU of the update (peak {peak or 0:.3g} FLOP/s) | {mfu:.1%} |")
    print(f"| KV-cached sampler tokens/s (batch 256, 256 new) | {256 * 256 / sample_s:,.0f} |")


class EveryRowTeacher(tg.ModelTeacher):
    """A self-teacher that gives every rollout a context of the lengths the task produces: the
    feedback on a corrupted attempt and/or a reference solution as the peer (--context)."""

    def contexts(self, problems, *_):
        rng, task, context = random.Random(self.cfg.seed), self.rt.task, self.cfg.context
        feedback = [task.verify(p, task.corrupt(p, rng))[1] if context != "peer" else None for p in problems]
        peers = [p.solution if context != "feedback" else None for p in problems]
        return [tasks.teacher_context(p, f, peer) for p, f, peer in zip(problems, feedback, peers)]


def bench_rl_step(cfg, rt, start, source):
    """One RL step of distil (each --context) and of grpo from `start`, best of 3 per phase."""
    train = tg.problem_sets(cfg, rt.task)[0]
    times, ctx_len = {}, {}
    for col in ("peer", "feedback", "both", "grpo"):
        method, context = ("grpo", "both") if col == "grpo" else ("distil", col)
        c = dataclasses.replace(cfg, method=method, context=context, states="all")  # the self-teacher's costs
        student = copy.deepcopy(start)
        teacher = EveryRowTeacher(c, rt, student, "self")
        opt = student.configure_optimizers(c.rl_lr, 0.0, rt.device.type == "cuda")
        steps = [tg.rl_step(c, rt, student, student, opt, teacher, train, 0, "none") for _ in range(3)]
        times[col] = {k: min(t[k] for _, t in steps) for k in steps[0][1]}
        ctx_len[col] = sum(map(len, teacher.contexts(train[:64]))) / 64
    length = steps[0][0]["len"]  # of grpo's rollouts
    header = f"one RL step, ms ({source}; {cfg.prompts} x {cfg.group} rollouts of {length:.1f} tokens)"
    contexts = [f"distil, --context {c} ({ctx_len[c]:.0f}-token contexts)" for c in list(times)[:3]]
    print(f"\n| {header} | " + " | ".join(contexts) + " | grpo |\n" + "| --- " * (len(times) + 1) + "|")
    total = {c: sum(t.values()) for c, t in times.items()}
    rows = [(k, *(f"{t[k] * 1e3:.0f}" for t in times.values())) for k in times["grpo"]]
    rows.append(("total", *(f"{s * 1e3:.0f}" for s in total.values())))
    rows.append(("ratio to grpo", *(f"{s / total['grpo']:.2f}x" for s in total.values())))
    print("\n".join("| " + " | ".join(r) + " |" for r in rows))


def bench_null(cfg, rt, start, steps=20, lr=3e-3):
    """The null test: `steps` RL steps at `lr` of an objective whose gradient is zero in exact arithmetic
    (the live student as its own teacher in its own context). distil.py writes each divergence's
    gradient so that it is zero bit for bit there (tests/test_train_gpt.py); prints how far each moved."""
    train = tg.problem_sets(cfg, rt.task)[1]
    print(f"\n| null test: {steps} steps at lr {lr:g}, the student as its own teacher | max abs Δθ |")
    print("| --- | --- |")
    for method in ("distil_token", "sdpo", "opsd"):
        c = dataclasses.replace(cfg, method=method, teacher="self", context="none", states="all", rl_lr=lr)
        student = copy.deepcopy(start)
        teacher = tg.ModelTeacher(c, rt, student, "self")
        opt = student.configure_optimizers(lr, 0.0, rt.device.type == "cuda")
        for step in range(steps):
            tg.rl_step(c, rt, student, student, opt, teacher, train, step, "none")
        moved = max((p - q).abs().max().item() for p, q in zip(student.parameters(), start.parameters()))
        print(f"| {method} | {moved:.2e} |")


def bench(cfg):
    """Every table; the RL step and the null test start from out_dir/sft.pt (or --init_from) if there is
    one, else from a random tiny model."""
    rt = Runtime(cfg)
    try:
        bench_sampler(rt.device, rt.amp, cfg.seed)
        sft = cfg.init_from or os.path.join(cfg.out_dir, "sft.pt")
        if os.path.exists(sft):
            start, source = model_from(load_checkpoint(sft), sft, rt.enc.n_vocab), sft
        else:
            start, source = GPT.of_preset("tiny", rt.enc.n_vocab), "a random tiny model"
        start = start.to(rt.device)
        bench_rl_step(cfg, rt, start, source)
        bench_null(cfg, rt, start)
        if rt.device.type == "cuda":
            bench_update(rt.device, rt.amp, cfg.compile)
    finally:
        rt.close()


if __name__ == "__main__":
    bench(tg.parse_args())
