"""
experiment.py — the demonstration: DistIL and its baselines from one SFT start, each arm taught by one
teacher, rates chosen on a validation split, compared on the test split over seeds. Every run is a
train_gpt.run(train_gpt.Config(...)); one task per invocation.

Protocol (fixed 2026-12-06 before the results; the numbers are Config's defaults, set by the one-seed
probes in results/findings.md: a task where GRPO moves, a teacher whose probe passed the premise):
 1. Starts: a student SFT (preset, sft_steps, sft_teacher_frac) and a teacher-model SFT (teacher_preset,
    teacher_sft_steps; student format only: it teaches in the student's context), seed 1, on the same
    n_train problems; the val_n validation problems and rl_n RL prompts are held out of both SFTs.
 2. Premise: the student's start evaluated with each arm's teacher: t_adv ± se, the teacher's advantage
    at the student's states; an arm whose teacher has t_adv < +0.20 or se > 0.03 is not trained (the
    report says so). Noise: the start evaluated at each of noise_seeds (the sampling draws).
 3. Sweep (validation split, seed 1): every arm x rate of `rates` (`warmup` steps of warmup); score =
    mean validation avg@8 over the evaluations after step 0; an arm's rate: its best (ties: the smaller).
 4. Main: every arm x seed of `seeds` at its rate; test evaluations every eval_every of rl_steps steps.
    Long (added 2026-12-06 after the main results, before any long run): the main runs again for
    long_steps, a table and a verdict of their own (one-seed probes had turned the ranking at 1000).
    listprog (fixed before its runs): listprog:split=examples, --rates 1e-4,3e-4,1e-3 (3e-3 was every
    arm's worst on mult), --long_steps 0; the verdict's arms first (grpo, distil, distil_token, offline).
    model_S (added after listprog's verdict, before its runs: its teacher model knew more only on S):
    t_adv cuts where the arm's costs count (feedback's premise measured again); distil, distil_token.
    3e-5 (added after the sweeps, before its runs): an arm whose best rate was the grid's lowest, with a
    score above the start's (grpo on both tasks, distil@model_S), is swept at 3e-5 too (--rates 3e-5).
    model_S_once (added 2026-12-07 after the listprog probe of results/findings.md, before its runs): model_S
    with the exit priced once (--stop surprise); distil alone, its four rates (grid, 3e-5) swept at once.
    Long sweep (added 2026-12-07 before its runs; the long phase had reused the 300-step rates): the
    sweep runs at an arm's rate and its grid neighbours go on to long_steps (the same runs: the rate is
    constant after warmup); the same rule picks the long rate, and its grid neighbours go on too until the
    long best has both (or the grid's end; added after the first long sweep, where three arms' best lay at
    its edge, before those runs). Every arm's rule; run for grpo, distil, distil_token, offline @model
    (--arms): until theirs runs, the others' long runs stand at 300-step rates. The widening waits for a
    machine that retrains the starts to the CSV's bits (finish(); on another start: results/findings.md).
    Arms on S (feedback, model_S, model_S_once) ran before 6ec0564: an end off S was priced as an end.
    Rerun with 6ec0564 (fixed 2026-12-07 before its runs) from starts retrained on another CPU: listprog's
    grid, --arms grpo,distil@feedback,distil@model_S --results results/listprog_start2; no 3e-5 (time). The
    premise gated feedback out; then added, each before its runs: distil_token@model_S, offline@model_S
    (after main), then sdpo@model_S and opsd@model_S (the other divergences toward the same teacher).
    mult's rerun with 6ec0564 (fixed 2026-12-07 before its runs; this CPU's starts): grpo, @feedback distil,
    sdpo, opsd; rates 1e-4,3e-4,1e-3; results/mult_start2; after its sweeps: distil_token, offline. Then
    (added 2026-12-08 before their runs): 3e-5 and the long phase (1000 steps) for grpo, distil@feedback.
 5. Report: per arm the final avg@8 (mean ± std over seeds; greedy pass@1, pass@8 beside it) and the first
    step its seed-mean avg@8 reaches GRPO's final one. Verdict per teacher T: distil@T reaches it within a
    third of GRPO's steps; ends above GRPO (beyond 2σ_d? σ_d² = s_a²/n_a + s_b²/n_b over seeds) and above
    offline@T; distil@T against every other method@T. Curves of avg@8 against RL steps and training seconds
    (the steps' sample, verify, teacher and update times; evaluations excluded).
Arms are method@teacher (train_gpt.METHODS; grpo alone); TEACHERS: model (the black-box expert, in the
student's own context), model_S (its costs on the oracle's support), model_S_once (distil's exit priced once),
feedback (the paper's teacher: the frozen RL start reading the verifier's feedback, on the support; on every
state the live reader collapses the student), self (the null test: distil_token@self's gradient is zero).

Run (CPU; --jobs runs at a time, one thread each; the same command resumes):
    python experiment.py --task mult:digits_a=3,digits_b=1
    python experiment.py --report_only      # the report and figures from the CSV alone
Writes results/experiment.csv (a row per evaluation of every run, appended as each run ends; a run found
there is skipped), results/experiment.md, figures/exp_<task>.png, <out>/<task>/ (checkpoints, logs).
"""

