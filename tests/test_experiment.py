"""experiment.py: the aggregation against hand-computed numbers, the CSV's atomic append and resume,
the report regenerated from the CSV alone, the CLI's errors, and one tiny real run end to end."""

import dataclasses
import math
import os
import shutil

import pytest
import torch

import experiment as ex
import train_gpt as tg

torch.set_num_threads(1)
NAN = math.nan


def row(arm, seed, step, avg, phase="main", lr="0.001", **kw):
    """A CSV row as read_csv returns it: the run's key as text, the numbers as floats."""
    key = {"task": "t", "phase": phase, "arm": arm, "lr": lr, "seed": str(seed)}
    return key | {"step": float(step), "avg@8": avg, "train_s": 10.0 * step} | kw


def curves(arm, by_seed, steps=(0, 2, 4, 6)):
    """Main rows of an arm: by_seed {seed: avg@8 at each of `steps`}."""
    return [row(arm, s, t, v) for s, vs in by_seed.items() for t, v in zip(steps, vs)]


# -----------------------------------------------------------------------------
# Aggregation


def test_mean_std_is_the_sample_std_ignores_nan_and_is_zero_for_one_seed():
    assert ex.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert ex.mean_std([0.5, NAN]) == (0.5, 0.0)
    assert all(math.isnan(x) for x in ex.mean_std([NAN]))
    assert ex.cell([0.25]) == "0.250" and ex.cell([0.25, 0.75]) == "0.500 ± 0.354"


def test_the_sweep_scores_evaluations_after_step_0_and_a_tie_goes_to_the_smaller_rate():
    rows = [row("grpo", 1, 0, 0.9, "sweep", "0.0001")]  # step 0 is the shared start: not scored
    rows += [row("grpo", 1, t, v, "sweep", "0.0001") for t, v in ((2, 0.25), (4, 0.75))]  # 0.5
    rows += [row("grpo", 1, t, v, "sweep", "0.0003") for t, v in ((2, 0.5), (4, 0.5))]  # 0.5: a tie
    rows += [row("grpo", 1, t, v, "sweep", "0.001") for t, v in ((2, 0.25), (4, 0.25))]  # 0.25
    rows += [
        row("opsd@model", 1, t, v, "sweep", lr)
        for lr, v in (("0.0001", 0.0), ("0.001", 0.125))
        for t in (2, 4)
    ]
    scores = ex.sweep_scores(rows + [row("grpo", 1, 2, 0.9, "main")])  # the main runs do not count
    assert scores == {"grpo": {1e-4: 0.5, 3e-4: 0.5, 1e-3: 0.25}, "opsd@model": {1e-4: 0.0, 1e-3: 0.125}}
    assert ex.choose_rate(scores["grpo"]) == 1e-4 and ex.choose_rate(scores["opsd@model"]) == 1e-3
    # the main runs follow at the chosen rate once an arm's whole grid is in the CSV (opsd lacks 3e-4)
    cfg = ex.Config(task="t", arms="grpo,opsd@model", rates="1e-4,3e-4,1e-3", seeds="1,2")
    main = [j for j in ex.plan(cfg, rows) if j["phase"] == "main"]
    assert [(j["arm"], j["lr"], j["seed"]) for j in main] == [
        ("grpo", "0.0001", "1"),
        ("grpo", "0.0001", "2"),
    ]
    assert main[0]["config"]["rl_lr"] == 1e-4 and main[0]["config"]["eval_split"] == "test"


