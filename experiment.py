"""
experiment.py — the paper's experiment in miniature: every method of train_gpt.py against the
others on every task of tasks.py, with seeds, a learning-rate sweep, error bars, one command.
Claim tested (arXiv 2606.05152): on-policy forward CE toward a feedback-conditioned teacher,
L(θ) = E_{y~π_θ}[Σ_t H×(sg π_T(·|x, f, y_<t), π_θ(·|x, y_<t))], beats GRPO and SDPO/OPSD on average,
is more stable, and improves Pass@N.

Protocol (fixed before any result; the numbers are Config's defaults):
 1. One SFT checkpoint per task (seed sft_seed), shared by every method and seed; its metrics and
    its teacher lift head each table. Problem lists are drawn with data_seed.
 2. Every method in --methods from it, with the same prompts and random numbers on a seed; the
    self-teacher is --teacher (self, frozen or ema), distil_sampled's is the oracle, grpo reads none
    (so grpo and the oracle runs are shared between --teacher values).
 3. Learning rates: each method runs every rate of `lrs` on `sweep_task` (first seed), scored on a
    validation set of val_n distinct training problems that SFT and RL never see, by validation
    avg@8 averaged over the evaluations after step 0 (ties: the smaller rate); then fixed.
 4. Main runs: tasks x methods x seeds, test evaluations every eval_every steps (greedy pass@1,
    pass@8 / avg@8 from 8 samples), mean ± sample std over seeds; pass@N at the end.
 5. Steps to threshold: the first evaluation at which the seed-mean pass@1 reaches SFT +
    threshold_delta. 6. Drops: consecutive evaluations where pass@1 fell by more than the binomial
    σ of the SFT's pass@1. 7. "mean of tasks": per seed the task average, then over seeds.
Simplifications: tiny preset from scratch; short RL budgets; one sweep seed; one SFT per task.

Run (CPU; two runs in parallel with one thread each, about an hour and a half on two cores):
    python experiment.py                    # everything; rerun the same command to resume
    python experiment.py --teacher frozen   # the same with a frozen self-teacher (_frozen files)
    python experiment.py --report_only      # results/README.md, the README summary, figures from the CSVs
    python experiment.py --tasks mult --methods distil,grpo --seeds 1 --lrs 1e-4   # a quick comparison
    python experiment.py --plot out/rl_distil.jsonl   # the curves of one train_gpt.py run
    python experiment.py --table 'results/trainer_checks/dagger_*.jsonl'   # a markdown table of run logs
Writes runs/experiment/<task>/... (resumable raw runs), results/experiment[_<teacher>].csv (every
number), results/README.md (the tables), figures/exp[_<teacher>]_*.png.
"""

import argparse
import concurrent.futures as cf
import contextlib
import csv
import dataclasses
import glob
import json
import math
import multiprocessing as mp
import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

import torch

import runs
import tasks
import train_gpt as tg

# -----------------------------------------------------------------------------
# Configuration: one dataclass; every field is a command-line flag

# the protocol's methods (train_gpt.METHODS has them all): with the self-teacher, and with the oracle
SELF_METHODS = ("distil", "distil_token", "distil_kl", "sdpo", "opsd", "grpo", "offline")
ORACLE_METHODS = ("distil_sampled",)
TEACHERLESS = tuple(m for m, reads in tg.METHODS.items() if reads is None)  # runs shared by every --teacher
METRICS = ("pass@1", "pass@8", "avg@8")  # the table's metrics (pass@1 greedy; 8 samples for the rest)
CURVES = METRICS + ("t_rew",)  # what the CSV keeps at every evaluation step (t_rew: the teacher's success)
TASK_SPECS = (
    "mult:digits_a=2,digits_b=1;countdown:n_numbers=3,max_number=10,max_target=60;"
    "listprog:max_steps=2,n_examples=2,min_len=3,max_len=5;chem"
)
MEAN = "mean of tasks"
# of --premise; model: <out>/<task>/teacher/sft.pt with the teacher context, model_plain: with the student's
PREMISE_TEACHERS = ("self", "frozen", "model", "model_plain", "oracle")
# every teacher --premise can measure -> (train_gpt --teacher kind, --context, task knobs added to the spec):
# <kind> reads the peer (train_gpt's default), <kind>_feedback the feedback, <kind>_both both, and
# <kind>_verdict the feedback of the same task with feedback=verdict (the symptoms, no fix named)
PREMISE_KINDS = {
    f"{k}{sfx}": (k, ctx, knob)
    for k in ("self", "frozen", "model")
    for sfx, ctx, knob in (
        ("", "peer", ""),
        ("_feedback", "feedback", ""),
        ("_both", "both", ""),
        ("_verdict", "feedback", "feedback=verdict"),
    )
}
PREMISE_KINDS |= {"model_plain": ("model", "none", ""), "oracle": ("oracle", "peer", "")}
FEEDBACK_CSV = (
    "premise_feedback.csv"  # --premise --premise_csv this: the feedback study (results/feedback.md)
)
# the same measured at checkpoints SFT'd with another tasks.py sft_target (the ablation of
# sft_target=recovery, the default of countdown, listprog and chem)
SFT_ABLATIONS = {"reference": "premise_sft_reference.csv"}
# rows of FEEDBACK_CSV measured at other knobs than today's defaults (each names how)
FEEDBACK_NOTES = {"mult": "its row comes from an SFT run with sft_teacher_frac 0.5 (today's default is 0.8)"}


@dataclass
class Config:
    # what to run
    tasks: str = TASK_SPECS  # ';'-separated train_gpt.py --task specs (name:knob=value,...)
    sft_steps: str = "500,2000,2000,2000"  # SFT optimizer steps: one value, or one per task
    methods: str = ",".join(SELF_METHODS + ORACLE_METHODS)  # the RL objectives compared
    teacher: str = (
        "self"  # the self-teacher: self (live), frozen (the SFT model) or ema; results get a suffix
    )
    seeds: str = "1,2,3"  # RL seeds of the main runs (the sweep runs the first)
    lrs: str = "3e-5,1e-4,3e-4,1e-3"  # learning-rate grid of the sweep (AdamW, constant)
    sweep_task: str = "mult"  # the task (a name in --tasks) whose validation set picks the rates
    val_n: int = 128  # validation problems of the sweep task: distinct train problems, never trained on
    # budgets shared by every run (train_gpt.py fields)
    preset: str = "tiny"  # model size
    sft_batch: int = 32  # SFT sequences per step
    sft_teacher_frac: float = 0.8  # SFT examples in teacher format: the teacher's reading is learned in SFT
    n_train: int = 30000  # training problems drawn per task (enough that listprog cannot be memorised)
    sft_seed: int = 1337  # seed of the SFT runs
    data_seed: int = 1337  # seed of the problem lists (train, validation, test)
    rl_steps: int = 60  # RL optimizer steps per run
    prompts: int = 8  # prompts per RL step
    group: int = 8  # rollouts per prompt
    eval_every: int = 15  # RL steps between evaluations (and checkpoints)
    early_step: int = 15  # the early-budget column: an evaluation step
    eval_n: int = 128  # test problems (distinct ones first, then repeats: tasks.Task.generate)
    passn_samples: int = 16  # samples per test problem for the final pass@N curve
    threshold_delta: float = 0.05  # steps to threshold: first step with pass@1 >= SFT pass@1 + this
    # execution and output
    jobs: int = 2  # runs in parallel (processes)
    threads: int = 1  # torch threads per run
    out: str = "runs/experiment"  # raw runs (git-ignored)
    results: str = "results"  # experiment[_<teacher>].csv and README.md
    figures: str = "figures"  # exp_pass1_<task>.png and exp_passn.png
    readme: str = "README.md"  # the file whose results summary block --report_only rewrites ("" = none)
    report_only: bool = False  # rebuild results/README.md, the README summary and the figures from the CSVs
    premise: bool = (
        False  # measure t_adv of every --premise_teachers at each task's SFT student (results/premise.csv)
    )
    premise_teachers: str = ",".join(
        PREMISE_TEACHERS
    )  # the teachers --premise measures (PREMISE_KINDS' names)
    premise_csv: str = (
        "premise.csv"  # the file under --results that --premise writes (FEEDBACK_CSV: the feedback study)
    )
    teacher_preset: str = "tiny"  # the teacher model of --premise: this preset ...
    teacher_scale: int = 2  # ... trained on the same SFT data for this many times the task's SFT steps
    plot: str = ""  # a train_gpt.py JSONL log to draw as <log>.png (then exit)
    table: str = (
        ""  # train_gpt.py JSONL logs (comma-separated paths or globs): print their markdown table (then exit)
    )