import argparse
import concurrent.futures as cf
import contextlib
import csv
import dataclasses
import math
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import time

import torch

import runs
import train_gpt as tg

# -----------------------------------------------------------------------------
# Configuration: one dataclass; every field is a command-line flag

SEED = 1  # the seed of the SFTs, the premise and the sweep
TEACHERS = {  # an arm's teacher -> its train_gpt fields (model: --teacher <out>/<task>/teacher/sft.pt)
    "model": {"teacher": "model", "context": "none", "states": "all"},  # the teacher model, own context
    "model_S": {"teacher": "model", "context": "none", "states": "support"},  # the same, costs on S
    "model_S_once": {"teacher": "model", "context": "none", "states": "support", "stop": "surprise"},
    "feedback": {"teacher": "frozen", "context": "feedback", "states": "support"},  # the start reading f
    "self": {"teacher": "self", "context": "none", "states": "all"},  # the student: the null test
}
SAME = "task n_train val_n rl_n eval_n preset sft_steps sft_teacher_frac rl_steps prompts group"  # as named
ARMS = "grpo,distil@model,distil_token@model,offline@model,sdpo@model,opsd@model,distil_token@self,"
ARMS += "distil@feedback,distil_token@feedback"
METRICS = ("pass@1", "avg@8", "pass@8", "maj@8")
ADV_BAR, ADV_SE = 0.20, 0.03  # an arm trains only if its teacher's t_adv at the start is >= BAR, SE <= SE
KEY = ("task", "phase", "arm", "lr", "seed")  # a run; phase: start premise noise sweep main long_sweep long
TEACHER = ("t_rew", "t_adv", "t_adv_se", "t_adv_n")  # the teacher at the student's states
COLUMNS = (*KEY, "step", "train_s", *METRICS, "avg@8_se", *TEACHER, "len", "ent")


