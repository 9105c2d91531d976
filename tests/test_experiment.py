"""Tests for experiment.py (CPU, seconds): the aggregation on hand-made runs with hand-computed
answers (mean ± std, steps to threshold, drops, the sweep's choice, the mean over tasks), the
validation split it selects on, resume-and-skip, and one tiny end-to-end call (micro preset,
two RL steps). Each test's name says the bug it prevents."""

import json
import math
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import experiment as ex  # noqa: E402
import train_gpt as tg  # noqa: E402


def run(seed, pass1, lr=1e-4, method="distil", task="mult", phase="main", avg8=None):
    """A finished run's record with the given pass@1 curve at steps 0, 10, 20."""
    avg8 = avg8 or pass1
    evals = [{"step": s, "pass@1": p, "pass@8": min(1.0, 2 * p), "avg@8": a, "t_rew": 0.5}
             for s, p, a in zip((0, 10, 20), pass1, avg8)]
    return {"phase": phase, "task": task, "method": method, "lr": lr, "seed": seed, "evals": evals,
            "passn": {"1": pass1[-1], "2": min(1.0, 2 * pass1[-1])}}


def sft(task="mult", p=0.25, noise=0.125):
    return {"task": task, "eval": {"pass@1": p, "pass@8": 0.5, "avg@8": 0.25, "t_rew": 0.5, "lift": 0.25},
            "passn": {"1": 0.25, "2": 0.5}, "noise": noise}


def find(rows, **kw):
    hits = [r for r in rows if all(r[k] == v for k, v in kw.items())]
    assert len(hits) == 1, (kw, hits)
    return hits[0]


# -----------------------------------------------------------------------------
# Aggregation


def test_mean_std_is_the_sample_std_ignores_nan_and_is_zero_for_one_seed():
    m, s = ex.mean_std([0.25, 0.5, 0.75])
    assert m == 0.5 and s == pytest.approx(0.25)  # sqrt((0.0625 + 0 + 0.0625) / 2)
    assert ex.mean_std([0.5]) == (0.5, 0.0)
    assert ex.mean_std([0.5, math.nan]) == (0.5, 0.0)
    assert all(math.isnan(v) for v in ex.mean_std([]))


def test_steps_to_threshold_is_the_first_step_that_reaches_it_inclusive():
    assert ex.steps_to_threshold([0, 10, 20, 30], [0.25, 0.375, 0.5, 0.25], 0.5) == 20
    assert ex.steps_to_threshold([0, 10, 20, 30], [0.25, 0.375, 0.5, 0.25], 0.375) == 10
    assert ex.steps_to_threshold([0, 10], [0.25, 0.25], 0.5) is None


def test_drops_count_only_falls_larger_than_the_noise():
    curve = [0.5, 0.25, 0.375, 0.125, 0.125]
    assert ex.count_drops(curve, 0.125) == 2  # 0.5 -> 0.25 and 0.375 -> 0.125
    assert ex.count_drops(curve, 0.25) == 0  # a fall of exactly the noise is noise
    assert ex.count_drops(curve, 0.0) == 2  # equal consecutive values are no drop
    assert ex.binomial_se(0.2, 100) == pytest.approx(0.04)


def test_aggregate_matches_hand_computed_numbers():
    records = [run(1, [0.25, 0.5, 0.125]), run(2, [0.25, 0.25, 0.75])]
    rows = ex.aggregate(records, [sft()], threshold_delta=0.125)  # threshold 0.375, noise 0.125
    end = find(rows, phase="main", metric="pass@1", x=20)
    assert end["mean"] == 0.4375 and end["std"] == pytest.approx(0.625 / math.sqrt(2)) and end["n"] == 2
    assert find(rows, phase="main", metric="pass@N", x="2")["mean"] == pytest.approx((0.25 + 1.0) / 2)
    # the seed-mean curve is 0.25, 0.375, 0.4375: it reaches 0.375 at step 10; both seeds reach it alone
    assert find(rows, metric="steps_to_threshold")["mean"] == 10
    assert find(rows, metric="seeds_reaching")["mean"] == 2
    # seed 1 falls 0.5 -> 0.125 (> 0.125): one drop in 2 x 2 consecutive pairs
    assert find(rows, metric="drops")["mean"] == 1 and find(rows, metric="drop_pairs")["mean"] == 4
    assert find(rows, phase="sft", metric="threshold")["mean"] == 0.375
    never = ex.aggregate([run(1, [0.25, 0.25, 0.25])], [sft()], 0.125)
    assert math.isnan(find(never, metric="steps_to_threshold")["mean"])