def parse_args(argv=None):
    """Config from flags generated from the dataclass (as train_gpt.py's); unknown flags are rejected."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    runs.add_flags(p, Config, runs.field_help(Config))
    return Config(**vars(p.parse_args(argv)))


def task_specs(cfg, sweep=True):
    """[(name, spec, sft_steps)] from --tasks and --sft_steps; exits naming a bad value (sweep=False:
    the sweep task need not be among them, as for --premise on a subset of the tasks)."""
    specs = [s.strip() for s in cfg.tasks.split(";") if s.strip()]
    steps = [int(s) for s in cfg.sft_steps.split(",")]
    if len(steps) == 1:
        steps *= len(specs)
    try:
        names = [tasks.make_task(s).name for s in specs]
    except ValueError as e:
        raise SystemExit(f"error: --tasks: {e}") from None
    if len(steps) != len(specs):
        raise SystemExit(f"error: --sft_steps has {len(steps)} values for {len(specs)} tasks")
    if sweep and cfg.sweep_task not in names:
        raise SystemExit(
            f"error: --sweep_task {cfg.sweep_task!r} is not one of the tasks: {', '.join(names)}"
        )
    bad = [m for m in cfg.methods.split(",") if m not in tg.METHODS]
    if bad:
        raise SystemExit(f"error: --methods {','.join(bad)}: choose among {', '.join(tg.METHODS)}")
    if cfg.teacher not in tg.SELF_TEACHERS:
        raise SystemExit(f"error: --teacher {cfg.teacher!r}: choose among {', '.join(tg.SELF_TEACHERS)}")
    if cfg.early_step % cfg.eval_every or not 0 < cfg.early_step <= cfg.rl_steps:
        raise SystemExit(
            f"error: --early_step {cfg.early_step} must be an evaluation step (a multiple of "
            f"--eval_every {cfg.eval_every}, at most --rl_steps {cfg.rl_steps})"
        )
    return list(zip(names, specs, steps))


# -----------------------------------------------------------------------------
# Aggregation: pure functions on evaluation rows (the tests check them on hand-made rows)


def mean_std(xs):
    """Mean and sample standard deviation (n − 1; 0 for one value); nan for no values."""
    xs = [x for x in xs if x == x]
    if not xs:
        return math.nan, math.nan
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def binomial_se(p, n):
    """Standard error of a success rate p measured on n independent problems."""
    return math.sqrt(p * (1 - p) / n)


def steps_to_threshold(steps, values, threshold):
    """The first step whose value reaches the threshold, or None."""
    return next((s for s, v in zip(steps, values) if v >= threshold), None)


def count_drops(values, noise):
    """Consecutive points (in step order) at which the value fell by more than `noise`."""
    return sum(b < a - noise for a, b in zip(values, values[1:]))


def criterion(record):
    """The sweep's selection criterion: avg@8 averaged over the evaluation points after step 0."""
    return statistics.fmean(e["avg@8"] for e in record["evals"] if e["step"] > 0)


def select_lr(records):
    """The rate with the highest criterion among one method's sweep records (ties: the smaller)."""
    return max(sorted(records, key=lambda r: r["lr"]), key=criterion)["lr"]


def mean_of_tasks(records, sfts):
    """Pseudo-records averaged over tasks per (method, seed), and the matching pseudo-SFT (its noise
    is the standard error of a mean of independent task estimates)."""
    by = defaultdict(list)
    for r in records:
        by[r["method"], r["seed"]].append(r)
    out = []
    for (method, seed), rs in by.items():
        if len(rs) < len(sfts):
            continue  # a method/seed missing on some task has no average
        steps = [e["step"] for e in rs[0]["evals"]]
        evals = [
            {
                "step": s,
                **{
                    k: statistics.fmean(r["evals"][i][k] for r in rs)
                    for k in rs[0]["evals"][i]
                    if k != "step"
                },
            }
            for i, s in enumerate(steps)
        ]
        passn = {n: statistics.fmean(r["passn"][n] for r in rs) for n in rs[0]["passn"]}
        out.append(
            {
                "phase": "main",
                "task": MEAN,
                "method": method,
                "lr": rs[0]["lr"],
                "seed": seed,
                "evals": evals,
                "passn": passn,
            }
        )
    keys = list(sfts[0]["eval"])
    sft = {
        "task": MEAN,
        "eval": {k: statistics.fmean(s["eval"][k] for s in sfts) for k in keys},
        "passn": {n: statistics.fmean(s["passn"][n] for s in sfts) for n in sfts[0]["passn"]},
        "noise": math.sqrt(sum(s["noise"] ** 2 for s in sfts)) / len(sfts),
    }
    return out, sft