def test_the_long_sweep_continues_the_chosen_rate_and_its_neighbours_till_the_best_has_both(tmp_path):
    scores = (("3e-05", 0.5), ("0.0001", 0.75), ("0.001", 0.25), ("0.003", 0.0))
    sweep = [row("grpo", 1, t, v, "sweep", lr) for lr, v in scores for t in (0, 2)]
    cfg = ex.Config(task="t", arms="grpo", rates="1e-4,1e-3,3e-3", seeds="1,2", rl_steps=2, long_steps=4)
    jobs = [j for j in ex.plan(cfg, sweep) if j["phase"] == "long_sweep"]
    assert [j["lr"] for j in jobs] == ["3e-05", "0.0001", "0.001"]  # 1e-4 won; 3e-5 came from another grid
    for j in jobs:  # the sweep's own run, continued on the validation split: its checkpoint resumes
        sweep_dir = ex.job(cfg, "sweep", "grpo", float(j["lr"]))["config"]["out_dir"]
        assert (j["config"]["out_dir"], j["config"]["rl_steps"], j["config"]["eval_split"]) == (
            sweep_dir,
            4,
            "val",
        )
    assert not [j for j in ex.plan(cfg, sweep) if j["phase"] == "long"]  # not before the long sweep is in
    scores = (("3e-05", 0.5), ("0.0001", 0.5), ("0.001", 0.625))  # the long best at the window's edge:
    long_sweep = [row("grpo", 1, t, v, "long_sweep", lr) for lr, v in scores for t in (0, 4)]
    jobs = ex.plan(cfg, sweep + long_sweep)  # its other neighbour goes on too, before any long run
    assert [j["lr"] for j in jobs if j["phase"] == "long_sweep"] == ["3e-05", "0.0001", "0.001", "0.003"]
    assert not [j for j in jobs if j["phase"] == "long"]
    long_sweep += [row("grpo", 1, t, 0.5, "long_sweep", "0.003") for t in (0, 4)]
    long = [(j["lr"], j["seed"]) for j in ex.plan(cfg, sweep + long_sweep) if j["phase"] == "long"]
    assert long == [("0.001", "1"), ("0.001", "2")]
    won = long_sweep[:-1] + [long_sweep[-1] | {"avg@8": 0.75}]  # had 3e-3 won (the grid's end): at it
    long = [(j["lr"], j["seed"]) for j in ex.plan(cfg, sweep + won) if j["phase"] == "long"]
    assert long == [("0.003", "1"), ("0.003", "2")]
    runs = (("main", "0.0001", 0.25), ("long", "0.0001", 0.375), ("long", "0.001", 0.75))
    done = [
        row("grpo", s, t, v, p, lr, **{"pass@1": v, "pass@8": v})
        for p, lr, v in runs
        for s in (1, 2)
        for t in (0, 4)
    ]
    ex.report(ex.Config(results=str(tmp_path), figures=str(tmp_path)), sweep + long_sweep + done)
    text = open(tmp_path / "experiment.md").read()  # main at the sweep's rate, long at the long sweep's
    assert "| grpo | 0.0001 | 2 | 0.250 ± 0.000 |" in text and "| grpo | 0.001 | 2 | 0.750 ± 0.000 |" in text
    assert "| grpo | 0.500 | 0.500 | **0.625** |" in text and "0.375" not in text


def test_steps_to_grpos_final_and_the_verdict_match_hand_computed_numbers():
    grpo = curves("grpo", {1: (0.125, 0.25, 0.375, 0.25), 2: (0.125, 0.25, 0.375, 0.75)})  # final 0.5
    distil = curves("distil@model", {1: (0.125, 0.5, 0.5, 0.875), 2: (0.125, 0.5, 0.75, 0.875)})
    offline = curves("offline@model", {1: (0.125,) * 3 + (0.5,), 2: (0.125,) * 3 + (0.5,)})
    token = curves("distil_token@model", {1: (0.125,) * 3 + (0.875,), 2: (0.125,) * 3 + (0.875,)})
    sdpo = curves("sdpo@model", {1: (0.125,) * 3 + (1.0,), 2: (0.125,) * 3 + (1.0,)})
    slow = curves("distil@feedback", {1: (0.125,) * 4, 2: (0.125,) * 4})
    main = grpo + distil + offline + token + sdpo + slow
    assert ex.seed_curve(distil)[1] == (2, 0.5, 0.0, 20.0)
    assert ex.steps_to(ex.seed_curve(distil), 0.5) == 2  # 2 <= 6 / 3: within a third of GRPO's steps
    assert ex.steps_to(ex.seed_curve(grpo), 0.5) == 6 and ex.steps_to(ex.seed_curve(slow), 0.5) is None
    assert ex.finals(grpo) == [0.25, 0.75]
    # distil − grpo = 0.875 − 0.5; σ_d² = 0.125/2 + 0/2 (sample variances over 2 seeds): 2σ_d = 0.5
    assert ex.gap(ex.finals(distil), ex.finals(grpo)) == (0.375, 0.5)
    assert ex.verdict(main) == [
        "distil@model reaches GRPO's final avg@8 (0.500) within a third of its 6 steps: yes (at step 2); "
        "ends above GRPO: yes (+0.375; beyond 2σ_d 0.500: no); above offline@model: yes",
        "distil@model vs distil_token@model: +0.000 avg@8 (2σ_d 0.000): neither beyond 2σ_d",
        "distil@model vs offline@model: +0.375 avg@8 (2σ_d 0.000): distil",
        "distil@model vs sdpo@model: -0.125 avg@8 (2σ_d 0.000): sdpo",
        "distil@feedback reaches GRPO's final avg@8 (0.500) within a third of its 6 steps: no (never); "
        "ends above GRPO: no (-0.375; beyond 2σ_d 0.500: no); above offline@feedback: n/a",
    ]
    assert ex.verdict(distil) == ["no verdict: no GRPO runs"]
    # offline and distil_token read no stop rule: model_S's runs stand for model_S_once's, not model's
    once = [r | {"arm": "distil@model_S_once"} for r in distil]
    assert ex.verdict(grpo + once + [r | {"arm": "distil_token@model_S"} for r in token] + offline)[1:] == [
        "distil@model_S_once vs distil_token@model_S: +0.000 avg@8 (2σ_d 0.000): neither beyond 2σ_d"
    ]
    assert ex.verdict(grpo + once + offline)[0].endswith("above offline@model_S: n/a")