@dataclasses.dataclass
class Config:
    task: str = "mult:digits_a=3,digits_b=1"  # a tasks.py task, optionally with knobs: name:knob=value,...
    arms: str = ARMS  # method@teacher: a train_gpt method and a teacher of TEACHERS (grpo alone)
    seeds: str = "1,2,3"  # seeds of the main runs
    noise_seeds: str = "1,2,3"  # evaluation seeds of the start (the noise of one evaluation)
    rates: str = "1e-4,3e-4,1e-3,3e-3"  # the sweep's AdamW learning rates, the same grid for every arm
    warmup: int = 50  # RL steps of linear warmup to the rate
    rl_steps: int = 300  # RL optimizer steps per run
    long_steps: int = 1000  # RL steps of the long phase: the main runs again, longer (0: none)
    prompts: int = 32  # prompts per RL step
    group: int = 4  # rollouts per prompt
    eval_every: int = 100  # RL steps between evaluations (100: a third of 300, the verdict's mark)
    eval_n: int = 512  # test problems per evaluation
    val_n: int = 256  # validation problems (the sweep's), held out of SFT and RL
    rl_n: int = 1000  # RL prompts, held out of both SFTs
    n_train: int = 20000  # training problems drawn (before the hold-outs)
    preset: str = "tiny"  # the student's model size (model.PRESETS)
    sft_steps: int = 1000  # the student's SFT steps
    sft_teacher_frac: float = 0.5  # fraction of the student SFT's examples in teacher format
    teacher_preset: str = "tiny"  # the teacher model's size
    teacher_sft_steps: int = 6000  # the teacher model's SFT steps (6× the student's)
    jobs: int = 2  # runs at a time, each in its own process with one thread (1: in this process)
    out: str = "runs/experiment"  # run directories: <out>/<task>/... (checkpoints, logs; git-ignored)
    results: str = "results"  # where experiment.csv and experiment.md go
    figures: str = "figures"  # where exp_<task>.png goes
    report_only: bool = False  # only regenerate the report and figures from the CSV
    commit: bool = False  # git-commit the CSV, report and figure after each finished run


def parse_args(argv=None):
    """Config from the flags; an unknown flag or a bad value exits with one line naming what is accepted."""
    usage = "python experiment.py [--flag value ...] (--help lists them)"
    p = argparse.ArgumentParser(usage=usage, description=__doc__.split("\n\n")[0], allow_abbrev=False)
    runs.add_flags(p, Config, runs.field_help(Config))
    args, unknown = p.parse_known_args(argv)
    if unknown:
        p.error(f"unknown {' '.join(unknown)} (flags: {' '.join(f'--{k}' for k in vars(args))})")
    cfg = Config(**vars(args))
    for arm in cfg.arms.split(","):
        method, _, teacher = arm.partition("@")
        if method not in tg.METHODS or (teacher not in TEACHERS if tg.METHODS[method] else teacher):
            accepted = f"methods: {', '.join(tg.METHODS)}; teachers: {', '.join(TEACHERS)}; grpo alone"
            p.error(f"--arms: {arm!r} is not method@teacher ({accepted})")
        if error := tg.check_config(tg.Config(**job(cfg, "main", arm, 1.0)["config"])):  # train_gpt's
            p.error(f"{error} (in the runs of {arm})")
    return cfg


# -----------------------------------------------------------------------------
# Runs: the train_gpt Config of each, the plan, one run in a worker, the CSV


def job(cfg, phase, arm, lr=None, seed=SEED):
    """A run: its key in the CSV and its train_gpt Config (a dict). start: arm student | teacher (SFT);
    premise: arm = a teacher, evaluating the start with it; noise: the start at `seed`; the rest: RL (in
    the sweep run's directory, a long_sweep run resumes it)."""
    base = os.path.join(cfg.out, re.sub(r"\W+", "_", cfg.task).strip("_"))
    method, _, who = arm.partition("@")
    who = arm if phase == "premise" else who  # grpo, noise: no teacher (their t_* measure nothing)
    c = {k: getattr(cfg, k) for k in SAME.split()} | {"seed": seed, "resume": True, "stage": "sft"}
    if phase == "start" and arm == "teacher":
        c |= {"preset": cfg.teacher_preset, "sft_steps": cfg.teacher_sft_steps, "sft_teacher_frac": 0.0}
    if phase != "start":
        c |= {"init_from": os.path.join(base, "student", "sft.pt"), "teacher": "self", "context": "none"}
        c |= TEACHERS.get(who, {}) | {"stage": "eval"}
    if c.get("teacher") == "model":
        c["teacher"] = os.path.join(base, "teacher", "sft.pt")
    if phase in ("sweep", "main", "long", "long_sweep"):
        c |= {"rl_steps": cfg.long_steps} if phase.startswith("long") else {}
        c |= {"stage": "rl", "method": method, "rl_lr": lr, "rl_warmup": cfg.warmup}
        c |= {"eval_every": cfg.eval_every, "eval_split": "val" if phase.endswith("sweep") else "test"}
        if tg.METHODS[method] in (None, "answers"):
            c["states"] = "all"  # grpo and cloning read no teacher at the student's states
    run_dir = os.path.join(phase.removeprefix("long_"), f"{arm}_lr{lr or 0:g}_s{seed}")
    name = arm if phase == "start" else run_dir
    run = {"task": cfg.task, "phase": phase, "arm": arm, "lr": f"{lr:g}" if lr else "", "seed": str(seed)}
    return run | {"config": dataclasses.asdict(tg.Config(**c, out_dir=os.path.join(base, name)))}


