"""The parts of the DistIL gradient at an SFT checkpoint, with the oracle as the teacher: the local
term alone (distil_token) against the full sequence-level loss (distil: local + future credit + the
end's price), with the teacher's costs on all states or on the oracle's support. For each of a few
RL batches (train_gpt.rl_step's prompts and rollouts at step s, seed 1), the gradient norm of each
loss and the cosine between local and full; then the same of the gradients averaged over batches.

    python results/trainer_checks/gradients/grad_norms.py runs/experiment/mult/sft/sft.pt \\
        mult:digits_a=2,digits_b=1 6
"""

import dataclasses
import os
import random
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
import runs  # noqa: E402
import tasks  # noqa: E402
import train_gpt as tg  # noqa: E402
from model import model_from, response_logits  # noqa: E402

LOSSES = (("local, all", "distil_token", "all"), ("local, support", "distil_token", "support"))
LOSSES += (("full, all", "distil", "all"), ("full, support", "distil", "support"))


def gradients(cfg, rt, raw, teacher, train, step):
    """{loss name: the flat gradient} on the batch of RL step `step`, and the batch's mean reward."""
    rng = random.Random(runs.seed_of(cfg.seed, "rl", step, 0))
    prompts = rng.sample(train, cfg.prompts)
    gen = torch.Generator("cpu").manual_seed(runs.seed_of(cfg.seed, "rl", step, 0))
    ro = tg.score_rollouts(rt, tg.sample_rollouts(raw, cfg, rt, prompts, cfg.group, cfg.temperature, gen))
    sig = tg.teacher_signal(cfg, rt, teacher, ro, gen)
    taught = ro.mask & sig["has"][:, None]
    out = {}
    for name, method, states in LOSSES:
        c = dataclasses.replace(cfg, method=method, states=states)
        costed = taught if states == "all" else tg.on_support(rt.task, ro.problems, ro.resp, taught)
        raw.zero_grad(set_to_none=True)
        logits = response_logits(raw, ro.ctx, ro.resp, tasks.EOT_ID)
        horizon = rt.task.max_response_chars + 1
        tg.method_loss(c, logits, ro.resp, ro.mask, ro.rewards, sig, horizon, costed).backward()
        out[name] = torch.cat([p.grad.flatten() for p in raw.parameters() if p.grad is not None])
    return out, ro.rewards.float().mean().item()


def main(ckpt, task, batches):
    cfg = tg.Config(task=task, n_train=30000, seed=1, data_seed=1337, val_n=128, prompts=8, group=8)
    cfg = dataclasses.replace(cfg, teacher="oracle", device="cpu", sft_teacher_frac=0.8)
    rt = runs.Runtime(cfg)
    raw = model_from(runs.load_checkpoint(ckpt), ckpt, rt.enc.n_vocab)
    teacher, train = tg.make_teacher(cfg, rt, raw), tg.problem_sets(cfg, rt.task)[0]
    names = [n for n, _, _ in LOSSES]
    cos = torch.nn.functional.cosine_similarity
    print("| batch | reward | " + " | ".join(f"‖∇ {n}‖" for n in names) + " | cos(local, full), support |")
    print("|---" * (len(names) + 3) + "|")
    acc = {n: [] for n in names}
    for step in range(batches):
        g, reward = gradients(cfg, rt, raw, teacher, train, step)
        for n in names:
            acc[n].append(g[n])
        c = cos(g["local, support"], g["full, support"], 0).item()
        print(
            f"| {step} | {reward:.3f} | " + " | ".join(f"{g[n].norm():.1f}" for n in names) + f" | {c:.2f} |"
        )
    mean = {n: torch.stack(v).mean(0) for n, v in acc.items()}
    c = cos(mean["local, support"], mean["full, support"], 0).item()
    print(
        "| mean of the batches' gradients | - | "
        + " | ".join(f"{mean[n].norm():.1f}" for n in names)
        + f" | {c:.2f} |"
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