def test_sweep_picks_the_best_area_under_the_curve_and_the_smaller_rate_on_a_tie():
    low = run(1, [0.25] * 3, lr=3e-5, phase="sweep", avg8=[0.0, 0.25, 0.5])  # criterion 0.375
    mid = run(1, [0.25] * 3, lr=1e-4, phase="sweep", avg8=[0.0, 0.5, 0.25])  # 0.375: a tie
    high = run(1, [0.25] * 3, lr=3e-4, phase="sweep", avg8=[0.0, 0.125, 0.5])  # 0.3125
    assert ex.criterion(low) == 0.375 and ex.criterion(high) == 0.3125
    assert ex.select_lr([high, mid, low]) == 3e-5
    assert ex.select_lr([high, mid]) == 1e-4
    rows = ex.aggregate([low, mid, high], [sft()], 0.125)
    assert find(rows, phase="sweep", lr=3e-4, metric="criterion")["mean"] == 0.3125
    assert not [r for r in rows if r["phase"] == "sweep" and r["metric"] == "drops"]


def test_mean_of_tasks_averages_each_seed_over_tasks_before_the_seed_statistics():
    records = [run(1, [0.25, 0.5, 0.5], task="a"), run(1, [0.25, 0.0, 0.25], task="b"),
               run(2, [0.25, 0.5, 0.75], task="a"), run(2, [0.25, 0.5, 0.25], task="b"),
               run(3, [0.25, 0.5, 0.5], task="a")]  # seed 3 lacks task b: no average for it
    mean, msft = ex.mean_of_tasks(records, [sft("a", noise=0.3), sft("b", noise=0.4)])
    assert sorted(r["seed"] for r in mean) == [1, 2]
    assert msft["noise"] == pytest.approx(0.25)  # sqrt(0.09 + 0.16) / 2
    rows = ex.aggregate(mean, [msft], 0.125)
    end = find(rows, phase="main", metric="pass@1", x=20)
    assert end["mean"] == pytest.approx((0.375 + 0.5) / 2) and end["std"] == pytest.approx(0.125 / math.sqrt(2))


# -----------------------------------------------------------------------------
# The validation split the sweep selects on (train_gpt.py --val_n / --eval_split)


def test_validation_problems_are_distinct_and_never_in_the_training_list():
    cfg = tg.Config(task="mult:digits_a=2,digits_b=1", n_train=2000, val_n=50, eval_split="val")
    task = tg.make_task(cfg.task)
    train, val = tg.problem_sets(cfg, task)
    keys = {task.split_key(p) for p in val}
    assert len(val) == len(keys) == 50
    assert not keys & {task.split_key(p) for p in train} and len(train) < 2000
    # the test split is unchanged by the hold-out, and the training list is the same for test and val
    test_cfg = tg.Config(task=cfg.task, n_train=2000, val_n=50)
    assert tg.problem_sets(test_cfg, task)[1] == task.generate("test", test_cfg.eval_n, test_cfg.seed)
    assert tg.problem_sets(test_cfg, task)[0] == train
    assert tg.check_config(tg.Config(eval_split="val")) is not None  # val without val_n is refused


# -----------------------------------------------------------------------------
# End to end, resume and skip


def tiny(tmp_path, **kw):
    base = dict(tasks="mult:digits_a=2,digits_b=1", sft_steps="10", methods="distil,distil_sampled", seeds="1",
                lrs="1e-4", preset="micro", n_train=200, rl_steps=2, eval_every=1, early_step=1, eval_n=4, val_n=4, prompts=2,
                group=4, passn_samples=2, jobs=1, out=str(tmp_path / "runs"), results=str(tmp_path / "results"),
                figures=str(tmp_path / "figures"))
    base.update(kw)
    return ex.Config(**base)