def key(row):
    return tuple(str(row[k]) for k in KEY)


def plan(cfg, rows):
    """The runs in order: starts, premise, noise, sweep, main, long sweep, long (once `rows` holds inputs)."""
    arms, rates, done = cfg.arms.split(","), [float(x) for x in cfg.rates.split(",")], {key(r) for r in rows}
    teachers = list(dict.fromkeys(a.partition("@")[2] for a in arms if "@" in a))
    model = any(TEACHERS[t]["teacher"] == "model" for t in teachers)  # the teacher model's SFT comes first
    jobs = [job(cfg, "start", "student")] + [job(cfg, "start", "teacher")] * model
    jobs += [job(cfg, "premise", t) for t in teachers]
    jobs += [job(cfg, "noise", "student", seed=s) for s in map(int, cfg.noise_seeds.split(","))]
    mine, seeds = [r for r in rows if r["task"] == cfg.task], list(map(int, cfg.seeds.split(",")))
    scores, long_scores = sweep_scores(mine), sweep_scores(mine, "long_sweep")
    premise = {r["arm"]: r for r in rows if r["task"] == cfg.task and r["phase"] == "premise"}
    for a in (a for a in arms if gate(premise, a.partition("@")[2]) is None):
        jobs += [job(cfg, "sweep", a, lr) for lr in rates]
        if not all(key(j) in done for j in jobs[-len(rates) :]):
            continue
        swept, lr = sorted(scores[a]), choose_rate(scores[a])
        jobs += [job(cfg, "main", a, lr, s) for s in seeds]
        # the long sweep: lr and its grid neighbours, then the long best's neighbours, till all are in
        near, window = [], lambda r: swept[max(0, swept.index(r) - 1) : swept.index(r) + 2]
        while cfg.long_steps and not set(window(lr)) <= set(near):
            near = sorted(set(near) | set(window(lr)))
            if any(key(job(cfg, "long_sweep", a, r)) not in done for r in near):
                break
            lr = choose_rate(long_scores[a])
        jobs += [job(cfg, "long_sweep", a, r) for r in near]
        if near and all(key(j) in done for j in jobs[-len(near) :]):
            jobs += [job(cfg, "long", a, lr, s) for s in seeds]
    return jobs


def gate(premise, teacher):
    """Why an arm taught by `teacher` is not trained (its measured t_adv is below the protocol's bar), or
    None: the null teacher (self) and grpo (no teacher) are never gated; an unmeasured one is not yet."""
    r = premise.get(teacher)
    if teacher in ("", "self") or r is None or (r["t_adv"] >= ADV_BAR and r["t_adv_se"] <= ADV_SE):
        return None
    short = f"short of +{ADV_BAR} ± {ADV_SE}"
    return f"teacher {teacher}: t_adv {r['t_adv']:+.3f} ± {r['t_adv_se']:.3f}, {short}"