def aggregate(records, sfts, threshold_delta):
    """CSV rows (phase, task, method, lr, metric, x, mean, std, n) from finished runs: every metric
    at every evaluation step, pass@N at the end, and the summaries (selection criterion, steps to
    threshold, seeds reaching it, drops and pairs)."""
    rows = []

    def add(phase, task, method, lr, metric, x, values, n=None):
        m, s = mean_std(values)
        rows.append(
            {
                "phase": phase,
                "task": task,
                "method": method,
                "lr": lr,
                "metric": metric,
                "x": x,
                "mean": m,
                "std": s,
                "n": len(values) if n is None else n,
            }
        )

    sft_of = {s["task"]: s for s in sfts}
    for s in sfts:
        for k, v in s["eval"].items():
            add("sft", s["task"], "sft", "", k, 0, [v])
        for n, v in s["passn"].items():
            add("sft", s["task"], "sft", "", "pass@N", n, [v])
        add("sft", s["task"], "sft", "", "threshold", "", [s["eval"]["pass@1"] + threshold_delta])
        add("sft", s["task"], "sft", "", "noise", "", [s["noise"]])
    groups = defaultdict(list)
    for r in records:
        groups[r["phase"], r["task"], r["method"], r["lr"]].append(r)
    for (phase, task, method, lr), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        steps = [e["step"] for e in rs[0]["evals"]]
        for k in CURVES:
            for i, s in enumerate(steps):
                add(phase, task, method, lr, k, s, [r["evals"][i][k] for r in rs])
        if phase == "sweep":
            add(phase, task, method, lr, "criterion", "", [criterion(r) for r in rs])
            continue
        for n in rs[0]["passn"]:
            add(phase, task, method, lr, "pass@N", n, [r["passn"][n] for r in rs])
        thr, noise = sft_of[task]["eval"]["pass@1"] + threshold_delta, sft_of[task]["noise"]
        curves = [[e["pass@1"] for e in r["evals"]] for r in rs]
        mean_curve = [statistics.fmean(c[i] for c in curves) for i in range(len(steps))]
        hit = steps_to_threshold(steps, mean_curve, thr)
        n = len(rs)  # the summaries below are one number over all seeds
        add(phase, task, method, lr, "steps_to_threshold", "", [math.nan if hit is None else float(hit)], n)
        add(
            phase,
            task,
            method,
            lr,
            "seeds_reaching",
            "",
            [sum(steps_to_threshold(steps, c, thr) is not None for c in curves)],
            n,
        )
        add(phase, task, method, lr, "drops", "", [sum(count_drops(c, noise) for c in curves)], n)
        add(phase, task, method, lr, "drop_pairs", "", [sum(len(c) - 1 for c in curves)], n)
    return rows


# -----------------------------------------------------------------------------
# Runs: one SFT per task, then RL runs; result.json marks a finished run


def base_config(cfg, spec, name, seed):
    """The train_gpt.py Config every run of a task shares."""
    return tg.Config(
        task=spec,
        preset=cfg.preset,
        seed=seed,
        data_seed=cfg.data_seed,
        device="cpu",
        n_train=cfg.n_train,
        val_n=cfg.val_n if name == cfg.sweep_task else 0,
        sft_batch=cfg.sft_batch,
        sft_teacher_frac=cfg.sft_teacher_frac,
        rl_steps=cfg.rl_steps,
        prompts=cfg.prompts,
        group=cfg.group,
        eval_n=cfg.eval_n,
        eval_samples=8,
        eval_k=8,
        eval_every=cfg.eval_every,
        ckpt_every=cfg.eval_every,
        eval_passn=cfg.passn_samples,
        resume=True,
    )


def load_result(run_dir, tcfg):
    """A finished run's result.json (None if unfinished); exits if it was made with another config."""
    path = os.path.join(run_dir, "result.json")
    if not os.path.exists(path):
        return None
    res = json.load(open(path))
    if res["config"] != dataclasses.asdict(tcfg):
        diff = sorted(k for k, v in dataclasses.asdict(tcfg).items() if res["config"].get(k) != v)
        raise SystemExit(
            f"error: {run_dir} was made with other settings ({', '.join(diff)}); "
            f"delete it or pass another --out"
        )
    return res


@contextlib.contextmanager
def restore_threads(n):
    try:
        yield
    finally:
        torch.set_num_threads(n)


def execute(job):
    """Run one job (in a worker process) through train_gpt.run; write result.json. Returns the
    result, or None if the run was stopped (Ctrl-C) before it finished."""
    threads = torch.get_num_threads()
    torch.set_num_threads(job["threads"])  # restored below: --jobs 1 runs in the caller's process
    tcfg = tg.Config(**job["config"])
    os.makedirs(tcfg.out_dir, exist_ok=True)
    t0 = time.time()
    with (
        open(os.path.join(tcfg.out_dir, "log.txt"), "a") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
        restore_threads(threads),
    ):
        out = tg.run(tcfg)
    if out["interrupted"]:
        return None
    res = dict(job["meta"], config=job["config"], wall_s=time.time() - t0, passn=out.get("passn"))
    if tcfg.stage == "sft":  # the binomial n: distinct test problems
        res.update(
            eval=out["eval"],
            n_distinct=out["eval_problems"],
            noise=binomial_se(out["eval"]["pass@1"], out["eval_problems"]),
        )
    else:
        res["evals"] = [
            {"step": r["step"], **{k: r[k] for k in tg.eval_keys(tcfg)}} for r in out["rows"] if "pass@1" in r
        ]
    tmp = os.path.join(tcfg.out_dir, "result.json.tmp")
    with open(tmp, "w") as f:
        json.dump(res, f)
    os.replace(tmp, os.path.join(tcfg.out_dir, "result.json"))
    return res


def teacher_of(cfg, method):
    """The teacher a method's runs use: the oracle for ORACLE_METHODS, "self" for a method that never
    reads it (so its runs are shared between --teacher values), --teacher for the rest."""
    return "oracle" if method in ORACLE_METHODS else "self" if method in TEACHERLESS else cfg.teacher


def suffix(teacher):
    """What names runs and result files made with a non-default self-teacher ("" for the live one)."""
    return "" if teacher in ("self", "oracle") else f"_{teacher}"


def sft_job(cfg, name, spec, steps, kind="sft", **changes):
    """The SFT run of a task that every RL run starts from (or, with kind and changes, another SFT run)."""
    c = dataclasses.replace(
        base_config(cfg, spec, name, cfg.sft_seed),
        stage="sft",
        sft_steps=steps,
        out_dir=os.path.join(cfg.out, name, kind),
        **changes,
    )
    return {
        "config": dataclasses.asdict(c),
        "threads": cfg.threads,
        "passn_samples": cfg.passn_samples,
        "meta": {"phase": kind, "task": name},
    }


def plan(cfg):
    """Every job as (key, deps, build): build(results) -> the job given its finished dependencies
    (a main run's rate is known once its method's sweep is done)."""
    seeds = [int(s) for s in cfg.seeds.split(",")]
    lrs = [float(x) for x in cfg.lrs.split(",")]
    methods = cfg.methods.split(",")
    specs = task_specs(cfg)
    sweep_spec = next(s for s in specs if s[0] == cfg.sweep_task)
    jobs = []

    def rl_job(phase, name, spec, method, lr, seed):
        teacher = teacher_of(cfg, method)
        c = dataclasses.replace(
            base_config(cfg, spec, name, seed),
            stage="rl",
            method=method,
            rl_lr=lr,
            teacher=teacher,
            eval_split="val" if phase == "sweep" else "test",
            init_from=os.path.join(cfg.out, name, "sft", "sft.pt"),
            out_dir=os.path.join(cfg.out, name, f"{phase}_{method}{suffix(teacher)}_lr{lr:g}_s{seed}"),
        )
        return {
            "config": dataclasses.asdict(c),
            "threads": cfg.threads,
            "passn_samples": cfg.passn_samples,
            "meta": {"phase": phase, "task": name, "method": method, "lr": lr, "seed": seed},
        }

    for name, spec, steps in sorted(specs, key=lambda s: s[0] != cfg.sweep_task):  # sweep task first
        jobs.append((("sft", name), [], lambda res, job=sft_job(cfg, name, spec, steps): job))
    for m in methods:
        for lr in lrs:
            jobs.append(
                (
                    ("sweep", m, lr),
                    [("sft", cfg.sweep_task)],
                    lambda res, m=m, lr=lr: rl_job("sweep", sweep_spec[0], sweep_spec[1], m, lr, seeds[0]),
                )
            )
    for seed in seeds:  # seed-major: an interrupted experiment has whole seeds
        for name, spec, _ in specs:
            for m in methods:
                deps = [("sft", name)] + [("sweep", m, lr) for lr in lrs]

                def build(res, name=name, spec=spec, m=m, seed=seed, deps=deps):
                    return rl_job("main", name, spec, m, select_lr([res[d] for d in deps[1:]]), seed)

                jobs.append((("main", name, m, seed), deps, build))
    return jobs