def test_one_command_writes_the_csv_table_and_figures_and_a_rerun_skips_finished_runs(tmp_path, monkeypatch):
    cfg = tiny(tmp_path, threads=1)
    threads = torch.get_num_threads()
    rows = ex.main(cfg)
    assert torch.get_num_threads() == threads  # --jobs 1 runs in this process and leaves it as it was
    md = open(tmp_path / "results" / "experiment.md").read()
    for m in ("distil", "distil_sampled"):
        assert f"| {m} | 0.0001 |" in md
    assert {f.name for f in (tmp_path / "figures").iterdir()} >= {"exp_pass1_mult.png", "exp_passn.png"}
    assert find(rows, phase="main", task="mult", method="distil", metric="pass@1", x=2)["n"] == 1
    run_dir = tmp_path / "runs" / "mult" / "main_distil_lr0.0001_s1"
    assert json.load(open(run_dir / "result.json"))["config"]["eval_split"] == "test"
    assert json.load(open(tmp_path / "runs" / "mult" / "sweep_distil_lr0.0001_s1" / "result.json"))["config"]["eval_split"] == "val"

    calls = []
    real = ex.execute
    monkeypatch.setattr(ex, "execute", lambda job: calls.append(job["config"]["out_dir"]) or real(job))
    ex.main(cfg)
    assert calls == []  # everything finished: nothing runs again

    os.remove(run_dir / "result.json")  # a run that stopped after its last checkpoint
    ex.main(cfg)
    assert calls == [str(run_dir)]
    assert "at step 2" in open(run_dir / "log.txt").read()  # it resumed from its checkpoint

    with pytest.raises(SystemExit, match="other settings"):  # stale runs are never mixed in
        ex.main(tiny(tmp_path, prompts=4))


def test_a_second_teacher_reruns_only_the_methods_that_read_it_and_writes_its_own_files(tmp_path, monkeypatch):
    methods = "distil,grpo,distil_sampled"
    ex.main(tiny(tmp_path, methods=methods))
    calls = []
    real = ex.execute
    monkeypatch.setattr(ex, "execute", lambda job: calls.append(job["config"]) or real(job))
    rows = ex.main(tiny(tmp_path, methods=methods, teacher="frozen"))
    # the sweep and the main run of distil, with the frozen teacher; SFT, grpo and the oracle runs are shared
    assert sorted(os.path.basename(c["out_dir"]) for c in calls) == ["main_distil_frozen_lr0.0001_s1",
                                                                     "sweep_distil_frozen_lr0.0001_s1"]
    assert {c["teacher"] for c in calls} == {"frozen"}
    assert {r["method"] for r in rows if r["phase"] == "main"} >= set(methods.split(","))
    live = open(tmp_path / "results" / "experiment.md").read()
    frozen = open(tmp_path / "results" / "experiment_frozen.md").read()
    assert "--teacher frozen" in frozen and "--teacher" not in live
    assert {"exp_frozen_pass1_mult.png", "exp_frozen_passn.png", "exp_pass1_mult.png"} <= \
        {f.name for f in (tmp_path / "figures").iterdir()}
    with pytest.raises(SystemExit, match="choose among self, frozen, ema"):
        ex.task_specs(tiny(tmp_path, teacher="oracle"))


def test_report_only_rebuilds_the_table_from_the_csv_alone(tmp_path):
    cfg = tiny(tmp_path, methods="grpo")
    ex.main(cfg)
    before = open(tmp_path / "results" / "experiment.md").read()
    ex.main(tiny(tmp_path, methods="grpo", report_only=True, out=str(tmp_path / "nowhere")))
    assert open(tmp_path / "results" / "experiment.md").read() == before
    assert not (tmp_path / "nowhere").exists()


def test_cli_rejects_unknown_flags_and_bad_task_lists(capsys):
    with pytest.raises(SystemExit):
        ex.parse_args(["--no_such_flag", "1"])
    assert ex.parse_args(["--rl_steps", "7", "--report_only"]).rl_steps == 7
    with pytest.raises(SystemExit, match="sweep_task"):
        ex.task_specs(ex.Config(sweep_task="chem", tasks="mult", sft_steps="500"))
    with pytest.raises(SystemExit, match="sft_steps"):
        ex.task_specs(ex.Config(tasks="mult;chem", sft_steps="1,2,3"))