def curve(rows):
    """The evaluations of an RL log (train_gpt's rows; len and ent: of the step after each), each with
    train_s, the sum of the time_* fields (sample, verify, teacher, update) of the steps before it."""
    out, seconds = [], 0.0
    for r in rows:
        out += [r | {"train_s": seconds}] if "avg@8" in r else []
        seconds += sum(v for k, v in r.items() if k.startswith("time_"))
    return out


def execute(job):
    """One run (its console in <out_dir>/log.txt): its CSV rows, or None if Ctrl-C stopped it."""
    tcfg = tg.Config(**job["config"])
    torch.set_num_threads(1)  # whatever --jobs: the thread count changes a run's bits (results/findings.md)
    os.makedirs(tcfg.out_dir, exist_ok=True)
    print(f"{time.strftime('%H:%M:%S')} running {tcfg.out_dir} (its log: log.txt there)", flush=True)
    with open(os.path.join(tcfg.out_dir, "log.txt"), "a") as log, contextlib.redirect_stdout(log):
        out = tg.run(tcfg)
    run = {k: job[k] for k in KEY}
    if out["interrupted"] or tcfg.stage == "rl":
        return None if out["interrupted"] else [run | e for e in curve(out["rows"])]
    return [run | {"step": tcfg.sft_steps if tcfg.stage == "sft" else 0} | out["eval"]]


def read_csv(path):
    """The CSV's rows: a run's key as text, the rest as floats (nan where empty)."""
    rows = list(csv.DictReader(open(path))) if os.path.exists(path) else []
    return [{k: v if k in KEY else float(v or "nan") for k, v in r.items()} for r in rows]


def append_rows(path, rows):
    """Append a run's rows atomically (a temporary file renamed over the CSV): never half a run."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    old = open(path).read() if os.path.exists(path) else ""
    with open(path + ".tmp", "w") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore", lineterminator="\n")
        f.write(old) if old else writer.writeheader()
        writer.writerows(rows)
    os.replace(path + ".tmp", path)


def finish(cfg, path, job, rows):
    """Record a finished run once (the CSV, then its report); --commit: git. A retrained start adds no rows
    and must evaluate as its rows do: CPUs whose float kernels differ train another start from one seed."""
    if rows is None:
        raise SystemExit("stopped: the runs saved their checkpoints; the same command resumes them")
    if old := [r for r in read_csv(path) if key(r) == key(job)]:
        if job["phase"] == "start" and any(rows[0][k] != old[0][k] for k in METRICS):
            sft = os.path.join(job["config"]["out_dir"], "sft.pt")
            os.replace(sft, sft + ".differs")  # so that no later invocation starts a run from it
            raise SystemExit(
                f"error: the {job['arm']} start retrained here is not the CSV's (avg@8 {rows[0]['avg@8']:.4f}"
                f" vs {old[0]['avg@8']:.4f}): kept as {sft}.differs; run where its starts are"
            )
        return
    append_rows(path, rows)
    message = f"{job['task']} {job['phase']} {job['arm']} lr{job['lr'] or '-'} s{job['seed']}: finished"
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)
    paths = [path, *report(cfg, read_csv(path))]  # the report follows the CSV, committed with it
    git = [["git", "add", *paths], ["git", "commit", "-q", "-m", message, "--", *paths]]
    if cfg.commit and any(subprocess.run(cmd, capture_output=True).returncode for cmd in git):
        print(f"git add/commit {path} failed; the CSV is saved", flush=True)


def run_all(cfg, path, jobs):
    """Run `jobs`, --jobs at a time in spawned processes of one thread each (--jobs 1: here, in turn)."""
    if cfg.jobs == 1:
        for j in jobs:
            finish(cfg, path, j, execute(j))
        return
    # never more runs submitted than run: after Ctrl-C the running ones save and stop, and none starts
    todo, running = list(jobs), {}
    with cf.ProcessPoolExecutor(cfg.jobs, mp.get_context("spawn")) as ex:
        while todo or running:
            while todo and len(running) < cfg.jobs:
                j = todo.pop(0)
                running[ex.submit(execute, j)] = j
            for f in cf.wait(running, return_when=cf.FIRST_COMPLETED)[0]:
                finish(cfg, path, running.pop(f), f.result())


# -----------------------------------------------------------------------------
# Aggregation: pure functions of the CSV's rows


def mean_std(xs):
    """(mean, sample std) of the values that are not nan: std 0 for one value, (nan, nan) for none."""
    xs = [x for x in xs if not math.isnan(x)]
    return (statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0) if xs else (math.nan,) * 2


def sweep_scores(rows, phase="sweep"):
    """{arm: {lr: mean validation avg@8 over the evaluations after step 0}} of the `phase` rows."""
    scores = {}
    for r in (r for r in rows if r["phase"] == phase and r["step"] > 0):
        scores.setdefault(r["arm"], {}).setdefault(float(r["lr"]), []).append(r["avg@8"])
    return {arm: {lr: mean_std(v)[0] for lr, v in by.items()} for arm, by in scores.items()}


def choose_rate(scores):
    """The rate of the best score; ties: the smaller rate."""
    return min((lr for lr, s in scores.items() if not math.isnan(s)), key=lambda lr: (-scores[lr], lr))


def seed_curve(rows, metric="avg@8"):
    """[(step, mean, std over seeds, mean train_s)] of one arm's rows, by step."""
    out = []
    for s in sorted({r["step"] for r in rows}):
        at = [r for r in rows if r["step"] == s]
        out.append((int(s), *mean_std([r[metric] for r in at]), mean_std([r["train_s"] for r in at])[0]))
    return out