def test_the_report_reads_the_main_runs_of_the_rate_a_later_sweep_chose(tmp_path):
    sweep = [
        row("grpo", 1, t, v, "sweep", lr) for lr, v in (("0.0001", 0.5), ("3e-05", 0.75)) for t in (0, 2)
    ]
    main = [  # 3e-5 won the sweep after the main runs at 1e-4 had finished (those rows come later here)
        row("grpo", seed, t, v, "main", lr, **{"pass@1": v, "pass@8": v})
        for lr, v in (("3e-05", 0.125), ("0.0001", 0.25))
        for seed in (1, 2)
        for t in (0, 6)
    ]
    ex.report(ex.Config(results=str(tmp_path), figures=str(tmp_path)), sweep + main)
    text = open(tmp_path / "experiment.md").read()
    assert "| grpo | 3e-05 | 2 | 0.125 ± 0.000 | 0.125 ± 0.000 | 0.125 ± 0.000 | 0 | 60 |" in text
    assert "| grpo | **0.750** | 0.500 |" in text  # the sweep keeps every rate


def test_training_seconds_are_the_cumulative_time_fields_of_the_steps_before_each_evaluation():
    times = {"time_sample": 1.0, "time_verify": 0.5, "time_teacher": 0.25, "time_update": 0.25}  # 2 s
    rows = [{"step": 0, "avg@8": 0.1, "loss": 1.0, "len": 4.0, "ent": 1.0} | times]
    rows += [{"step": 1, "loss": 1.0, "len": 5.0} | {k: 2 * v for k, v in times.items()}]  # 4 s
    rows += [{"step": 2, "avg@8": 0.2, "loss": 1.0, "len": 6.0} | {k: 4 * v for k, v in times.items()}]
    rows += [{"step": 3, "avg@8": 0.3}]  # the final evaluation, after the last step
    evals = ex.curve(rows)
    assert [e["train_s"] for e in evals] == [0.0, 6.0, 14.0]
    assert [e["step"] for e in evals] == [0, 2, 3] and evals[1]["len"] == 6.0


# -----------------------------------------------------------------------------
# Runs: the CSV, resume, the report (train_gpt.run replaced by a fake that counts its calls)


def test_every_run_has_one_thread_whatever_jobs_since_the_thread_count_changes_its_bits(
    tmp_path, monkeypatch
):
    threads = []
    monkeypatch.setattr(tg, "run", lambda c: threads.append(torch.get_num_threads()) or fake_run([])(c))
    torch.set_num_threads(2)
    try:
        ex.execute(ex.job(small(tmp_path), "start", "student"))  # --jobs 1: in this process
    finally:
        torch.set_num_threads(1)
    assert threads == [1]


