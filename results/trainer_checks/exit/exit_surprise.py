"""The teacher's surprise at the student's exits from the oracle's support, on mult's test problems.

For each checkpoint: 4 sampled answers per test problem (temperature 1, seed 0); for every failed answer
with a teacher context, the first token the oracle rules out (the exit from S) and the frozen teacher's
surprise there, −log π_T(y_e | s_e), beside the surprise at the least surprising wrong token. The teacher
is the first checkpoint reading the verifier's feedback (the SFT model). Run from the repository root:

    python results/trainer_checks/exit/exit_surprise.py M/sft.pt RUN/rl_distil.pt ...
"""

import os
import sys

import torch

sys.path.insert(0, os.getcwd())
import tasks  # noqa: E402
import train_gpt as tg  # noqa: E402


def main(paths):
    torch.set_num_threads(1)
    cfg = tg.Config(
        task="mult:digits_a=2,digits_b=1", n_train=30000, seed=1337, data_seed=1337, context="feedback"
    )
    rt = tg.Runtime(cfg)
    test = tg.problem_sets(cfg, rt.task)[1]
    teacher_model = tg.model_from(tg.load_checkpoint(paths[0]), paths[0], rt.enc.n_vocab).eval()
    teacher = tg.ModelTeacher(cfg, rt, teacher_model, "frozen")
    for path in paths:
        model = tg.model_from(tg.load_checkpoint(path), path, rt.enc.n_vocab).eval()
        ro = tg.sample_rollouts(model, cfg, rt, test, 4, 1.0, torch.Generator().manual_seed(0))
        ro = tg.score_rollouts(rt, ro)
        ctx = teacher.contexts(ro.problems, ro.rewards.tolist(), ro.texts, ro.feedback, 4)
        logp = teacher.logprobs(ro.problems, ctx, ro.resp, ro.mask)
        at_exit, least = [], []
        for b, (p, text, c) in enumerate(zip(ro.problems, ro.texts, ctx)):
            i = (
                None
                if c is None
                else tasks.first_off_support(rt.task, p, tg.oracle_text(ro.resp[b], ro.mask[b]))
            )
            if i is None:
                continue
            right = [tasks.EOT_ID if ch == tasks.EOT else ord(ch) for ch in rt.task.oracle(p, text[:i])]
            wrong = logp[b, i].index_fill(0, torch.tensor(right), -torch.inf)
            at_exit.append(-logp[b, i, ro.resp[b, i]].item())
            least.append(-wrong.max().item())
        print(
            f"{path}: {len(at_exit)} exits; surprise at the exit token {sum(at_exit) / len(at_exit):.2f} "
            "nats, "
            f"at the least surprising wrong token {sum(least) / len(least):.2f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