def finals(rows, metric="avg@8"):
    """Each seed's value at its last evaluation."""
    return list({r["seed"]: r[metric] for r in sorted(rows, key=lambda r: r["step"])}.values())


def steps_to(curve, threshold):
    """The first step whose seed mean reaches `threshold` (None: never)."""
    return next((s for s, m, *_ in curve if m >= threshold), None)


def gap(a, b):
    """(mean(a) − mean(b), 2σ_d) over seeds, σ_d² = s_a²/n_a + s_b²/n_b (nan below 2 seeds)."""
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    return ma - mb, 2 * math.sqrt(sa**2 / len(a) + sb**2 / len(b)) if min(len(a), len(b)) > 1 else math.nan


def verdict(main):
    """The verdict lines of one task's main rows, for each teacher T of a distil@T arm."""
    by = {a: [r for r in main if r["arm"] == a] for a in {r["arm"] for r in main}}
    if "grpo" not in by:
        return ["no verdict: no GRPO runs"]
    grpo, steps, yes, lines = finals(by["grpo"]), max(r["step"] for r in by["grpo"]), ("no", "yes"), []
    for t in (t for t in TEACHERS if f"distil@{t}" in by):
        # offline and distil_token read no stop rule: model_S's runs stand for model_S_once's
        base = next(u for u in TEACHERS if TEACHERS[u] | {"stop": ""} == TEACHERS[t] | {"stop": ""})
        offline = f"offline@{base}"
        d, at = finals(by[f"distil@{t}"]), steps_to(seed_curve(by[f"distil@{t}"]), mean_std(grpo)[0])
        (diff, two_sd), off = gap(d, grpo), gap(d, finals(by.get(offline, [])))[0]
        fast = "no (never)" if at is None else f"{yes[at <= steps / 3]} (at step {at})"
        lines.append(
            f"distil@{t} reaches GRPO's final avg@8 ({mean_std(grpo)[0]:.3f}) within a third of its {steps:g}"
            f" steps: {fast}; ends above GRPO: {yes[diff > 0]} ({diff:+.3f}; beyond 2σ_d {two_sd:.3f}: "
            f"{yes[diff > two_sd]}); above {offline}: {'n/a' if math.isnan(off) else yes[off > 0]}"
        )
        for m in (m for m in ("distil_token", "offline", "sdpo", "opsd") if f"{m}@{base}" in by):
            diff, two_sd = gap(d, finals(by[f"{m}@{base}"]))  # the local term, cloning, the divergences
            best = "distil" if diff > two_sd else m if -diff > two_sd else "neither beyond 2σ_d"
            lines.append(f"distil@{t} vs {m}@{base}: {diff:+.3f} avg@8 (2σ_d {two_sd:.3f}): {best}")
    return lines