def test_a_runs_rows_are_appended_atomically_and_read_back_as_numbers(tmp_path, monkeypatch):
    path = str(tmp_path / "results" / "experiment.csv")
    ex.append_rows(path, [row("grpo", 1, 0, 0.25, len=NAN)])
    before = open(path).read()

    def killed(*args):
        raise OSError("killed before the rename")

    monkeypatch.setattr(ex.os, "replace", killed)
    with pytest.raises(OSError):
        ex.append_rows(path, [row("grpo", 1, 2, 0.5)])  # stopped before the rename: the CSV is as it was
    assert open(path).read() == before
    monkeypatch.undo()
    ex.append_rows(path, [row("grpo", 1, 2, 0.5)])
    rows = ex.read_csv(path)
    assert open(path).read().count("task,phase,arm") == 1 and [r["avg@8"] for r in rows] == [0.25, 0.5]
    assert rows[0]["seed"] == "1" and rows[0]["step"] == 0.0 and math.isnan(rows[0]["len"])


def fake_run(calls, t_adv=0.3):
    """train_gpt.run's stand-in: every run ends (an SFT leaves its checkpoint); avg@8 0.125 before RL,
    after it 0.25 at rate 1e-4 and 0.5 at 1e-3; every teacher's advantage t_adv ± 0.02."""

    def run(cfg):
        calls.append((cfg.stage, cfg.out_dir))
        if cfg.stage == "sft":
            open(os.path.join(cfg.out_dir, "sft.pt"), "w").close()
        metrics = {"pass@1": 0.25, "avg@8": 0.125, "pass@8": 0.5, "maj@8": 0.25, "t_adv": t_adv, "t_adv_n": 4}
        metrics |= {"t_adv_se": 0.02}
        step = {"loss": 1.0, "time_sample": 1.0, "time_teacher": 0.5, "len": 3.0, "ent": 0.5}
        learned = metrics | {"avg@8": 0.25 if cfg.rl_lr < 5e-4 else 0.5}
        rows = [{"step": 0} | metrics | step, {"step": 1} | step, {"step": cfg.rl_steps} | learned]
        return {"interrupted": False, "eval": metrics, "rows": rows}

    return run


def small(tmp_path, **kw):
    kw = {"task": "mult:digits_a=2,digits_b=1", "arms": "grpo,distil@model", "rates": "1e-4,1e-3"} | kw
    kw |= {
        "seeds": "1,2",
        "noise_seeds": "1,2",
        "rl_steps": 2,
        "long_steps": 3,
        "eval_every": 1,
        "jobs": 1,
    } | kw
    dirs = {"out": tmp_path / "runs", "results": tmp_path / "results", "figures": tmp_path / "figures"}
    return ex.Config(**{k: str(v) for k, v in dirs.items()} | kw)


def drop(path, **match):
    """Remove a run's rows from the CSV, as if it had not finished."""
    rows = [r for r in ex.read_csv(path) if any(r[k] != v for k, v in match.items())]
    os.remove(path)
    ex.append_rows(path, rows)


def test_a_rerun_skips_finished_runs_and_retrains_only_the_sft_a_pending_run_needs(tmp_path, monkeypatch):
    calls, cfg = [], small(tmp_path)
    monkeypatch.setattr(tg, "run", fake_run(calls))
    ex.main(cfg)
    path = os.path.join(cfg.results, "experiment.csv")
    assert len(calls) == 2 + 1 + 2 + 4 + 4 + 4 + 4  # SFTs, premise, noise (2), sweep, main, long sweep, long
    for phase, steps in (("main", 2), ("long", 3)):
        runs = {(r["arm"], r["lr"], r["seed"]) for r in ex.read_csv(path) if r["phase"] == phase}
        assert runs == {(a, "0.001", s) for a in ("grpo", "distil@model") for s in ("1", "2")}
        assert max(r["step"] for r in ex.read_csv(path) if r["phase"] == phase) == steps
    csv_text, md = open(path).read(), open(os.path.join(cfg.results, "experiment.md")).read()
    calls.clear()
    ex.main(cfg)  # everything is in the CSV: nothing runs, nothing is appended
    assert calls == [] and open(path).read() == csv_text
    # a fresh machine (no checkpoints) with one main run missing: the SFT it starts from runs again
    # (its rows are not appended twice), the teacher's only if the run reads the teacher model
    drop(path, phase="main", arm="grpo", seed="2")
    shutil.rmtree(cfg.out)
    ex.main(cfg)
    assert [(stage, os.path.basename(d)) for stage, d in calls] == [
        ("sft", "student"),
        ("rl", "grpo_lr0.001_s2"),
    ]
    calls.clear()
    drop(path, phase="main", arm="distil@model", seed="1")
    shutil.rmtree(cfg.out)
    ex.main(cfg)
    assert [os.path.basename(d) for _, d in calls] == ["student", "teacher", "distil@model_lr0.001_s1"]
    assert len(ex.read_csv(path)) == csv_text.count("\n") - 1
    assert open(os.path.join(cfg.results, "experiment.md")).read() == md
    # a machine that retrains another start (its evaluation differs from the CSV's): no run starts from it
    calls.clear()
    drop(path, phase="main", arm="grpo", seed="1")
    shutil.rmtree(cfg.out)
    same = fake_run(calls)

    def another_start(c):
        out = same(c)
        return out | {"eval": out["eval"] | {"avg@8": 0.126}} if c.stage == "sft" else out

    monkeypatch.setattr(tg, "run", another_start)
    with pytest.raises(
        SystemExit, match=r"^error: the student start retrained here is not the CSV.s .*0\.1260 vs 0\.1250"
    ):
        ex.main(cfg)
    assert [stage for stage, _ in calls] == ["sft"] and "grpo_lr0.001_s1" not in str(calls)
    student = os.path.join(cfg.out, "mult_digits_a_2_digits_b_1", "student")
    assert sorted(os.listdir(student)) == ["log.txt", "sft.pt.differs"]


