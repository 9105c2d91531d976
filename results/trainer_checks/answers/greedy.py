"""The greedy answers of train_gpt.py checkpoints to the first 12 mult test problems of experiment.py's
problem lists (n_train 30000, data_seed 1337, val_n 128), with their rewards.

    python results/trainer_checks/answers/greedy.py runs/experiment/mult/sft/sft.pt \\
        runs/experiment/mult/sweep_distil@feedback+frozen_lr0.0003_s1/rl_distil.pt
"""

import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
import runs  # noqa: E402
import train_gpt as tg  # noqa: E402
from model import model_from  # noqa: E402


def main(paths):
    cfg = tg.Config(task="mult:digits_a=2,digits_b=1", n_train=30000, data_seed=1337, val_n=128, device="cpu")
    rt = runs.Runtime(cfg)
    test = tg.problem_sets(cfg, rt.task)[1][:12]
    for path in paths:
        raw = model_from(runs.load_checkpoint(path), path, rt.enc.n_vocab)
        gen = torch.Generator().manual_seed(0)
        ro = tg.score_rollouts(rt, tg.sample_rollouts(raw, cfg, rt, test, 1, 0.0, gen))
        print(f"{path}: {int(ro.rewards.sum())}/{len(test)} right")
        print("    " + " | ".join(t.replace(chr(10), " / ") for t in ro.texts))


if __name__ == "__main__":
    main(sys.argv[1:])
