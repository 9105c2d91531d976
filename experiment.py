"""
experiment.py — the paper's experiment in miniature: DistIL taught at the student's own states by an
expert (the task's oracle) and by the paper's teacher (the model reading the verifier's feedback),
against GRPO's 0/1 reward and offline behaviour cloning of the same teacher, on every task of tasks.py.
Claim tested (arXiv 2606.05152): on-policy forward CE toward a feedback-conditioned teacher,
L(θ) = E_{y~π_θ}[Σ_t H×(sg π_T(·|x, f, y_<t), π_θ(·|x, y_<t))], learns faster than GRPO and more
than cloning the teacher's answers, per step and per second.

Protocol (fixed before any result; the numbers are Config's defaults):
 1. Start points: one SFT checkpoint per task (seed sft_seed, START's steps and teacher fraction),
    shared by every run; its greedy test pass@1 should lie in [0.10, 0.60] (results/README.md marks
    it), and its feedback-reading teacher's t_adv reach half the oracle's (results/feedback.md).
 2. Arms method@teacher. Teachers (ARM_TEACHERS): oracle, the task's expert; feedback, the SFT
    model reading the verifier's feedback (the paper's teacher, live or frozen); peer, the same
    reading a successful sibling. Primary arms `arms` (grpo reads none) on every seed, secondary
    arms `secondary` on secondary_seeds. An arm's t_adv at step 0 is its teacher's advantage at
    the student's states.
 3. Sweep on sweep_task's validation split (val_n training problems never trained on; first seed):
    every lr of `lrs` x every setting of the arm (arm_settings: --states all|support for a method
    reading the teacher at the student's states, a live or frozen self-teacher, offline cloning
    every answer of a sampled self-teacher or only the verified ones), scored by validation
    avg@8 averaged over the evaluations after step 0 (ties: the smaller lr); then fixed on every task.
 4. Main runs: every task x arm x seed, rl_steps steps, test evaluations every eval_every steps
    (greedy pass@1, avg@8 and pass@8 of 8 samples, the teacher's t_rew and t_adv), pass@N at the end.
 5. Reported against RL steps and against training seconds (evaluations excluded): mean ± std over
    seeds; steps and seconds to GRPO's final pass@1 (the first evaluation at which the seed-mean
    curve reaches it); drops (consecutive evaluations falling by more than the binomial σ of the
    SFT's pass@1); mean rollout length and entropy. Verdict per task: an expert-taught distil arm
    reaches GRPO's final pass@1 within a third of the steps and ends above grpo and above offline
    with the same teacher.
 6. Each finished run is committed as results/runs/<task>/<run>.json: a rerun, also on a fresh
    machine, skips it and retrains an SFT checkpoint only if a run still needs it (SFT is seeded;
    a retrained checkpoint that evaluates otherwise than the committed one stops the task's runs).
    Order: task by task, the sweep task (and its sweep) first.
Simplifications: tiny preset from scratch; one sweep task and seed; one SFT per task.

Run (CPU; two runs in parallel with one thread each):
    python experiment.py                    # everything; rerun the same command to resume
    python experiment.py --tasks mult       # one task: its SFT, the sweep, its runs
    python experiment.py --report_only      # the CSV, results/README.md, the README summary, figures
    python experiment.py --main_lr 1e-4 --tasks '<one of TASK_SPECS>'   # all arms at one rate
    python experiment.py --premise          # t_adv of every teacher at the SFT students' states
    python experiment.py --plot out/rl_distil.jsonl   # the curves of one train_gpt.py run
    python experiment.py --table 'results/trainer_checks/dagger_*.jsonl'   # a markdown table of run logs
Writes runs/experiment/<task>/<run>/ (checkpoints, logs; git-ignored), results/runs/<task>/<run>.json
(each finished run), results/experiment.csv (every number, from those), results/README.md (the
tables), figures/exp_<task>.png.
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

# an arm is method@teacher (a method reading no teacher, grpo, alone); what each teacher sets in train_gpt
ARM_TEACHERS = {
    "oracle": {"teacher": "oracle"},  # the task's programmatic expert
    "feedback": {"context": "feedback"},  # the SFT model reading the verifier's feedback (the paper's)
    "peer": {"context": "peer"},  # the SFT model reading a successful sibling rollout
}
ARMS = "grpo,offline@oracle,distil@oracle,offline@feedback,distil@feedback"
SECONDARY = "distil_token@oracle,distil_token@feedback,sdpo@feedback,opsd@feedback,distil@peer"
METRICS = ("pass@1", "avg@8", "pass@8")  # the tables' metrics (pass@1 greedy; 8 samples for the rest)
# what the CSV keeps at every evaluation step: the student's metrics, the teacher's success and
# advantage at the student's states, and the training seconds so far (evaluations excluded)
CURVES = METRICS + ("t_rew", "t_adv", "train_s")
TASK_SPECS = (
    "mult:digits_a=2,digits_b=1;countdown:n_numbers=3,max_number=10,max_target=60;"
    "listprog:max_steps=2,n_examples=2,min_len=3,max_len=5,split=examples;chem"
)
MEAN = "mean of tasks"
# each task's SFT start point (protocol item 1). chem: at 1000 steps and sft_teacher_frac 0.8
# its feedback-reading teacher could not copy the fix (t_adv +0.09, the oracle's +0.63; results/feedback.md)
START = {
    name: {"sft_steps": steps, "sft_teacher_frac": frac}
    for name, steps, frac in (
        ("mult", 500, 0.8),
        ("countdown", 2000, 0.8),
        ("listprog", 2000, 0.8),
        ("chem", 1500, 0.9),
    )
}
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
# the same measured at checkpoints SFT'd at other tasks.py knobs: {what the checkpoint was: its CSV}
FEEDBACK_ABLATIONS = {
    "feedback=full, half the attempts wander (today's code, --tasks '<spec>,feedback=full')": (
        "premise_feedback_full_wander.csv"
    ),
    "feedback=full, corrupted attempts only (commit beea772)": "premise_feedback_full.csv",
    "the former start point: 1000 SFT steps, sft_teacher_frac 0.8 (its runs: results/archive/chem_sft1000)": (
        "premise_feedback_chem1000.csv"
    ),
    "2000 SFT steps, sft_teacher_frac 0.8 (the student's pass@1 0.844, outside the protocol's range)": (
        "premise_feedback_chem2000.csv"
    ),
    "2000 SFT steps, sft_teacher_frac 0.9 (the student's pass@1 0.758, outside the protocol's range)": (
        "premise_feedback_chem_frac09.csv"
    ),
    "split=program, the default (no test program is trained on)": ("premise_feedback_listprog_program.csv"),
}
FEEDBACK_DEFAULT = "feedback=fix, half the attempts wander (today)"  # the label of FEEDBACK_CSV's rows
# rows of FEEDBACK_CSV measured at other knobs than today's defaults (each names how)
FEEDBACK_NOTES = {
    "mult": "its row comes from an SFT run with sft_teacher_frac 0.5 (today's default is 0.8)",
    "chem": "its start point (START) is 1500 SFT steps at sft_teacher_frac 0.9, where the feedback-reading "
    "teacher copies the fix; the student's pass@1 there is 0.625, just above the protocol's range (its "
    "row was measured with two threads)",
}


@dataclass
class Config:
    # what to run
    tasks: str = TASK_SPECS  # ';'-separated train_gpt.py --task specs (name:knob=value,...)
    sft_steps: str = ""  # SFT optimizer steps: one value, or one per task ("" = each task's START)
    arms: str = ARMS  # the primary arms: method@teacher (teachers: ARM_TEACHERS), grpo alone
    secondary: str = SECONDARY  # more arms, run on secondary_seeds only ("" = none)
    seeds: str = "1,2,3"  # RL seeds of the primary arms' main runs (the sweep runs the first)
    secondary_seeds: str = "1"  # RL seeds of the secondary arms' main runs
    lrs: str = "3e-4,1e-3"  # learning-rate grid of the sweep (AdamW, constant)
    # a study beside the protocol: every main run of --tasks at this rate, each arm at the setting the
    # committed sweep chose (0 = the protocol: the sweep's rate); files main_<arm>_lr<rate>_s<seed>.json
    main_lr: float = 0.0
    sweep_task: str = "mult"  # the task (a name in --tasks) whose validation set picks the rates
    val_n: int = 128  # validation problems of the sweep task: distinct train problems, never trained on
    # budgets shared by every run (train_gpt.py fields)
    preset: str = "tiny"  # model size
    sft_batch: int = 32  # SFT sequences per step
    sft_teacher_frac: str = ""  # share of SFT examples in teacher format, given as sft_steps is
    n_train: int = 30000  # training problems drawn per task (enough that listprog cannot be memorised)
    sft_seed: int = 1337  # seed of the SFT runs
    data_seed: int = 1337  # seed of the problem lists (train, validation, test)
    rl_steps: int = 300  # RL optimizer steps per run
    prompts: int = 8  # prompts per RL step
    group: int = 8  # rollouts per prompt
    eval_every: int = 25  # RL steps between evaluations (and checkpoints)
    early_step: int = 100  # the early-budget column: an evaluation step
    eval_n: int = 128  # test problems (distinct ones first, then repeats: tasks.Task.generate)
    passn_samples: int = 16  # samples per test problem for the final pass@N curve
    # execution and output
    jobs: int = 2  # runs in parallel (processes)
    threads: int = 1  # torch threads per run
    out: str = "runs/experiment"  # checkpoints and logs of the runs (git-ignored)
    results: str = "results"  # runs/<task>/<run>.json (committed), experiment.csv, README.md
    figures: str = "figures"  # exp_<task>.png and exp_passn.png
    readme: str = "README.md"  # the file whose results summary block --report_only rewrites ("" = none)
    report_only: bool = False  # rebuild the CSV, results/README.md, the summary, figures from results/runs
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


def arm_list(text, flag="--arms"):
    """The arms of a comma-separated list; exits naming a bad one and what is accepted."""
    arms = [a.strip() for a in text.split(",") if a.strip()]
    for a in arms:
        method, at, teacher = a.partition("@")
        reads = tg.METHODS.get(method, "?")
        if reads == "?" or (reads is None) == bool(at) or (at and teacher not in ARM_TEACHERS):
            raise SystemExit(
                f"error: {flag} {a!r}: write method@teacher (methods {', '.join(tg.METHODS)}; teachers "
                f"{', '.join(ARM_TEACHERS)}), or a method that reads no teacher alone (grpo)"
            )
    return arms


def arm_settings(arm):
    """What the sweep tries for an arm besides the rate, as [(tag, train_gpt fields)]: for a method
    reading the teacher at the student's states, --states all|support (support: costs only where the
    oracle's support holds); a live or a frozen self-teacher; for offline with a self-teacher,
    every answer of it or the verified ones (--answers); else one setting (tag "")."""
    method, _, teacher = arm.partition("@")
    fields = {"method": method, **ARM_TEACHERS.get(teacher, {})}
    at_states = tg.METHODS[method] in ("logprobs", "samples")
    if teacher == "oracle":
        return [(s, fields | {"states": s}) for s in ("all", "support")] if at_states else [("", fields)]
    if teacher not in ("feedback", "peer"):
        return [("", fields)]
    live = [(t, fields | {"teacher": t}) for t in ("self", "frozen")]
    if at_states:  # costs on every state, or on the oracle's support only
        return live + [(f"{t}+support", f | {"states": "support"}) for t, f in live]
    # offline: a sampled teacher errs; clone every answer, or the verified ones only
    return live + [(f"{t}+verified", f | {"answers": "verified"}) for t, f in live]


def label(arm, tag):
    """An arm with its setting, as tables print it: distil@oracle[support]."""
    return f"{arm}[{tag}]" if tag else arm


def per_task(cfg, field, names, cast):
    """The values of a start-point field (sft_steps, sft_teacher_frac) for the tasks `names`: one for
    all, one per task, or "" (each task's START)."""
    raw = getattr(cfg, field)
    if not raw:
        return [START[n][field] for n in names]
    try:
        values = [cast(v) for v in raw.split(",")]
    except ValueError:
        raise SystemExit(f"error: --{field} {raw!r}: one number, or one per task") from None
    if len(values) not in (1, len(names)):
        raise SystemExit(f"error: --{field} has {len(values)} values for {len(names)} tasks")
    return values * len(names) if len(values) == 1 else values


def task_specs(cfg, sweep=True):
    """[(name, spec, sft_steps)] from --tasks and --sft_steps; exits naming a bad value (sweep=False:
    the sweep task need not be among them, as for --premise on a subset of the tasks)."""
    specs = [s.strip() for s in cfg.tasks.split(";") if s.strip()]
    try:
        names = [tasks.make_task(s).name for s in specs]
    except ValueError as e:
        raise SystemExit(f"error: --tasks: {e}") from None
    steps = per_task(cfg, "sft_steps", names, int)
    if sweep and cfg.sweep_task not in names:
        raise SystemExit(
            f"error: --sweep_task {cfg.sweep_task!r} is not one of the tasks: {', '.join(names)}"
        )
    arm_list(cfg.arms), arm_list(cfg.secondary, "--secondary")
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


def select(records):
    """The sweep record with the highest criterion among one arm's (ties: the smaller rate, then the
    setting first in arm_settings' order, given as record["order"])."""
    return max(sorted(records, key=lambda r: (r["lr"], r.get("order", 0))), key=criterion)


def mean_of_tasks(records, sfts):
    """Pseudo-records averaged over tasks per (arm label, seed), and the matching pseudo-SFT (its noise
    is the standard error of a mean of independent task estimates)."""
    by = defaultdict(list)
    for r in records:
        by[r["method"], r["seed"]].append(r)
    out = []
    for rs in by.values():
        if len(rs) < len(sfts):
            continue  # an arm/seed missing on some task has no average
        evals = [
            {k: statistics.fmean(r["evals"][i][k] for r in rs) for k in rs[0]["evals"][i]}
            for i in range(len(rs[0]["evals"]))
        ]
        passn = {n: statistics.fmean(r["passn"][n] for r in rs) for n in rs[0]["passn"]}
        run_means = {k: statistics.fmean(r[k] for r in rs) for k in ("len", "ent") if k in rs[0]}
        out.append(rs[0] | {"task": MEAN, "evals": evals, "passn": passn} | run_means)
    keys = list(sfts[0]["eval"])
    sft = {
        "task": MEAN,
        "eval": {k: statistics.fmean(s["eval"][k] for s in sfts) for k in keys},
        "passn": {n: statistics.fmean(s["passn"][n] for s in sfts) for n in sfts[0]["passn"]},
        "noise": math.sqrt(sum(s["noise"] ** 2 for s in sfts)) / len(sfts),
    }
    return out, sft


def seed_mean(rs, key):
    """The seed-mean curve of one evaluation key over a group's records."""
    return [statistics.fmean(r["evals"][i][key] for r in rs) for i in range(len(rs[0]["evals"]))]


def aggregate(records, sfts):
    """CSV rows (phase, task, method, lr, metric, x, mean, std, n) from finished runs (method: the arm's
    label): every curve at every evaluation step, pass@N at the end, and the summaries (the sweep's
    criterion; steps and training seconds to GRPO's final seed-mean pass@1 on the task, if that is
    above the SFT start; drops and pairs; run means of length and entropy)."""
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
        add("sft", s["task"], "sft", "", "noise", "", [s["noise"]])
    groups = defaultdict(list)
    for r in records:
        groups[r["phase"], r["task"], r["method"], r["lr"]].append(r)
    grpo_end = {
        (phase, task): seed_mean(rs, "pass@1")[-1]
        for (phase, task, m, _), rs in groups.items()
        if m == "grpo" and phase != "sweep"
    }
    for (phase, task, method, lr), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        steps = [e["step"] for e in rs[0]["evals"]]
        for k in CURVES:
            for i, s in enumerate(steps):
                add(phase, task, method, lr, k, s, [r["evals"][i].get(k, math.nan) for r in rs])
        if phase == "sweep":
            add(phase, task, method, lr, "criterion", "", [criterion(r) for r in rs])
            continue
        for n in rs[0]["passn"]:
            add(phase, task, method, lr, "pass@N", n, [r["passn"][n] for r in rs])
        for k in ("len", "ent"):
            add(phase, task, method, lr, k, "", [r.get(k, math.nan) for r in rs])
        n, noise = len(rs), sft_of[task]["noise"]  # the summaries below are one number over all seeds
        target = grpo_end.get((phase, task), math.inf)  # GRPO's final pass@1, if it rose above the start
        target = target if target > sft_of[task]["eval"]["pass@1"] else math.inf
        hit = steps_to_threshold(steps, seed_mean(rs, "pass@1"), target)
        secs = math.nan if hit is None else seed_mean(rs, "train_s")[steps.index(hit)]
        add(phase, task, method, lr, "steps_to_grpo", "", [math.nan if hit is None else float(hit)], n)
        add(phase, task, method, lr, "seconds_to_grpo", "", [secs], n)
        curves = [[e["pass@1"] for e in r["evals"]] for r in rs]
        add(phase, task, method, lr, "drops", "", [sum(count_drops(c, noise) for c in curves)], n)
        add(phase, task, method, lr, "drop_pairs", "", [sum(len(c) - 1 for c in curves)], n)
    return rows


# -----------------------------------------------------------------------------
# Runs: one SFT per task, the sweep, the main runs; a result file marks a finished run

PLACES = ("out_dir", "init_from")  # where a run lives, not what it is: a committed result holds anywhere


def base_config(cfg, spec, name, seed):
    """The train_gpt.py Config every run of a task shares. The RL fields an arm sets (method, teacher,
    states, rl_lr) are pinned to train_gpt's former defaults, which the committed runs hold."""
    names = [n for n, _, _ in task_specs(cfg, sweep=False)]
    names = names if name in names else [name]  # a task outside --tasks (a test, a premise probe)
    return tg.Config(
        method="distil",
        teacher="self",
        states="all",
        rl_lr=1e-4,
        task=spec,
        preset=cfg.preset,
        seed=seed,
        data_seed=cfg.data_seed,
        device="cpu",
        n_train=cfg.n_train,
        val_n=cfg.val_n if name == cfg.sweep_task else 0,
        sft_batch=cfg.sft_batch,
        sft_teacher_frac=dict(zip(names, per_task(cfg, "sft_teacher_frac", names, float)))[name],
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


def load_result(path, tcfg):
    """A finished run's result file (None if there is none); exits if it was made with other settings."""
    if not os.path.exists(path):
        return None
    res, want, default = json.load(open(path)), dataclasses.asdict(tcfg), dataclasses.asdict(tg.Config())
    # a field added to train_gpt.Config after the run was made: the run had its default
    diff = sorted(k for k, v in want.items() if k not in PLACES and res["config"].get(k, default[k]) != v)
    if diff:
        raise SystemExit(
            f"error: {path} was made with other settings ({', '.join(diff)}); delete it or pass another "
            "--out and --results"
        )
    return res


def write_json(path, obj):
    """Write atomically: a stopped run never leaves half a file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=0)
    os.replace(path + ".tmp", path)


@contextlib.contextmanager
def restore_threads(n):
    try:
        yield
    finally:
        torch.set_num_threads(n)


def execute(job):
    """Run one job (in a worker process) through train_gpt.run; write out_dir/result.json and the
    committed copy. Returns the result, or None if the run was stopped (Ctrl-C) before it finished."""
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
    res["torch"] = torch.__version__
    if tcfg.stage == "sft":  # the binomial n: distinct test problems
        res.update(
            eval=out["eval"],
            n_distinct=out["eval_problems"],
            noise=binomial_se(out["eval"]["pass@1"], out["eval_problems"]),
        )
    else:  # the training seconds before each evaluation: the step phases' times, evaluations excluded
        steps = [r for r in out["rows"] if "loss" in r]
        seconds = [sum(v for k, v in r.items() if k.startswith("time_")) for r in steps]
        res["evals"] = [
            {"step": r["step"], **{k: r[k] for k in tg.eval_keys(tcfg)}}
            | {"train_s": sum(s for row, s in zip(steps, seconds) if row["step"] < r["step"])}
            for r in out["rows"]
            if "pass@1" in r
        ]
        res |= {k: mean_std([r[k] for r in steps])[0] for k in ("len", "ent")}  # nan: a step with no tokens
    if tcfg.stage == "sft" and job.get("committed") and os.path.exists(job["committed"]):
        check_same_start(job["committed"], res, tcfg.out_dir)
    write_json(os.path.join(tcfg.out_dir, "result.json"), res)
    if job.get("committed"):
        write_json(job["committed"], res)
    return res


def check_same_start(path, res, out_dir):
    """Exits if a retrained SFT checkpoint evaluates otherwise than the committed one its task's committed
    runs started from (e.g. another thread count sums in another order): runs from the two would mix."""
    old = json.load(open(path))["eval"]
    if any(old[k] != res["eval"][k] for k in ("pass@1", "avg@8", "pass@8")):
        raise SystemExit(
            f"error: the SFT retrained in {out_dir} evaluates pass@1 {res['eval']['pass@1']:.4f}, "
            f"not the committed checkpoint's {old['pass@1']:.4f} ({path}), where its task's committed "
            f"runs started. Put that checkpoint at {out_dir}/sft.pt, or move {os.path.dirname(path)} away"
        )


def sft_job(cfg, name, spec, steps, kind="sft", **changes):
    """The SFT run of a task that every RL run starts from (or, with kind and changes, another SFT run)."""
    c = dataclasses.replace(
        base_config(cfg, spec, name, cfg.sft_seed),
        stage="sft",
        sft_steps=steps,
        out_dir=os.path.join(cfg.out, name, kind),
        **changes,
    )
    return {"config": dataclasses.asdict(c), "threads": cfg.threads, "meta": {"phase": kind, "task": name}}


def committed(cfg, name, run):
    return os.path.join(cfg.results, "runs", name, run + ".json")


def rl_job(cfg, phase, name, spec, arm, tag, lr, seed, run):
    """An RL run of an arm at a setting (tag) and rate from its task's SFT checkpoint."""
    order, fields = next((i, f) for i, (t, f) in enumerate(arm_settings(arm)) if t == tag)
    c = dataclasses.replace(
        base_config(cfg, spec, name, seed),
        stage="rl",
        rl_lr=lr,
        eval_split="val" if phase == "sweep" else "test",
        init_from=os.path.join(cfg.out, name, "sft", "sft.pt"),
        out_dir=os.path.join(cfg.out, name, run),
        **fields,
    )
    meta = {"phase": phase, "task": name, "method": label(arm, tag), "arm": arm, "tag": tag}
    meta |= {"lr": lr, "seed": seed, "order": order}
    return {"config": dataclasses.asdict(c), "threads": cfg.threads, "meta": meta}


def plan(cfg):
    """Every job as (key, deps, path, build): key = (phase, task, ...), path its committed result file,
    build(results) -> the job given its finished dependencies (a main run's rate and setting are known
    once its arm's sweep is done). Task by task, the sweep task first; primary arms before secondary."""
    if cfg.main_lr:
        return rate_plan(cfg)
    seeds, groups = [int(s) for s in cfg.seeds.split(",")], arm_groups(cfg)
    lrs = [float(x) for x in cfg.lrs.split(",")]
    specs = sorted(task_specs(cfg), key=lambda s: s[0] != cfg.sweep_task)
    jobs = []

    def sweep_keys(arm):
        return [("sweep", cfg.sweep_task, arm, tag, lr) for tag, _ in arm_settings(arm) for lr in lrs]

    for name, spec, steps in specs:
        sft = ("sft", name)
        jobs.append((sft, [], committed(cfg, name, "sft"), lambda res, j=sft_job(cfg, name, spec, steps): j))
        for arms, arm_seeds in groups:
            for key in [k for arm in arms for k in sweep_keys(arm)] if name == cfg.sweep_task else []:
                _, _, arm, tag, lr = key
                run = f"sweep_{arm}{'+' + tag if tag else ''}_lr{lr:g}_s{seeds[0]}"
                # known now: no choice in it
                job = rl_job(cfg, "sweep", name, spec, arm, tag, lr, seeds[0], run)
                jobs.append((key, [sft], committed(cfg, name, run), lambda res, j=job: j))
            for seed in arm_seeds:
                for arm in arms:
                    deps, run = [sft, *sweep_keys(arm)], f"main_{arm}_s{seed}"

                    def build(res, arm=arm, seed=seed, deps=deps, run=run, name=name, spec=spec):
                        best = select([res[d] for d in deps[1:]])
                        return rl_job(cfg, "main", name, spec, arm, best["tag"], best["lr"], seed, run)

                    jobs.append((("main", name, arm, seed), deps, committed(cfg, name, run), build))
    return jobs


def arm_groups(cfg):
    """[(arms, their seeds)]: the primary arms on --seeds, the secondary ones on --secondary_seeds."""
    return [
        (arm_list(cfg.arms), [int(s) for s in cfg.seeds.split(",")]),
        (arm_list(cfg.secondary, "--secondary"), [int(s) for s in cfg.secondary_seeds.split(",")]),
    ]


def sweep_choices(cfg):
    """{arm: the setting (tag) the committed sweep chose for it}; exits if an arm's sweep has not run."""
    swept = [r for r in committed_records(cfg)[1] if r["phase"] == "sweep" and r["task"] == cfg.sweep_task]
    choices = {}
    for arm in (a for arms, _ in arm_groups(cfg) for a in arms):
        done = [r for r in swept if r["arm"] == arm]
        if not done:
            raise SystemExit(
                f"error: --main_lr keeps each arm's setting from the protocol's sweep, and {cfg.results}/"
                f"runs/{cfg.sweep_task} has no sweep run of {arm}: run `python experiment.py` first"
            )
        choices[arm] = select(done)["tag"]
    return choices


def rate_plan(cfg):
    """plan() of the study at --main_lr: per task of --tasks its SFT, then every arm and seed at that
    rate with the sweep's setting, as phase "rate" (the protocol's runs and tables stay as they are)."""
    jobs, lr, tags = [], cfg.main_lr, sweep_choices(cfg)
    for name, spec, steps in task_specs(cfg, sweep=False):
        sft = ("sft", name)
        jobs.append((sft, [], committed(cfg, name, "sft"), lambda res, j=sft_job(cfg, name, spec, steps): j))
        for arms, arm_seeds in arm_groups(cfg):
            for seed in arm_seeds:
                for arm in arms:
                    run = f"main_{arm}_lr{lr:g}_s{seed}"
                    job = rl_job(cfg, "rate", name, spec, arm, tags[arm], lr, seed, run)
                    jobs.append(
                        (("rate", name, arm, seed), [sft], committed(cfg, name, run), lambda r, j=job: j)
                    )
    return jobs


class Inline:
    """A one-at-a-time executor in this process (--jobs 1: tests, debugging)."""

    def submit(self, fn, *args):
        f = cf.Future()
        f.set_result(fn(*args))
        return f

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def finished(key, path, job, pending):
    """A job's result if it need not run: its own result.json, or its committed result file, except
    for an SFT run whose checkpoint a pending run of its task still needs."""
    tcfg = tg.Config(**job["config"])
    local = load_result(os.path.join(tcfg.out_dir, "result.json"), tcfg)
    if local is not None and key[0] == "sft" and path and os.path.exists(path):
        check_same_start(path, local, tcfg.out_dir)  # a checkpoint left by an earlier run on this machine
    if local is not None and path and not os.path.exists(path):
        write_json(path, local)  # finished before its result was committed
    if local is not None or path is None or (key[0] == "sft" and key[1] in pending):
        return local
    return load_result(path, tcfg)


def run_all(cfg, stats, jobs=None):
    """Run every job of `jobs` (default plan(cfg)) whose dependencies are done, `jobs` at a time; skip
    finished ones. Returns {key: result}; stats["ran"] counts the jobs started. Raises
    KeyboardInterrupt after stopping cleanly (the runs save a checkpoint)."""
    jobs, results, running = plan(cfg) if jobs is None else jobs, {}, {}
    pending = {key[1] for key, _, path, _ in jobs if key[0] != "sft" and not (path and os.path.exists(path))}
    total, t0, walls = len(jobs), time.time(), []
    ex = Inline() if cfg.jobs == 1 else cf.ProcessPoolExecutor(cfg.jobs, mp_context=mp.get_context("spawn"))
    try:
        while jobs or running:
            progress = True
            while progress and len(running) < cfg.jobs:
                progress = False
                for i, (key, deps, path, build) in enumerate(jobs):
                    if all(d in results for d in deps):
                        job = dict(build(results), committed=path)
                        del jobs[i]
                        done = finished(key, path, job, pending)
                        if done is not None:
                            results[key] = done
                        else:
                            stats["ran"] += 1
                            running[ex.submit(execute, job)] = (key, job)
                        progress = True
                        break
            if not running:
                if jobs:
                    raise RuntimeError(f"unsatisfiable dependencies: {[j[0] for j in jobs]}")
                break
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for f in done:
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
    jobs = [(("sft", n), [], None, lambda res, j=sft_job(cfg, n, s, k): j) for n, s, k in todo]
    if any(PREMISE_KINDS[t][0] == "model" for t in teachers):
        for n, s, k in todo:
            job = sft_job(
                cfg, n, s, k * cfg.teacher_scale, "teacher", eval_passn=0, preset=cfg.teacher_preset
            )
            jobs.append((("teacher", n), [], None, lambda res, j=job: j))
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
    `ablations` ({label: rows of FEEDBACK_ABLATIONS' file}), the same teachers at those checkpoints."""
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
        "one CPU thread. *fix named*: tasks.py's default feedback (countdown, listprog, chem: "
        "feedback=fix, the fix alone, valid after any prefix of the attempt; mult: feedback=full, "
        "the corrected line, then the verdict), the SFT examples of the teacher at cuts of attempts "
        "(sft_target=recovery), half of them attempts that leave the reference at their first line "
        "(Task.wander); *verdict only*: the same checkpoint with feedback=verdict. "
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
            "The same teachers at checkpoints SFT'd at other task knobs or start points (each its own SFT "
            "run, at the code named; `--premise --tasks '<spec>,<knob>' [--sft_steps N --sft_teacher_frac F] "
            "--out <another folder> --premise_csv <file>`; "
            f"results/{', results/'.join(FEEDBACK_ABLATIONS.values())}):",
            "",
            "| task | checkpoint | student avg@8 | "
            + " | ".join(dict(FEEDBACK_COLUMNS)[t] for t in abl)
            + " |",
            "|---|---|---|" + "---|" * len(abl),
        ]
        got = {FEEDBACK_DEFAULT: by} | {
            k: {(r["task"], r["teacher"]): r for r in rs} for k, rs in ablations.items()
        }
        for n in dict.fromkeys(r["task"] for rs in ablations.values() for r in rs):
            for target, g in ((k, g) for k, g in got.items() if any((n, t) in g for t in abl)):
                avg = next(r["avg@8"] for (task, _), r in g.items() if task == n)
                L.append(
                    f"| {n} | {target} | {avg:.3f} | "
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
# Report: the committed results -> the CSV -> markdown tables and figures


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


def committed_records(cfg):
    """Every committed result under <results>/runs: ({task: SFT result}, [RL results])."""
    sfts, records = {}, []
    for path in sorted(glob.glob(os.path.join(cfg.results, "runs", "*", "*.json"))):
        r = json.load(open(path))
        if r["phase"] == "sft":
            sfts[r["task"]] = r
        else:
            records.append(r)
    return sfts, records


def experiment_rows(cfg):
    """The CSV's rows from the committed results: aggregate() of the runs (and of their mean over
    tasks, once every task has a seed's run), and meta rows: each task's spec and SFT steps, the
    training time of all runs, the torch versions that made them."""
    sfts, records = committed_records(cfg)
    order = [n for n, _, _ in task_specs(cfg, sweep=False)]
    sfts = sorted(sfts.values(), key=lambda s: order.index(s["task"]) if s["task"] in order else len(order))
    main = [r for r in records if r["phase"] == "main" and r["task"] in {s["task"] for s in sfts}]
    mean_records, mean_sft = mean_of_tasks(main, sfts) if len(sfts) > 1 else ([], None)
    rows = aggregate(records + mean_records, sfts + ([mean_sft] if mean_records else []))

    def meta(task, method, metric, value, n=1):
        fields = ("phase", "task", "method", "lr", "metric", "x", "mean", "std", "n")
        return dict(zip(fields, ("meta", task, method, "", metric, "", value, 0.0, n)))

    rows += [meta(s["task"], s["config"]["task"], "sft_steps", float(s["config"]["sft_steps"])) for s in sfts]
    done = list(sfts) + records
    seconds = sum(s["wall_s"] for s in sfts) + sum(r["evals"][-1]["train_s"] for r in records)
    rows.append(meta("", "", "train_time_s", seconds, len(done)))  # a resumed run's wall_s is its last part
    versions = sorted({r["torch"] for r in done if "torch" in r})
    return rows + [meta("", ",".join(versions), "torch", 0.0)]


def tables(rows, phase="main"):
    """(get, names, labels) of the CSV rows: get[phase, task, method, lr, metric][x] = (mean, std, n);
    the tasks in order (the mean over tasks last), and per task the arms of `phase` as [(label, lr)]."""
    get = defaultdict(dict)
    for r in rows:
        get[r["phase"], r["task"], r["method"], r["lr"], r["metric"]][r["x"]] = (r["mean"], r["std"], r["n"])
    names = list(dict.fromkeys(r["task"] for r in rows if r["phase"] == "sft"))
    labels = defaultdict(list)
    for r in rows:
        if r["phase"] == phase and (r["method"], r["lr"]) not in labels[r["task"]]:
            labels[r["task"]].append((r["method"], r["lr"]))
    return get, names, labels


def val(get, key, x, i=0):
    return get.get(key, {}).get(x, (math.nan, math.nan, 0))[i]


def last_step(get, key):
    return max(get.get(key, {0: 0}))


def verdict(get, task, labels, phase="main"):
    """Per expert-taught distil arm of a task: did its seed-mean pass@1 reach GRPO's final value within
    a third of GRPO's steps, and end above grpo's and above offline's with the same teacher? Lines."""
    lr_of = dict(labels)
    grpo = (phase, task, "grpo", lr_of.get("grpo"), "pass@1")
    if "grpo" not in lr_of:
        return ["no grpo run yet"]
    end = last_step(get, grpo)
    g, start = val(get, grpo, end), val(get, ("sft", task, "sft", "", "pass@1"), 0)
    out = (
        [] if g > start else [f"grpo ends at {g:.3f}, not above the SFT start {start:.3f}: no gain to reach"]
    )
    for lab, lr in labels:
        arm = lab.split("[")[0]
        if not arm.startswith("distil@") or arm.split("@")[1] not in ("oracle", "feedback"):
            continue
        key = (phase, task, lab, lr)
        d, hit = val(get, key + ("pass@1",), end), val(get, key + ("steps_to_grpo",), "")
        off = next(((k, r) for k, r in labels if k.split("[")[0] == "offline@" + arm.split("@")[1]), None)
        o = val(get, (phase, task, *off, "pass@1"), end) if off else math.nan
        ok = hit <= end / 3 and d > g and d > o
        reach = f"reaches grpo's final at step {int(hit)}" if hit == hit else "does not reach grpo's final"
        out.append(
            f"{lab}: {'yes' if ok else 'no'} — {reach} (a third of {end}: {end // 3}); ends at {d:.3f} "
            f"against grpo {g:.3f} and {off[0] if off else 'offline'} {o:.3f}"
        )
    return out


def arm_table(get, t, labels, cfg, phase="main"):
    """The lines of one task's table of arms (every metric at the early and the last step, the step
    logs' summaries) and its verdict lines."""
    end = max(last_step(get, (phase, t, lab, lr, "pass@1")) for lab, lr in labels)
    early = cfg.early_step
    L = [
        f"t_adv @0: the arm's teacher's advantage at the student's states at step 0; to grpo: the step "
        f"(and training seconds) at which the seed-mean pass@1 first reaches grpo's final; drops: falls "
        f"> σ {val(get, ('sft', t, 'sft', '', 'noise'), ''):.3f} between evaluations / pairs; len, ent: "
        "run means per rollout and per token; s: training seconds of the run (evaluations excluded).",
        "",
        f"| arm | lr | seeds | t_adv @0 | pass@1 @{early} | pass@1 @{end} | avg@8 @{end} | "
        f"pass@8 @{end} | pass@{cfg.passn_samples} @{end} | to grpo: steps (s) | drops | len | ent | s |",
        "|---" * 14 + "|",
        f"| SFT | - | - | - | {val(get, ('sft', t, 'sft', '', 'pass@1'), 0):.3f} | "
        + " | ".join(f"{val(get, ('sft', t, 'sft', '', k), 0):.3f}" for k in METRICS)
        + f" | {val(get, ('sft', t, 'sft', '', 'pass@N'), cfg.passn_samples):.3f} "
        + "| - | - | - | - | - |",
    ]
    for lab, lr in labels:

        def c(k, x):
            key = (phase, t, lab, lr, k)
            if k == "t_adv" and tg.METHODS[lab.split("@")[0]] is None:
                return "-"  # no teacher: the evaluation's default one is not this arm's
            return pm(val(get, key, x), val(get, key, x, 1))

        def one(k, fmt):
            v = val(get, (phase, t, lab, lr, k), "")
            return "-" if v != v else format(v, fmt)

        L.append(
            f"| {lab} | {lr} | {val(get, (phase, t, lab, lr, 'pass@1'), end, 2)} | {c('t_adv', 0)} | "
            f"{c('pass@1', early)} | {c('pass@1', end)} | {c('avg@8', end)} | {c('pass@8', end)} | "
            f"{c('pass@N', cfg.passn_samples)} | {one('steps_to_grpo', '.0f')} "
            f"({one('seconds_to_grpo', '.0f')}) | {one('drops', '.0f')} / {one('drop_pairs', '.0f')} | "
            f"{one('len', '.1f')} | {one('ent', '.3f')} | "
            f"{val(get, (phase, t, lab, lr, 'train_s'), end):.0f} |"
        )
    return L + ["", *(f"- {line}" for line in verdict(get, t, labels, phase))]


def report(rows, cfg):
    """results/README.md's experiment sections, and the figures, from the CSV rows."""
    get, names, labels = tables(rows)
    meta = {r["metric"]: r for r in rows if r["phase"] == "meta" and not r["task"]}
    specs = {r["task"]: (r["method"], int(r["mean"])) for r in rows if r["metric"] == "sft_steps"}
    run_time = meta.get("train_time_s", {"mean": 0.0, "n": 0})
    torch_version = meta.get("torch", {"method": ""})["method"]
    L = [
        "## DistIL taught by experts at the student's states, against GRPO (results/experiment.csv)",
        "",
        f"Command: `python experiment.py` (protocol: experiment.py's header; each finished run is "
        f"results/runs/<task>/<run>.json). Hardware: 2 shared CPU cores, torch {torch_version or '-'}, "
        f"{cfg.jobs} runs in parallel x {cfg.threads} thread; {run_time['n']} runs trained for "
        f"{runs.fmt_time(run_time['mean'])} in all (SFT wall time and RL training seconds, evaluations "
        f"excluded). Seeds {cfg.seeds} (secondary arms "
        f"{cfg.secondary_seeds}); "
        f"preset {cfg.preset}; {cfg.rl_steps} RL steps x {cfg.prompts} prompts x {cfg.group} rollouts; test "
        f"evaluation every {cfg.eval_every} steps; mean ± sample std over seeds.",
        "",
        "### Start points (one SFT checkpoint per task, shared by every run)",
        "",
        "| task | SFT steps | greedy pass@1 | avg@8 | pass@8 | binomial σ | in [0.10, 0.60] |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in (t for t in names if t != MEAN):

        def v(k, x=0):
            return val(get, ("sft", t, "sft", "", k), x)

        spec, steps = specs.get(t, (t, "-"))
        L.append(
            f"| {spec} | {steps} | {v('pass@1'):.3f} | {v('avg@8'):.3f} | {v('pass@8'):.3f} | "
            f"{v('noise', ''):.3f} | {'yes' if 0.10 <= v('pass@1') <= 0.60 else 'no'} |"
        )
    arms = arm_list(cfg.arms) + arm_list(cfg.secondary, "--secondary")
    order = {label(a, t): i for i, (a, t) in enumerate((a, t) for a in arms for t, _ in arm_settings(a))}
    sweep = sorted(
        dict.fromkeys(r["method"] for r in rows if r["phase"] == "sweep"), key=lambda m: order.get(m, 1e9)
    )
    lrs = sorted({r["lr"] for r in rows if r["phase"] == "sweep"}, key=float)
    chosen = set(labels.get(cfg.sweep_task, []))
    L += [
        "",
        f"### Sweep on {cfg.sweep_task}'s validation split (seed {cfg.seeds.split(',')[0]}): "
        "learning rate x setting",
        "",
        "Criterion: validation avg@8 averaged over the evaluations after step 0; **bold**: the arm's choice, "
        "used on every task.",
        "",
        "| arm[setting] | " + " | ".join(f"lr {lr}" for lr in lrs) + " |",
        "|---" * (len(lrs) + 1) + "|",
    ]
    for lab in sweep:
        cells = []
        for lr in lrs:
            c = val(get, ("sweep", cfg.sweep_task, lab, lr, "criterion"), "")
            cells.append("-" if c != c else f"**{c:.3f}**" if (lab, lr) in chosen else f"{c:.3f}")
        L.append(f"| {lab} | " + " | ".join(cells) + " |")
    for t in (t for t in names if labels.get(t)):
        L += ["", f"### {specs.get(t, (t,))[0]}", "", *arm_table(get, t, labels[t], cfg)]
    get_rate, _, rate = tables(rows, "rate")
    for t in (t for t in names if rate.get(t)):
        spec, lr, fig = specs.get(t, (t,))[0], rate[t][0][1], f"exp_{figure_name(t, 'rate', rate)}.png"
        L += [
            "",
            f"### {spec}: every arm at lr {lr}, beside the protocol",
            "",
            f"`python experiment.py --main_lr {lr} --tasks '{spec}' ...`: the main runs at one rate below "
            "the sweep's grid, each arm at the sweep's setting, from the same SFT checkpoint (why: "
            "results/trainer_checks, the first 25 steps).",
            "",
            *arm_table(get_rate, t, rate[t], cfg, "rate"),
            "",
            f"Curves: [figures/{fig}](../figures/{fig}).",
        ]
    plot(get_rate, names, rate, specs, cfg, "rate")
    plot(get, names, labels, specs, cfg)
    return "\n".join(L) + "\n"


def pyplot():
    """matplotlib, imported lazily (runs that do not plot do not pay for it), writing files only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_name(t, phase, labels):
    """exp_<this>.png: the task (the mean over tasks with _ for spaces), and the rate of a study."""
    return t.replace(" ", "_") + (f"_lr{labels[t][0][1]}" if phase == "rate" else "")


def plot(get, names, labels, specs, cfg, phase="main"):
    """figures/exp_<task>.png: greedy pass@1 and avg@8 against RL steps and against training seconds,
    every arm's seed mean with a ± std band; figures/exp_passn.png: pass@N at the end. For the study
    at --main_lr (phase "rate"): figures/exp_<task>_lr<rate>.png."""
    plt = pyplot()
    os.makedirs(cfg.figures, exist_ok=True)
    arms = list(dict.fromkeys(lab for t in names for lab, _ in labels.get(t, [])))
    color = {lab: f"C{i % 10}" for i, lab in enumerate(arms)}
    for t in (t for t in names if labels.get(t)):
        fig, axs = plt.subplots(2, 2, figsize=(11, 7.5), sharey="row")
        for row, metric in zip(axs, ("pass@1", "avg@8")):
            for ax, by_time in zip(row, (False, True)):
                for lab, lr in labels[t]:
                    c = get[(phase, t, lab, lr, metric)]
                    xs = sorted(c)
                    x = [val(get, (phase, t, lab, lr, "train_s"), s) for s in xs] if by_time else xs
                    mu, sd = [c[s][0] for s in xs], [c[s][1] for s in xs]
                    ax.plot(x, mu, marker="o", ms=3, color=color[lab], label=f"{lab} (lr {lr})")
                    lo, hi = [a - b for a, b in zip(mu, sd)], [a + b for a, b in zip(mu, sd)]
                    ax.fill_between(x, lo, hi, color=color[lab], alpha=0.12)
                sft = val(get, ("sft", t, "sft", "", metric), 0)
                ax.axhline(sft, color="k", ls="--", lw=1, label="SFT")
                ax.set(
                    xlabel="training seconds (one CPU thread)" if by_time else "RL step",
                    ylabel=f"test {'greedy ' if metric == 'pass@1' else ''}{metric}",
                )
        axs[0][0].legend(fontsize=7)
        fig.suptitle(f"{specs.get(t, (t,))[0]}: mean ± std over seeds")
        fig.tight_layout()
        fig.savefig(os.path.join(cfg.figures, f"exp_{figure_name(t, phase, labels)}.png"), dpi=90)
        plt.close(fig)
    shown = [t for t in names if labels.get(t)]
    if not shown or phase != "main":
        return
    fig, axs = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 3.8), squeeze=False)
    for ax, t in zip(axs[0], shown):
        curves = [("SFT", get.get(("sft", t, "sft", "", "pass@N"), {}), "k")]
        curves += [(lab, get.get(("main", t, lab, lr, "pass@N"), {}), color[lab]) for lab, lr in labels[t]]
        for lab, c, col in curves:
            xs = sorted(c, key=int)
            ax.plot(
                [int(x) for x in xs],
                [c[x][0] for x in xs],
                marker=".",
                color=col,
                ls="--" if lab == "SFT" else "-",
                label=lab,
            )
        ax.set(xscale="log", xlabel="N", title=t, ylabel="pass@N, test, end of RL (seed mean)")
        ax.minorticks_off()
    axs[0][-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(os.path.join(cfg.figures, "exp_passn.png"), dpi=90)
    plt.close(fig)


# -----------------------------------------------------------------------------
# main


def csv_path(cfg):
    return os.path.join(cfg.results, "experiment.csv")


SUMMARY_START = "<!-- results summary: written by `python experiment.py --report_only` from results/runs -->"
SUMMARY_END = "<!-- end of results summary -->"


def final_table(get, labels, shown, arms, phase="main"):
    """Summary lines: a row per task, each arm's greedy pass@1 at the last step (mean ± std (seeds))."""
    L = ["| task | SFT | " + " | ".join(arms) + " |", "|---" * (len(arms) + 2) + "|"]
    for t in shown:
        by_arm = {lab.split("[")[0]: (lab, lr) for lab, lr in labels[t]}
        cells = []
        for arm in arms:
            if arm not in by_arm:
                cells.append("-")
                continue
            key = (phase, t, *by_arm[arm], "pass@1")
            end = last_step(get, key)
            cells.append(f"{pm(val(get, key, end), val(get, key, end, 1))} ({val(get, key, end, 2)})")
        L.append(f"| {t} | {val(get, ('sft', t, 'sft', '', 'pass@1'), 0):.3f} | " + " | ".join(cells) + " |")
    return L


def summary(rows, cfg):
    """The README's summary block: per task, every primary arm's final pass@1 and the verdict (and the
    same for a study at --main_lr, if one has run)."""
    get, names, labels = tables(rows)
    shown = [t for t in names if t != MEAN and labels.get(t)]
    L = [SUMMARY_START, ""]
    if not shown:
        return "\n".join(L + ["No run has finished yet: `python experiment.py`.", "", SUMMARY_END])
    L += [
        "Greedy test pass@1 at the last step (mean ± std over seeds;"
        " [`results/README.md`](results/README.md) has every number, the sweep's choices and the step"
        " logs' summaries):",
        "",
        *final_table(get, labels, shown, arm_list(cfg.arms)),
        "",
        "(n): seeds finished. Did DistIL with an expert teacher reach GRPO's final pass@1 within a third of "
        "GRPO's steps, and end above GRPO and above offline with the same teacher?",
        "",
    ]
    L += [f"- **{t}**: " + "; ".join(verdict(get, t, labels[t])) for t in shown]
    figs = ", ".join(f"[{t}](figures/exp_{t}.png)" for t in shown)
    L += ["", f"Curves against steps and training seconds: {figs}."]
    get, _, rate = tables(rows, "rate")
    shown = [t for t in names if rate.get(t)]
    ran = {lab.split("[")[0] for t in shown for lab, _ in rate[t]}
    arms = [a for a in arm_list(cfg.arms) + arm_list(cfg.secondary, "--secondary") if a in ran]
    for lr in sorted({lr for t in shown for _, lr in rate[t]}, key=float):
        L += [
            "",
            f"Beside the protocol, every arm at lr {lr} (the sweep's settings, `--main_lr {lr}`):",
            "",
            *final_table(get, rate, shown, arms, "rate"),
            "",
            *(f"- **{t}** at lr {lr}: " + "; ".join(verdict(get, t, rate[t], "rate")) for t in shown),
            "",
            "Curves: "
            + ", ".join(f"[{t}](figures/exp_{figure_name(t, 'rate', rate)}.png)" for t in shown)
            + ".",
        ]
    return "\n".join(L + ["", SUMMARY_END])


def write_reports(cfg):
    """results/experiment.csv from results/runs, results/README.md (every table), the figures, the
    summary block of --readme, and results/feedback.md and premise.md's table. Returns the markdown
    of results/README.md."""
    rows = experiment_rows(cfg)
    os.makedirs(cfg.results, exist_ok=True)
    write_csv(csv_path(cfg), rows)
    rows = read_csv(csv_path(cfg))  # the report reads exactly what is committed
    parts = [report(rows, cfg)]
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
            for k, f in FEEDBACK_ABLATIONS.items()
            if os.path.exists(premise_path(cfg, f))
        }
        table = feedback_table(read_premise(premise_path(cfg, FEEDBACK_CSV)), cfg, ablations)
        with open(os.path.join(cfg.results, "feedback.md"), "w") as f:
            f.write(table)
        parts.append("#" + table)  # a section of results/README.md
    md = (
        "# The paper's experiment in miniature: every table (written by `python experiment.py --report_only` "
        "from the files in this folder)\n\n" + "\n".join(parts)
    )
    with open(os.path.join(cfg.results, "README.md"), "w") as f:
        f.write(md)
    if cfg.readme:
        replace_block(cfg.readme, SUMMARY_START, SUMMARY_END, summary(rows, cfg))
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
    """Run (or resume) everything, then write the CSV, results/README.md, the summary, the figures."""
    if cfg.plot:
        return plot_run(cfg.plot)
    if cfg.table:
        return print(run_table([p for g in cfg.table.split(",") for p in sorted(glob.glob(g)) or [g]]))
    if cfg.premise and not cfg.report_only:
        premise(cfg)
    elif not cfg.report_only:
        print(
            f"experiment: {len(task_specs(cfg, sweep=not cfg.main_lr))} tasks, arms {cfg.arms} "
            f"(secondary {cfg.secondary or '-'}), "
            f"seeds {cfg.seeds}, sweep {cfg.lrs} on {cfg.sweep_task} | {cfg.jobs} runs in parallel x "
            f"{cfg.threads} thread(s) | checkpoints in {cfg.out}, results in {cfg.results}/runs",
            flush=True,
        )
        try:
            run_all(cfg, {"ran": 0})
        except KeyboardInterrupt:
            print(
                "interrupted: finished runs are kept and unfinished ones saved a checkpoint; "
                "rerun the same command to continue",
                flush=True,
            )
            raise SystemExit(130) from None
    md = write_reports(cfg)
    print(md)
    if cfg.premise:
        print(
            f"wrote {premise_path(cfg, cfg.premise_csv)}, {cfg.results}/README.md and the premise block "
            f"of {cfg.results}/premise.md (if it exists)"
        )
        return read_premise(premise_path(cfg, cfg.premise_csv))
    print(
        f"wrote {csv_path(cfg)}, {cfg.results}/README.md, {cfg.figures}/exp_*.png"
        + (f", the summary in {cfg.readme}" if cfg.readme else "")
    )
    return read_csv(csv_path(cfg))


if __name__ == "__main__":
    main(parse_args())
