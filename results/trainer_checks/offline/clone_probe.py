"""Behaviour cloning of a sampled teacher's answers: every answer (--answers all) against only those
the verifier accepts (--answers verified). The teacher is the frozen SFT model reading the feedback;
each step is train_gpt.rl_step with --method offline (rollouts, contexts, answers, NLL, clipped
AdamW step). Per step: the student's reward, the share of the teacher's answers that are right,
the loss (NLL of the cloned answers, summed per rollout, mean over rollouts).

    python results/trainer_checks/offline/clone_probe.py runs/experiment/mult/sft/sft.pt \\
        mult:digits_a=2,digits_b=1 40
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
import runs  # noqa: E402
import train_gpt as tg  # noqa: E402
from model import model_from  # noqa: E402


def clone(ckpt, task, steps, answers):
    """[(reward, teacher's share right, loss)] per step of train_gpt.rl_step, --method offline with
    --answers `answers`, from the checkpoint `ckpt`."""
    cfg = tg.Config(task=task, n_train=30000, seed=1, data_seed=1337, val_n=128, prompts=8, group=8)
    cfg.method, cfg.teacher, cfg.context, cfg.answers = "offline", "frozen", "feedback", answers
    cfg.rl_lr, cfg.device = 3e-4, "cpu"
    rt = runs.Runtime(cfg)
    raw = model_from(runs.load_checkpoint(ckpt), ckpt, rt.enc.n_vocab)
    teacher, train = tg.make_teacher(cfg, rt, raw), tg.problem_sets(cfg, rt.task)[0]
    opt = raw.configure_optimizers(cfg.rl_lr, 0.0, False)  # as train_rl: AdamW, no decay
    right, answers_of = [], teacher.answers  # the share of each step's teacher answers that are right

    def scored(problems, ctx, gen):
        texts = answers_of(problems, ctx, gen)
        ok = [rt.task.verify(p, t)[0] for p, t in zip(problems, texts) if t is not None]
        right.append(sum(ok) / max(len(ok), 1))
        return texts

    teacher.answers = scored
    out = []
    for step in range(steps):
        metrics, _ = tg.rl_step(cfg, rt, raw, raw, opt, teacher, train, step, ckpt)
        out.append((metrics["reward"], right[-1], metrics["loss"]))
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