# -----------------------------------------------------------------------------
# Report: results/experiment.md and figures/exp_<task>.png, from the CSV's rows alone

INTRO = (
    "Generated by `python experiment.py --report_only` from experiment.csv; the protocol: experiment.py's "
    "header. avg@8, pass@8, maj@8: of 8 samples per problem; pass@1: greedy; a ± b: mean ± std over seeds. "
    "Tables per task: the starts (test split; with each teacher: t_adv ± se; at several evaluation seeds: "
    "the noise), the sweep (bold: the rate chosen), the main runs (final test evaluation) and the verdict."
)


def cell(xs):
    return f"{xs[0]:.3f}" if len(xs) == 1 else "{:.3f} ± {:.3f}".format(*mean_std(xs))


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""] if rows else []


def task_report(rows, figure):
    """The markdown section of one task: its figure, tables (INTRO) and verdict."""
    ph = {p: [r for r in rows if r["phase"] == p] for p in ("start", "premise", "noise", "main", "long")}
    adv = "{t_adv:+.3f} ± {t_adv_se:.3f} ({t_adv_n:.0f} cuts)"
    groups = [(f"{r['arm']} SFT", [r], "") for r in ph["start"]]
    groups += [(f"student with teacher {r['arm']}", [r], adv.format(**r)) for r in ph["premise"]]
    seeds = " ".join(r["seed"] for r in ph["noise"])
    groups += [(f"student, evaluation seeds {seeds}", ph["noise"], "")] if seeds else []
    start = [[name, *(cell([r[k] for r in g]) for k in METRICS), a] for name, g, a in groups]
    out = [f"## {rows[0]['task']}", "", f"![avg@8 against RL steps and training seconds]({figure})", ""]
    out += table(["start", *METRICS, "t_adv ± se"], start)
    premise = {r["arm"]: r for r in ph["premise"]}
    out += [f"- not trained, {why}" for why in filter(None, (gate(premise, t) for t in premise))] + [""]
    for sweep, phase in (("sweep", "main"), ("long_sweep", "long")):  # per budget: rates, runs, verdict
        scores, grid = sweep_scores(rows, sweep), []
        rates = sorted({lr for by in scores.values() for lr in by})
        for a, by in sorted(scores.items()):
            cells = [f"{by.get(lr, math.nan):.3f}" for lr in rates]
            grid.append([a] + [f"**{c}**" if lr == choose_rate(by) else c for lr, c in zip(rates, cells)])
        title = f"{phase} ({max(r['step'] for r in ph[phase]):g} steps)" if ph[phase] else phase
        out += [f"{title}: the {sweep.replace('_', ' ')}'s validation avg@8 by rate", ""] if grid else []
        out += table(["arm", *(f"{lr:g}" for lr in rates)], grid)
        if not ph[phase]:
            continue
        target, main = mean_std(finals([r for r in ph[phase] if r["arm"] == "grpo"]))[0], []
        for a in sorted({r["arm"] for r in ph[phase]}):
            x = [r for r in ph[phase] if r["arm"] == a]
            at, seconds = steps_to(seed_curve(x), target), mean_std(finals(x, "train_s"))[0]
            cells = [cell(finals(x, k)) for k in ("avg@8", "pass@1", "pass@8")]
            main.append([a, x[0]["lr"], len(finals(x)), *cells, "" if at is None else at, f"{seconds:.0f}"])
        head = ["arm", "lr", "seeds", "avg@8", "pass@1", "pass@8", "step at GRPO's final avg@8", "training s"]
        out += [f"{title}, test:", ""] + table(head, main)
        out += [f"- {line}" for line in verdict(ph[phase])] + [""]
    return out