def test_report_only_regenerates_the_report_byte_for_byte_from_the_csv_alone(tmp_path, monkeypatch):
    cfg = small(tmp_path, seeds="1,2,3")
    monkeypatch.setattr(tg, "run", fake_run([]))
    ex.main(cfg)
    md = os.path.join(cfg.results, "experiment.md")
    written = open(md, "rb").read()
    for name in (md, os.path.join(cfg.figures, "exp_mult_digits_a_2_digits_b_1.png")):
        os.remove(name)
    monkeypatch.setattr(tg, "run", None)  # --report_only runs nothing
    ex.main(dataclasses.replace(cfg, report_only=True, out=str(tmp_path / "elsewhere")))
    assert open(md, "rb").read() == written
    assert os.path.exists(os.path.join(cfg.figures, "exp_mult_digits_a_2_digits_b_1.png"))
    text = written.decode()
    assert "| grpo | 0.250 | **0.500** |" in text  # the sweep: validation avg@8 at 1e-4 and 1e-3
    assert "| grpo | 0.001 | 3 | 0.500 ± 0.000 | 0.250 ± 0.000 | 0.500 ± 0.000 | 2 |" in text


def test_every_finished_run_rewrites_the_report_from_the_csv_so_a_stopped_experiment_leaves_them_in_step(
    tmp_path, monkeypatch
):
    cfg, calls, reports = small(tmp_path, long_steps=0), [], []
    path, md = os.path.join(cfg.results, "experiment.csv"), os.path.join(cfg.results, "experiment.md")
    run = fake_run(calls)
    again = {"results": str(tmp_path / "a" / "results"), "figures": str(tmp_path / "a" / "figures")}

    def checking_run(c):  # before each run: the report on disk is the CSV's, as report() writes it now
        if os.path.exists(path):
            ex.report(dataclasses.replace(cfg, **again), ex.read_csv(path))
            reports.append(open(md).read() == open(os.path.join(again["results"], "experiment.md")).read())
        return run(c)

    monkeypatch.setattr(tg, "run", checking_run)
    ex.main(cfg)
    assert len(reports) == len(calls) - 1 and all(reports)


# -----------------------------------------------------------------------------
# The CLI, and one real run