class Inline:
    """A one-at-a-time executor in this process (--jobs 1: tests, debugging)."""

    def submit(self, fn, *args):
        f = cf.Future()
        f.set_result(fn(*args))
        return f

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def run_all(cfg, stats, jobs=None):
    """Run every job of `jobs` (default plan(cfg)) whose dependencies are done, `jobs` at a time; skip
    finished ones. Returns {key: result}; stats["ran"] counts the jobs started. Raises
    KeyboardInterrupt after stopping cleanly (the runs save a checkpoint)."""
    jobs, results, running = plan(cfg) if jobs is None else jobs, {}, {}
    total, t0, walls = len(jobs), time.time(), []
    ex = Inline() if cfg.jobs == 1 else cf.ProcessPoolExecutor(cfg.jobs, mp_context=mp.get_context("spawn"))
    try:
        while jobs or running:
            progress = True
            while progress and len(running) < cfg.jobs:
                progress = False
                for i, (key, deps, build) in enumerate(jobs):
                    if all(d in results for d in deps):
                        job = build(results)
                        del jobs[i]
                        done = load_result(job["config"]["out_dir"], tg.Config(**job["config"]))
                        if done is not None:
                            results[key] = done
                        else:
                            stats["ran"] += 1
                            running[ex.submit(execute, job)] = (key, job)
                        progress = True
                        break
            if not running:
                if jobs:
                    raise RuntimeError(f"unsatisfiable dependencies: {[k for k, _, _ in jobs]}")
                break
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for f in finished:
                key, job = running.pop(f)
                res = f.result()
                if res is None:
                    raise KeyboardInterrupt
                results[key] = res
                walls.append(res["wall_s"])
                left = len(jobs) + len(running)
                eta = statistics.fmean(walls) * left / cfg.jobs  # runs of all kinds alike: rough
                print(
                    f"[{total - left}/{total}] {job['config']['out_dir']} | {runs.fmt_time(res['wall_s'])} | "
                    f"elapsed {runs.fmt_time(time.time() - t0)} | eta {runs.fmt_time(eta)}",
                    flush=True,
                )
    except BaseException:
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)
    return results


# -----------------------------------------------------------------------------
# Report: the CSV -> markdown tables and figures (also from a committed CSV alone)


def write_csv(path, rows):
    fields = ["phase", "task", "method", "lr", "metric", "x", "mean", "std", "n"]

    def fmt(v):
        return f"{v:.6g}" if isinstance(v, float) else v

    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows({k: fmt(r[k]) for k in fields} for r in rows)