def plot(rows, path):
    """avg@8 against RL steps and training seconds, a row per phase: per arm the seed mean ± std band."""
    from matplotlib.figure import Figure  # no pyplot: Agg renders the PNG, no display needed

    phases, arms = list(dict.fromkeys(r["phase"] for r in rows)), sorted({r["arm"] for r in rows})
    fig = Figure(figsize=(11, 4 * len(phases)))
    for axes, phase in zip(fig.subplots(len(phases), 2, sharey=True, squeeze=False), phases):
        for arm in (a for a in arms if any(r["arm"] == a and r["phase"] == phase for r in rows)):
            mine = [r for r in rows if (r["arm"], r["phase"]) == (arm, phase)]
            steps, mean, std, seconds = zip(*seed_curve(mine))
            low, high = [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)]
            for ax, x in zip(axes, (steps, seconds)):
                ax.plot(x, mean, label=arm, color=f"C{arms.index(arm)}")
                ax.fill_between(x, low, high, alpha=0.2, color=f"C{arms.index(arm)}")
        title, ylabel = f"{rows[0]['task']} {phase}", "test avg@8 (mean ± std over seeds)"
        axes[0].set(xlabel="RL step", ylabel=ylabel, title=title)
        axes[1].set(xlabel="training seconds (evaluations excluded)")
        axes[0].legend(fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def report(cfg, rows):
    """Write results/experiment.md (every task in the CSV) and each task's figure; returns their paths."""
    text, figures = ["# The DistIL demonstration", "", INTRO, ""], []
    for task in dict.fromkeys(r["task"] for r in rows):
        # an arm's runs at the rate its sweep now chooses (a later rate can win), long ones at the long one's
        mine = [r for r in rows if r["task"] == task]
        rate = {
            (p, a): f"{choose_rate(s):g}" for p in ("main", "long") for a, s in sweep_scores(mine).items()
        }
        rate |= {("long", a): f"{choose_rate(s):g}" for a, s in sweep_scores(mine, "long_sweep").items()}
        mine = [r for r in mine if rate.get((r["phase"], r["arm"]), r["lr"]) == r["lr"]]
        figure = os.path.join(cfg.figures, "exp_" + re.sub(r"\W+", "_", task).strip("_") + ".png")
        text += task_report(mine, os.path.relpath(figure, cfg.results))
        if any(r["phase"] in ("main", "long") for r in mine):
            os.makedirs(cfg.figures, exist_ok=True)
            plot([r for r in mine if r["phase"] in ("main", "long")], figure)
            figures.append(figure)
    os.makedirs(cfg.results, exist_ok=True)
    with open(md := os.path.join(cfg.results, "experiment.md"), "w") as f:
        f.write("\n".join(text))
    return [md, *figures]


# -----------------------------------------------------------------------------
# The entry point


def main(cfg):
    print(runs.config_text(cfg), flush=True)
    path = os.path.join(cfg.results, "experiment.csv")
    batches = ("premise", "noise"), ("sweep",), ("main",), ("long_sweep",), ("long",)
    for batch in batches if not cfg.report_only else ():
        rows = read_csv(path)
        todo, done = plan(cfg, rows), {key(r) for r in rows}
        pending = [j for j in todo if j["phase"] in batch and key(j) not in done]
        # an SFT runs if its rows are missing, or if a pending run needs its checkpoint and it is not here
        need = {j["config"][k] for j in pending for k in ("init_from", "teacher")}
        sft = {os.path.join(j["config"]["out_dir"], "sft.pt"): j for j in todo if j["phase"] == "start"}
        sft = [j for p, j in sft.items() if key(j) not in done or (p in need and not os.path.exists(p))]
        run_all(cfg, path, sft)
        run_all(cfg, path, pending)
    report(cfg, read_csv(path))


if __name__ == "__main__":
    main(parse_args())