def test_cli_rejects_an_unknown_flag_and_a_bad_arm_with_one_line_naming_what_is_accepted(capsys):
    assert ex.parse_args(["--rl_steps", "7", "--report_only"]).rl_steps == 7
    for argv, accepted in (
        (["--rl_step", "7"], "--rl_steps"),
        (["--arms", "grpo,distil@nobody"], "teachers: model, model_S, model_S_once, feedback, self"),
        (["--arms", "grpo@model"], "grpo alone"),
        (["--arms", "nope"], "methods: distil, distil_token"),
        (["--prompts", "0"], "--prompts"),
    ):
        with pytest.raises(SystemExit):
            ex.parse_args(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and err[0].startswith("usage:") and accepted in err[1], err


def test_each_teacher_is_read_and_measured_where_its_arms_costs_count():
    """model and self on every state, model_S and feedback on the oracle's support, from the premise
    (t_adv cuts there) to the runs; grpo and cloning read no teacher at the student's states."""
    cfg, teacher = ex.Config(), os.path.join("runs", "experiment", "mult_digits_a_3_digits_b_1", "teacher")
    for arm, who, states in (
        ("model", os.path.join(teacher, "sft.pt"), "all"),
        ("model_S", os.path.join(teacher, "sft.pt"), "support"),
        ("feedback", "frozen", "support"),
        ("self", "self", "all"),
    ):
        premise, run = (
            ex.job(cfg, "premise", arm)["config"],
            ex.job(cfg, "main", f"distil@{arm}", 1e-4)["config"],
        )
        assert (premise["teacher"], premise["states"]) == (run["teacher"], run["states"]) == (who, states)
    for arm in ("grpo", "offline@model_S"):
        assert ex.job(cfg, "main", arm, 1e-4)["config"]["states"] == "all"


def test_an_arm_whose_teacher_is_below_the_bar_is_not_trained_and_the_report_says_why(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(tg, "run", fake_run(calls, t_adv=0.1))
    cfg = small(tmp_path, arms="grpo,distil@model,distil_token@self")
    ex.main(cfg)
    arms = {
        r["arm"] for r in ex.read_csv(os.path.join(cfg.results, "experiment.csv")) if r["phase"] == "main"
    }
    assert arms == {"grpo", "distil_token@self"}  # the null arm is never gated: its t_adv is 0 by design
    report = open(os.path.join(cfg.results, "experiment.md")).read()
    assert "- not trained, teacher model: t_adv +0.100 ± 0.020, short of +0.2 ± 0.03" in report


def test_one_tiny_run_writes_the_csv_the_report_and_the_figure(tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "ADV_BAR", -1.0)  # a micro teacher has no advantage: train its arm anyway
    monkeypatch.setattr(ex, "ADV_SE", 1.0)
    cfg = small(tmp_path, seeds="1", noise_seeds="1,2", rates="1e-3,1e-2", warmup=0, prompts=2, group=2)
    cfg = dataclasses.replace(cfg, eval_n=4, val_n=4, rl_n=8, n_train=200, preset="micro", sft_steps=3)
    cfg = dataclasses.replace(cfg, teacher_preset="micro", teacher_sft_steps=3)
    ex.main(cfg)
    rows = ex.read_csv(os.path.join(cfg.results, "experiment.csv"))
    assert [r["phase"] for r in rows].count("start") == 2  # the student's SFT and the teacher model's
    assert {r["phase"] for r in rows} == {"start", "premise", "noise", "sweep", "main", "long_sweep", "long"}
    main = [r for r in rows if r["phase"] == "main"]
    assert [r["step"] for r in main] == [0.0, 1.0, 2.0] * 2  # grpo and distil@model, evaluated every step
    assert [r["step"] for r in rows if r["phase"] == "long"] == [0.0, 1.0, 2.0, 3.0] * 2  # long_steps 3
    assert all(a["train_s"] < b["train_s"] for a, b in zip(main, main[1:]) if b["step"] > 0)
    assert os.path.exists(os.path.join(cfg.out, "mult_digits_a_2_digits_b_1", "teacher", "sft.pt"))
    assert "## mult:digits_a=2,digits_b=1" in open(os.path.join(cfg.results, "experiment.md")).read()
    png = open(os.path.join(cfg.figures, "exp_mult_digits_a_2_digits_b_1.png"), "rb").read()
    assert png.startswith(b"\x89PNG")
    monkeypatch.setattr(tg, "run", None)  # a rerun finds every run in the CSV and every checkpoint here
    ex.main(cfg)
    # --jobs 2 (spawned workers, one thread each) gives the same rows, the seconds aside
    monkeypatch.undo()
    monkeypatch.setattr(ex, "ADV_BAR", -1.0)
    monkeypatch.setattr(ex, "ADV_SE", 1.0)
    two = dataclasses.replace(cfg, jobs=2, out=str(tmp_path / "runs2"), results=str(tmp_path / "results2"))
    ex.main(two)

    def timeless(rows):  # text values: nan equals nan
        return sorted(({k: str(v) for k, v in r.items() if k != "train_s"} for r in rows), key=str)

    assert timeless(ex.read_csv(os.path.join(two.results, "experiment.csv"))) == timeless(rows)