def read_csv(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["mean"], r["std"], r["n"] = float(r["mean"]), float(r["std"]), int(r["n"])
        r["x"] = int(r["x"]) if r["x"] not in ("",) else ""
    return rows


def pm(m, s, d=3):
    return "-" if m != m else f"{m:.{d}f} ± {s:.{d}f}"


def report(rows, cfg):
    """One teacher's section of results/README.md, and its figures, from its CSV rows."""
    get = defaultdict(dict)  # (phase, task, method, lr, metric) -> {x: (mean, std, n)}
    for r in rows:
        get[r["phase"], r["task"], r["method"], r["lr"], r["metric"]][r["x"]] = (r["mean"], r["std"], r["n"])

    def val(key, x, i=0):
        return get.get(key, {}).get(x, (math.nan, math.nan, 0))[i]

    meta = {r["metric"]: r["mean"] for r in rows if r["phase"] == "meta" and not r["task"]}
    specs = {r["task"]: (r["method"], int(r["mean"])) for r in rows if r["metric"] == "sft_steps"}
    names = list(dict.fromkeys(r["task"] for r in rows if r["phase"] == "sft"))  # the tasks, then MEAN
    methods = list(dict.fromkeys(r["method"] for r in rows if r["phase"] == "main"))
    lr_of = {r["method"]: r["lr"] for r in rows if r["phase"] == "main"}
    end = max((r["x"] for r in rows if r["phase"] == "main" and r["metric"] == "pass@1"), default=0)
    early = cfg.early_step
    sfx, flag = suffix(cfg.teacher), "" if cfg.teacher == "self" else f" --teacher {cfg.teacher}"
    torch_version = next((r["method"] for r in rows if r["metric"] == "torch"), "")
    L = [
        f"## Self-teacher {cfg.teacher}: {tg.TEACHERS[cfg.teacher]} (results/experiment{sfx}.csv)",
        "",
        f"Command: `python experiment.py{flag}`. distil_sampled's teacher is the oracle; grpo never reads a "
        f"teacher. Hardware: 2 shared CPU cores{', torch ' + torch_version if torch_version else ''}, "
        f"{cfg.jobs} runs in parallel x {cfg.threads} thread. Wall clock of the whole experiment: "
        f"{runs.fmt_time(meta.get('wall_clock_s', 0))} (sum of run times "
        f"{runs.fmt_time(meta.get('run_time_s', 0))}).",
        "",
        f"Seeds {cfg.seeds}; preset {cfg.preset}; {cfg.rl_steps} RL steps x {cfg.prompts} prompts x "
        f"{cfg.group} rollouts; test evaluation every {cfg.eval_every} steps; early budget = step {early}; "
        "mean ± sample std over seeds.",
        "",
    ]
    lrs = sorted({r["lr"] for r in rows if r["metric"] == "criterion"}, key=float)
    L += [
        f"### Learning-rate sweep on {cfg.sweep_task} (validation set, seed {cfg.seeds.split(',')[0]})",
        "",
        "Criterion: validation avg@8 averaged over the evaluation points after step 0.",
        "",
        "| method | " + " | ".join(f"lr {lr}" for lr in lrs) + " | chosen |",
        "|---" * (len(lrs) + 2) + "|",
    ]
    for m in methods:
        cells = [val(("sweep", cfg.sweep_task, m, lr, "criterion"), "") for lr in lrs]
        L.append(f"| {m} | " + " | ".join("-" if c != c else f"{c:.3f}" for c in cells) + f" | {lr_of[m]} |")
    L += [
        "",
        "### SFT start points (one checkpoint per task, shared by every method and seed)",
        "",
        "| task | SFT steps | pass@1 | pass@8 | avg@8 | teacher t_rew | teacher lift | threshold | noise σ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in names:

        def v(k, x=0):
            return val(("sft", t, "sft", "", k), x)

        spec, steps = specs.get(t, (t, "-"))
        L.append(
            f"| {spec} | {steps} | {v('pass@1'):.3f} | {v('pass@8'):.3f} | {v('avg@8'):.3f} | "
            f"{v('t_rew'):.3f} | {v('lift'):+.3f} | {v('threshold', ''):.3f} | {v('noise', ''):.3f} |"
        )
    for t in names:
        L += [
            "",
            f"### {specs.get(t, (t,))[0]}",
            "",
            "| method | lr | "
            + " | ".join(f"{k} @{early} | {k} @{end}" for k in METRICS)
            + " | steps to threshold (seeds) | drops > σ / pairs |",
            "|---" * (2 * len(METRICS) + 4) + "|",
        ]
        L.append(
            "| SFT | - | "
            + " | ".join(f"{val(('sft', t, 'sft', '', k), 0):.3f}" for k in METRICS for _ in (0, 1))
            + " | - | - |"
        )
        for m in methods:

            def key(k):
                return ("main", t, m, lr_of[m], k)

            cells = " | ".join(pm(val(key(k), x), val(key(k), x, 1)) for k in METRICS for x in (early, end))
            st, n = val(key("steps_to_threshold"), ""), val(key("steps_to_threshold"), "", 2)
            L.append(
                f"| {m} | {lr_of[m]} | {cells} | {'-' if st != st else int(st)} "
                f"({int(val(key('seeds_reaching'), ''))}/{n}) | "
                f"{int(val(key('drops'), ''))} / {int(val(key('drop_pairs'), ''))} |"
            )
    plot(get, names, methods, lr_of, specs, cfg)
    return "\n".join(L) + "\n"


def pyplot():
    """matplotlib, imported lazily (runs that do not plot do not pay for it), writing files only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(get, names, methods, lr_of, specs, cfg):
    """figures/exp_pass1_<task>.png (pass@1 vs RL step, mean ± std bands) and exp_passn.png."""
    plt = pyplot()
    os.makedirs(cfg.figures, exist_ok=True)
    color = {m: f"C{i}" for i, m in enumerate(methods)}
    for t in names:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for m in methods:
            c = get.get(("main", t, m, lr_of[m], "pass@1"), {})
            xs = sorted(c)
            mu, sd = [c[x][0] for x in xs], [c[x][1] for x in xs]
            ax.plot(xs, mu, marker="o", ms=3, color=color[m], label=f"{m} (lr {lr_of[m]})")
            ax.fill_between(
                xs,
                [a - b for a, b in zip(mu, sd)],
                [a + b for a, b in zip(mu, sd)],
                color=color[m],
                alpha=0.12,
            )
        ax.axhline(
            get.get(("sft", t, "sft", "", "pass@1"), {}).get(0, (math.nan,))[0],
            color="k",
            ls="--",
            lw=1,
            label="SFT",
        )
        ax.axhline(
            get.get(("sft", t, "sft", "", "threshold"), {}).get("", (math.nan,))[0],
            color="gray",
            ls=":",
            lw=1,
            label=f"threshold (SFT + {cfg.threshold_delta})",
        )
        ax.set(
            xlabel="RL step",
            ylabel="held-out greedy pass@1",
            title=f"{specs.get(t, (t,))[0]}\nmean ± std over seeds {cfg.seeds}"
            + ("" if cfg.teacher == "self" else f"; {cfg.teacher} self-teacher"),
        )
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(
            os.path.join(cfg.figures, f"exp{suffix(cfg.teacher)}_pass1_{t.replace(' ', '_')}.png"), dpi=100
        )
        plt.close(fig)
    fig, axs = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.8), squeeze=False)
    for ax, t in zip(axs[0], names):
        curves = [("SFT", get.get(("sft", t, "sft", "", "pass@N"), {}), "k")]
        curves += [(m, get.get(("main", t, m, lr_of[m], "pass@N"), {}), color[m]) for m in methods]
        for label, c, col in curves:
            xs = sorted(c)
            ax.plot(
                xs,
                [c[x][0] for x in xs],
                marker=".",
                color=col,
                ls="--" if label == "SFT" else "-",
                label=label,
            )
        ax.set(xscale="log", xlabel="N", title=t, ylabel="pass@N, test, end of RL (seed mean)")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.minorticks_off()
    axs[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(cfg.figures, f"exp{suffix(cfg.teacher)}_passn.png"), dpi=100)
    plt.close(fig)


# -----------------------------------------------------------------------------
# --premise: the teacher's advantage at the SFT student's states (train_gpt.teacher_advantage), per
# task, for every teacher: is it better than the student where DistIL trains it?

PREMISE_FIELDS = (
    "task",
    "teacher",
    "t_adv",
    "t_adv_se",
    "t_adv_n",
    "t_rew",
    "avg@8",
    "eval_s",
    "train_s",
    "seed",
    "torch",
)
PREMISE_START = "<!-- premise: written by `python experiment.py --report_only` from results/premise.csv -->"
PREMISE_END = "<!-- end of premise -->"


def premise_path(cfg, name="premise.csv"):
    return os.path.join(cfg.results, name)


def with_knob(spec, knob):
    """The task spec with one more knob=value ("" leaves it as it is): chem -> chem:feedback=verdict."""
    return spec if not knob else f"{spec},{knob}" if ":" in spec else f"{spec}:{knob}"


def measure_premise(cfg, name, spec, teacher):
    """One row of the premise CSV: t_adv ± SE of `teacher` (PREMISE_KINDS) at the student's states of
    the task's SFT checkpoint on the test split, with the teacher's own success t_rew and the
    student's avg@8. The SFT checkpoint is the same for every teacher: a _verdict teacher changes the
    feedback the evaluation's verifier writes, not the model."""
    run, (kind, context, knob) = os.path.join(cfg.out, name), PREMISE_KINDS[teacher]
    c = dataclasses.replace(
        base_config(cfg, with_knob(spec, knob), name, cfg.sft_seed),
        stage="eval",
        eval_passn=0,
        resume=False,
        context=context,
        teacher=os.path.join(run, "teacher", "sft.pt") if kind == "model" else kind,
        init_from=os.path.join(run, "sft", "sft.pt"),
        out_dir=os.path.join(run, f"premise_{teacher}"),
    )
    os.makedirs(c.out_dir, exist_ok=True)
    t0, threads = time.time(), torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    with (
        open(os.path.join(c.out_dir, "log.txt"), "w") as log,
        contextlib.redirect_stdout(log),
        restore_threads(threads),
    ):
        m = tg.run(c)["eval"]
    return {
        "task": name,
        "teacher": teacher,
        **{k: m[k] for k in PREMISE_FIELDS[2:7]},
        "eval_s": time.time() - t0,
        "train_s": 0.0,
        "seed": cfg.sft_seed,
        "torch": torch.__version__,
    }


def premise(cfg):
    """Train what is missing (the SFT checkpoints, shared with the main experiment, and the teacher
    models, `jobs` at a time), then measure every (task, teacher) not yet in premise.csv; each row is
    written as soon as it is measured, so a rerun continues."""
    specs, path, teachers = (
        task_specs(cfg, sweep=False),
        premise_path(cfg, cfg.premise_csv),
        cfg.premise_teachers.split(","),
    )
    if set(teachers) - set(PREMISE_KINDS):
        raise SystemExit(
            f"error: --premise_teachers {cfg.premise_teachers!r}: choose among {', '.join(PREMISE_KINDS)}"
        )
    rows = read_premise(path) if os.path.exists(path) else []
    todo = [s for s in specs if {(s[0], t) for t in teachers} - {(r["task"], r["teacher"]) for r in rows}]
    jobs = [(("sft", n), [], lambda res, j=sft_job(cfg, n, s, k): j) for n, s, k in todo]
    if any(PREMISE_KINDS[t][0] == "model" for t in teachers):
        for n, s, k in todo:
            job = sft_job(
                cfg, n, s, k * cfg.teacher_scale, "teacher", eval_passn=0, preset=cfg.teacher_preset
            )
            jobs.append((("teacher", n), [], lambda res, j=job: j))
    results = run_all(cfg, {"ran": 0}, jobs)
    for name, spec, _ in todo:
        for t in (t for t in teachers if (name, t) not in {(r["task"], r["teacher"]) for r in rows}):
            train_s = results["teacher", name]["wall_s"] if t == "model" else 0.0  # counted once
            rows.append(measure_premise(cfg, name, spec, t) | {"train_s": train_s})
            print(
                f"premise {name} {t}: t_adv {rows[-1]['t_adv']:+.3f} ± {rows[-1]['t_adv_se']:.3f}", flush=True
            )
            os.makedirs(cfg.results, exist_ok=True)
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=PREMISE_FIELDS)
                w.writeheader()
                w.writerows(
                    {k: f"{v:.6g}" if isinstance(v, float) else v for k, v in r.items()} for r in rows
                )


def read_premise(path):
    with open(path) as f:
        return [
            {k: v if k in ("task", "teacher", "torch") else float(v) for k, v in r.items()}
            for r in csv.DictReader(f)
        ]


def premise_table(rows, cfg):
    """The README's premise block from premise.csv's rows (none yet: says how to measure them)."""
    if not rows:
        return "\n".join(
            [PREMISE_START, "", "Not measured yet: `python experiment.py --premise`.", "", PREMISE_END]
        )
    names = {
        "self": "live self",
        "frozen": "frozen (the SFT model)",
        "oracle": "oracle",
        "model": f"teacher model ({cfg.teacher_preset}, {cfg.teacher_scale}x the SFT steps)",
        "model_plain": "teacher model, the student's context",
    }
    order = list(dict.fromkeys(r["task"] for r in rows))
    rows = sorted(rows, key=lambda r: (order.index(r["task"]), list(PREMISE_KINDS).index(r["teacher"])))
    total = sum(r["eval_s"] + r["train_s"] for r in rows)
    L = [
        PREMISE_START,
        "",
        f"`python experiment.py --premise`: t_adv at the SFT student's states on {cfg.eval_n} test "
        f"problems (one cut per problem with a teacher context, {tg.Config.adv_samples} completions each "
        "from teacher "
        f"and student), seed {int(rows[0]['seed'])}; 2 CPU cores, torch {rows[0]['torch']}, one "
        "thread; "
        f"wall time {runs.fmt_time(total)} (the teacher models' training and the measurements, not the SFT "
        "runs).",
        "",
        "| task | teacher | t_adv ± SE | cuts | teacher's t_rew | student's avg@8 | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        time_s = r["eval_s"] + r["train_s"]
        L.append(
            f"| {r['task']} | {names.get(r['teacher'], r['teacher'])} | {r['t_adv']:+.3f} ± "
            f"{r['t_adv_se']:.3f} | {int(r['t_adv_n'])} | "
            f"{r['t_rew']:.3f} | {r['avg@8']:.3f} | {runs.fmt_time(time_s)} |"
        )
    return "\n".join(L + ["", PREMISE_END])


FEEDBACK_COLUMNS = (
    ("oracle", "oracle"),
    ("self_feedback", "feedback (fix named)"),
    ("self_verdict", "feedback (verdict only)"),
    ("self", "peer"),
    ("self_both", "feedback + peer"),
)


def feedback_table(rows, cfg, ablations=None):
    """results/feedback.md from FEEDBACK_CSV's rows: per task, t_adv ± SE (cuts) of the oracle and of
    the live self-teacher at the SFT checkpoint with each context, and whether the feedback-reading
    self-teacher meets the bar (t_adv >= half the oracle's, SE <= 0.05); then, from
    `ablations` ({sft_target: rows of SFT_ABLATIONS' file}), the same teachers at those checkpoints."""
    by = {(r["task"], r["teacher"]): r for r in rows}
    names = list(dict.fromkeys(r["task"] for r in rows))
    specs = {n: (s, k) for n, s, k in task_specs(cfg, sweep=False)} if rows else {}
    cols = [(t, label) for t, label in FEEDBACK_COLUMNS if any((n, t) in by for n in names)]
    L = [
        "# Feedback a small teacher can read: the self-teacher's advantage by context",
        "",
        f"Written by `python experiment.py --report_only` from results/{FEEDBACK_CSV}, which "
        f"`python experiment.py --premise --premise_csv {FEEDBACK_CSV} --premise_teachers "
        f"{','.join(t for t, _ in cols)} --readme ''` measures. t_adv ± SE (cuts) at the SFT student's "
        "states on "
        f"{cfg.eval_n} test problems ({tg.Config.adv_samples} completions per cut from teacher and "
        "student), the "
        "live self-teacher = the SFT checkpoint reading the context; seed "
        f"{int(rows[0]['seed']) if rows else '-'}, "
        "one CPU thread. *fix named*: tasks.py's feedback=fix (the default; on countdown, listprog and "
        "chem a fix valid after any prefix of the attempt, and SFT examples of the teacher at cuts of "
        "attempts, sft_target=recovery), *verdict only*: the same checkpoint with feedback=verdict. "
        "Bar: the feedback-reading teacher's t_adv >= half the oracle's, SE <= 0.05.",
        "",
        "| task | SFT steps | " + " | ".join(label for _, label in cols) + " | bar met |",
        "|---|---|" + "---|" * len(cols) + "---|",
    ]
    for n in names:
        cells = [
            f"{by[n, t]['t_adv']:+.3f} ± {by[n, t]['t_adv_se']:.3f} ({int(by[n, t]['t_adv_n'])})"
            if (n, t) in by
            else "-"
            for t, _ in cols
        ]
        fb, orc = by.get((n, "self_feedback")), by.get((n, "oracle"))
        met = (
            "-"
            if fb is None or orc is None
            else "yes"
            if (fb["t_adv"] >= orc["t_adv"] / 2 and fb["t_adv_se"] <= 0.05)
            else "no"
        )
        L.append(f"| {n} | {specs.get(n, ('', '-'))[1]} | " + " | ".join(cells) + f" | {met} |")
    L += [
        "",
        "The teachers' own success from their contexts (t_rew) and the student's avg@8:",
        "",
        "| task | student avg@8 | " + " | ".join(f"t_rew {label}" for _, label in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for n in names:
        avg = next(r["avg@8"] for r in rows if r["task"] == n)
        L.append(
            f"| {n} | {avg:.3f} | "
            + " | ".join(f"{by[n, t]['t_rew']:.3f}" if (n, t) in by else "-" for t, _ in cols)
            + " |"
        )
    L += [
        "",
        f"Wall time of the measurements: {runs.fmt_time(sum(r['eval_s'] for r in rows))} (not the SFT runs).",
    ]
    L += [f"{t}: {FEEDBACK_NOTES[t]}." for t in names if t in FEEDBACK_NOTES]
    if ablations:
        abl = [
            t for t, _ in FEEDBACK_COLUMNS if any(r["teacher"] == t for rs in ablations.values() for r in rs)
        ]
        L += [
            "",
            "SFT targets of the teacher-format examples (tasks.py sft_target; each other target "
            f"its own checkpoint, `--tasks '<spec>,sft_target=T' --out <another folder> --premise_csv "
            f"{'|'.join(SFT_ABLATIONS.values())}`):",
            "",
            "| task | sft_target | " + " | ".join(dict(FEEDBACK_COLUMNS)[t] for t in abl) + " |",
            "|---|---|" + "---|" * len(abl),
        ]
        got = {"recovery (the default)": by} | {
            k: {(r["task"], r["teacher"]): r for r in rs} for k, rs in ablations.items()
        }
        for n in dict.fromkeys(r["task"] for rs in ablations.values() for r in rs):
            for target, g in got.items():
                L.append(
                    f"| {n} | {target} | "
                    + " | ".join(
                        f"{g[n, t]['t_adv']:+.3f} ± {g[n, t]['t_adv_se']:.3f} ({int(g[n, t]['t_adv_n'])})"
                        if (n, t) in g
                        else "-"
                        for t in abl
                    )
                    + " |"
                )
    return "\n".join(L) + "\n"


def replace_block(path, start, end, block):
    """Rewrite the text between the markers start and end of the file `path` (both kept)."""
    text = open(path).read()
    if start not in text or end not in text:
        raise SystemExit(f"error: {path} has no block {start} ... {end}")
    head, rest = text.split(start, 1)
    with open(path, "w") as f:
        f.write(head + block + rest.split(end, 1)[1])


# -----------------------------------------------------------------------------
# main


def csv_path(cfg, teacher):
    return os.path.join(cfg.results, f"experiment{suffix(teacher)}.csv")


SUMMARY_START = "<!-- results summary: written by `python experiment.py --report_only` from results/*.csv -->"
SUMMARY_END = "<!-- end of results summary -->"


def summary(by_teacher, cfg):
    """The README's summary block: the mean over tasks with the live teacher, pass@1 by teacher, a figure."""
    get = defaultdict(dict)
    for teacher, rows in by_teacher.items():
        for r in rows:
            get[teacher, r["phase"], r["task"], r["method"], r["metric"]][r["x"]] = (r["mean"], r["std"])
    live, end, early = by_teacher["self"], cfg.rl_steps, cfg.early_step
    methods = list(dict.fromkeys(r["method"] for r in live if r["phase"] == "main"))
    lr_of = {r["method"]: r["lr"] for r in live if r["phase"] == "main"}

    def cell(t, m, k, x):
        return pm(*get.get((t, "main", MEAN, m, k), {}).get(x, (math.nan, math.nan)))

    def sft(k, x=0):
        return get[("self", "sft", MEAN, "sft", k)].get(x, (math.nan,))[0]

    n = max(get[("self", "sft", MEAN, "sft", "pass@N")])
    names = [t for t in dict.fromkeys(r["task"] for r in live if r["phase"] == "sft") if t != MEAN]
    L = [
        SUMMARY_START,
        "",
        f"Mean over the {len(names)} tasks (per seed, then mean ± std over seeds {cfg.seeds}; "
        "`python experiment.py`); drops summed over the tasks:",
        "",
        f"| method | lr | pass@1 @{early} | pass@1 @{end} | pass@8 @{end} | avg@8 @{end} | pass@{n} @{end} "
        "| drops > σ |",
        "|---|---|---|---|---|---|---|---|",
        f"| SFT start | - | {sft('pass@1'):.3f} | {sft('pass@1'):.3f} | {sft('pass@8'):.3f} | "
        f"{sft('avg@8'):.3f} | "
        f"{sft('pass@N', n):.3f} | - |",
    ]
    for m in methods:

        def drops(k):
            return sum(int(get[("self", "main", t, m, k)][""][0]) for t in names)

        L.append(
            f"| {m}{' (oracle teacher)' if m in ORACLE_METHODS else ''} | {lr_of[m]} | "
            f"{cell('self', m, 'pass@1', early)} | "
            f"{cell('self', m, 'pass@1', end)} | {cell('self', m, 'pass@8', end)} | "
            f"{cell('self', m, 'avg@8', end)} | "
            f"{cell('self', m, 'pass@N', n)} | {drops('drops')} / {drops('drop_pairs')} |"
        )
    others = [t for t in tg.SELF_TEACHERS if t in by_teacher]
    L += [
        "",
        f"Greedy pass@1 at step {end}, mean of tasks, by self-teacher (`--teacher`; "
        f"{', '.join(TEACHERLESS + ORACLE_METHODS)} never read it):",
        "",
        "| method | " + " | ".join(others) + " |",
        "|---" * (len(others) + 1) + "|",
    ]
    for m in methods:
        L.append(f"| {m} | " + " | ".join(cell(t, m, "pass@1", end) for t in others) + " |")
    fig = os.path.relpath(
        os.path.join(cfg.figures, "exp_pass1_mean_of_tasks.png"), os.path.dirname(os.path.abspath(cfg.readme))
    )
    L += ["", f"![pass@1 against RL steps, mean of tasks]({fig})", "", SUMMARY_END]
    return "\n".join(L)


def write_reports(cfg):
    """results/README.md (every table, from every results/experiment*.csv) and the figures; the
    summary block of --readme. Returns the markdown of results/README.md."""
    by_teacher = {t: read_csv(csv_path(cfg, t)) for t in tg.SELF_TEACHERS if os.path.exists(csv_path(cfg, t))}
    parts = [report(rows, dataclasses.replace(cfg, teacher=t)) for t, rows in by_teacher.items()]
    premise_rows = read_premise(premise_path(cfg)) if os.path.exists(premise_path(cfg)) else []
    if premise_rows:
        parts.append(
            "## The premise: the teacher's advantage at the student's states (results/premise.csv)\n\n"
            + premise_table(premise_rows, cfg)
            + "\n"
        )
    if os.path.exists(premise_path(cfg, FEEDBACK_CSV)):
        ablations = {
            k: read_premise(premise_path(cfg, f))
            for k, f in SFT_ABLATIONS.items()
            if os.path.exists(premise_path(cfg, f))
        }
        table = feedback_table(read_premise(premise_path(cfg, FEEDBACK_CSV)), cfg, ablations)
        with open(os.path.join(cfg.results, "feedback.md"), "w") as f:
            f.write(table)
        parts.append("#" + table)  # a section of results/README.md
    md = (
        "# The paper's experiment in miniature: every table (written by `python experiment.py --report_only` "
        "from the CSVs in this folder)\n\n" + "\n".join(parts)
    )
    with open(os.path.join(cfg.results, "README.md"), "w") as f:
        f.write(md)
    if cfg.readme and "self" in by_teacher:
        replace_block(cfg.readme, SUMMARY_START, SUMMARY_END, summary(by_teacher, cfg))
    premise_doc = os.path.join(cfg.results, "premise.md")  # prose by hand around the generated table
    if os.path.exists(premise_doc):
        replace_block(premise_doc, PREMISE_START, PREMISE_END, premise_table(premise_rows, cfg))
    return md


def plot_run(path):
    """<log>.png from a train_gpt.py JSONL log: training (reward, teacher signal, recoveries), held-out
    metrics, teacher vs student (nats per token)."""
    rows, plt = runs.read_jsonl(path), pyplot()
    fig, axs = plt.subplots(1, 3, figsize=(15, 4))
    evals = [
        k
        for k in next((r for r in rows if "pass@1" in r), {})
        if k.split("@")[0] in ("pass", "avg", "maj") or k == "t_rew"
    ]
    for ax, name, keys in zip(
        axs,
        ("training", "held-out evaluation", "teacher vs student (nats per token)"),
        (("reward", "signal", "recov"), evals, ("H×", "KL", "ent")),
    ):
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if k in r]
            ax.plot(*zip(*pts), marker="o" if keys is evals else None, label=k)
        ax.set(title=name, xlabel="RL step")
        ax.legend()
    fig.suptitle(path)
    fig.tight_layout()
    fig.savefig(path.rsplit(".", 1)[0] + ".png", dpi=100)
    plt.close(fig)


def run_table(paths):
    """A markdown table of train_gpt.py RL logs, one row per log (named by its file): greedy pass@1 at
    every evaluation, avg@n at the first and last, and the means of the step metrics ent, H× and len
    over the first 5 and the last 10 steps."""
    head, lines = None, []
    for path in paths:
        rows = runs.read_jsonl(path)
        evals, steps = [r for r in rows if "pass@1" in r], [r for r in rows if "loss" in r]
        if not (evals and steps):
            raise SystemExit(
                f"error: --table {path}: no evaluation or step rows (a train_gpt.py RL log is accepted)"
            )
        avg = next(k for k in evals[0] if k.startswith("avg@"))

        def mean(k, rs):
            return (
                statistics.fmean(r[k] for r in rs)
                if all(math.isfinite(r.get(k, math.nan)) for r in rs)
                else math.nan
            )

        def span(k):
            return " → ".join(
                "–" if math.isnan(v) else f"{v:.2f}" for v in (mean(k, steps[:5]), mean(k, steps[-10:]))
            )

        head = head or (
            f"| run | greedy pass@1 at step {' → '.join(str(r['step']) for r in evals)} | {avg} | ent | H× "
            "| len |",
            "| --- | --- | --- | --- | --- | --- |",
        )
        name, pass1 = (
            os.path.basename(path).rsplit(".", 1)[0],
            " → ".join(f"{r['pass@1']:.3f}" for r in evals),
        )
        lines.append(
            f"| `{name}` | {pass1} | {evals[0][avg]:.3f} → {evals[-1][avg]:.3f} | {span('ent')} | "
            f"{span('H×')} | {span('len')} |"
        )
    return "\n".join([*head, *lines])


def main(cfg):
    """Run (or resume) everything, aggregate, write the CSV, results/README.md, the summary, the figures."""
    if cfg.plot:
        return plot_run(cfg.plot)
    if cfg.table:
        return print(run_table([p for g in cfg.table.split(",") for p in sorted(glob.glob(g)) or [g]]))
    sfx = suffix(cfg.teacher)
    if cfg.premise and not cfg.report_only:
        premise(cfg)
    elif not cfg.report_only:
        specs = task_specs(cfg)
        print(
            f"experiment: {len(specs)} tasks, methods {cfg.methods}, seeds {cfg.seeds}, sweep {cfg.lrs} on "
            f"{cfg.sweep_task} | {cfg.jobs} runs in parallel x {cfg.threads} thread(s) | raw runs in "
            f"{cfg.out}",
            flush=True,
        )
        os.makedirs(cfg.out, exist_ok=True)
        clock = os.path.join(cfg.out, f"wall_clock{sfx}.json")
        spent = json.load(open(clock))["s"] if os.path.exists(clock) else 0.0
        t0 = time.time()
        stats = {"ran": 0}
        try:
            results = run_all(cfg, stats)
        except KeyboardInterrupt:
            print(
                "interrupted: finished runs are kept and unfinished ones saved a checkpoint; "
                "rerun the same command to continue",
                flush=True,
            )
            raise SystemExit(130) from None
        finally:
            if stats["ran"]:  # the wall clock of the experiment: invocations that trained something
                with open(clock, "w") as f:
                    json.dump({"s": spent + time.time() - t0}, f)
        spent += (time.time() - t0) if stats["ran"] else 0.0
        sfts = [results["sft", n] for n, _, _ in specs]
        records = [r for k, r in results.items() if k[0] in ("sweep", "main")]
        mean_records, mean_sft = mean_of_tasks([r for r in records if r["phase"] == "main"], sfts)
        rows = aggregate(records + mean_records, sfts + [mean_sft], cfg.threshold_delta)
        rows += [
            {
                "phase": "meta",
                "task": n,
                "method": spec,
                "lr": "",
                "metric": "sft_steps",
                "x": "",
                "mean": float(steps),
                "std": 0.0,
                "n": 1,
            }
            for n, spec, steps in specs
        ]
        rows.append(
            {
                "phase": "meta",
                "task": "",
                "method": "",
                "lr": "",
                "metric": "wall_clock_s",
                "x": "",
                "mean": spent,
                "std": 0.0,
                "n": 1,
            }
        )
        rows.append(
            {
                "phase": "meta",
                "task": "",
                "method": "",
                "lr": "",
                "metric": "run_time_s",
                "x": "",
                "mean": sum(r["wall_s"] for r in results.values()),
                "std": 0.0,
                "n": len(results),
            }
        )
        rows.append(
            {
                "phase": "meta",
                "task": "",
                "method": torch.__version__,
                "lr": "",
                "metric": "torch",
                "x": "",
                "mean": 0.0,
                "std": 0.0,
                "n": 1,
            }
        )
        os.makedirs(cfg.results, exist_ok=True)
        write_csv(csv_path(cfg, cfg.teacher), rows)
    md = write_reports(cfg)  # the report reads exactly what is committed
    print(md)
    if cfg.premise:
        print(
            f"wrote {premise_path(cfg, cfg.premise_csv)}, {cfg.results}/README.md and the premise block "
            f"of {cfg.results}/premise.md (if it exists)"
        )
        return read_premise(premise_path(cfg, cfg.premise_csv))
    print(
        f"wrote {csv_path(cfg, cfg.teacher)}, {cfg.results}/README.md, {cfg.figures}/exp{sfx}_*.png"
        + (f", the summary in {cfg.readme}" if cfg.readme else "")
    )
    return read_csv(csv_path(cfg, cfg.teacher))


if __name__ == "__main__":
    main(parse_args())
