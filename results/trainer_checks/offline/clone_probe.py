"""Behaviour cloning of a sampled teacher's answers: every answer (--answers all) against only those
the verifier accepts (--answers verified). The teacher is the frozen SFT model reading the feedback;
the loop is train_gpt.rl_step's for --method offline (rollouts, contexts, answers, NLL, clipped
AdamW step). Per step: the student's reward, the share of the teacher's answers that are right,
the loss (NLL of the cloned answers, summed per rollout, mean over rollouts).

    python results/trainer_checks/offline/clone_probe.py runs/experiment/mult/sft/sft.pt \\
        mult:digits_a=2,digits_b=1 40
"""

import os
import random
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
import distil  # noqa: E402
import runs  # noqa: E402
import tasks  # noqa: E402
import train_gpt as tg  # noqa: E402
from model import model_from, response_logits  # noqa: E402


def clone(ckpt, task, steps, answers):
    """[(reward, teacher's share right, loss)] per step of offline with --answers `answers`."""
    cfg = tg.Config(task=task, n_train=30000, seed=1, data_seed=1337, val_n=128, prompts=8, group=8)
    cfg = tg.dataclasses.replace(cfg, teacher="frozen", context="feedback", device="cpu", method="offline")
    cfg = tg.dataclasses.replace(cfg, rl_lr=3e-4, answers=answers)
    rt = runs.Runtime(cfg)
    raw = model_from(runs.load_checkpoint(ckpt), ckpt, rt.enc.n_vocab)
    teacher, train = tg.make_teacher(cfg, rt, raw), tg.problem_sets(cfg, rt.task)[0]
    opt = torch.optim.AdamW(raw.parameters(), lr=cfg.rl_lr, weight_decay=0.0)
    seen, answers = [], teacher.answers  # the teacher's answers of each step, to score them
    teacher.answers = lambda *a: seen.append(answers(*a)) or seen[-1]
    out = []
    for step in range(steps):
        prompts = random.Random(runs.seed_of(cfg.seed, "rl", step, 0)).sample(train, cfg.prompts)
        gen = torch.Generator("cpu").manual_seed(runs.seed_of(cfg.seed, "rl", step, 0))
        ro = tg.score_rollouts(rt, tg.sample_rollouts(raw, cfg, rt, prompts, cfg.group, 1.0, gen))
        sig = tg.teacher_signal(cfg, rt, teacher, ro, gen)
        right = [rt.task.verify(p, t)[0] for p, t in zip(ro.problems, seen[-1]) if t is not None]
        logits = response_logits(raw, ro.ctx, sig["resp"], tasks.EOT_ID)
        loss = distil.offline_loss(logits, sig["resp"], sig["mask"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip)
        opt.step()
        out.append((ro.rewards.float().mean().item(), sum(right) / max(len(right), 1), loss.item()))
    return out


def main(ckpt, task, steps):
    runs_ = {a: clone(ckpt, task, steps, a) for a in ("all", "verified")}
    cols = ("reward", "teacher right", "loss")
    print("| steps | " + " | ".join(f"{a}: {c}" for a in runs_ for c in cols) + " |")
    print("|---|---|---|---|---|---|---|")
    for a in range(0, steps, 5):
        cells = []
        for rows in runs_.values():
            part = rows[a : a + 5]
            cells += [f"{sum(r[i] for r in part) / len(part):.2f}" for i in range(3)]
        print(f"| {a}–{min(a + 5, steps) - 1} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
