"""
runs.py — what a training run needs besides the algorithm: flags from a config dataclass, the
Runtime (device, torchrun ranks, autocast precision, tokenizer, task), seeds, sums over ranks, and
the files a run writes: atomic checkpoints, a JSONL log with one row per step, the console line,
and Ctrl-C's finish-the-step-save-and-stop. train_gpt.py and experiment.py use it; nothing here
knows about teachers or losses.

    seed_of(seed, stage, step, rank) = crc32("seed/stage/step/rank")    every draw is a function of it
    stage = Stage(cfg, rt, "rl_distil", start)   out_dir/rl_distil.{pt,jsonl}; the rows of a resumed run kept
    with ctrl_c_stops() as flag:                 Ctrl-C sets the flag; stage.after_step(step, flag, ..)
        for step in ..: ...; if stage.after_step(..): return    checkpoints, and stops every rank together
"""

import argparse
import contextlib
import dataclasses
import inspect
import json
import math
import os
import random
import re
import signal
import textwrap
import threading
import time
import zlib

import torch
import torch.distributed as dist

import tasks

CKPT_EVERY = 50  # steps between checkpoints of a stage: a killed run loses at most this many

# -----------------------------------------------------------------------------
# Flags: one --flag per field of a config dataclass, its help the field's trailing comment


def field_help(cls):
    return dict(re.findall(r"^\s+(\w+): \w+ = .*?  # (.*)$", inspect.getsource(cls), flags=re.M))


def str2bool(s):
    if s.lower() not in ("1", "true", "yes", "0", "false", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")
    return s.lower() in ("1", "true", "yes")


def add_flags(parser, cls, helps):
    """One --flag per field of `cls`, typed by its annotation (a bare bool flag means true)."""
    for f in dataclasses.fields(cls):
        if f.type in (bool, "bool"):
            kind = {"nargs": "?", "const": True, "type": str2bool}
        else:
            kind = {"type": {"int": int, "float": float, "str": str}.get(f.type, f.type)}
        text = helps.get(f.name, "").replace("%", "%%")  # argparse %-formats help
        parser.add_argument(f"--{f.name}", default=f.default, help=text, **kind)


def config_text(cfg):
    """Every field of a config as name=value, wrapped to the console's width."""
    fields = "  ".join(f"{f.name}={getattr(cfg, f.name)}" for f in dataclasses.fields(cfg))
    return textwrap.fill(
        fields, 108, initial_indent="config: ", subsequent_indent=" " * 8, break_long_words=False
    )


# -----------------------------------------------------------------------------
# The runtime: device, ranks, precision; seeds and sums over ranks


class Runtime:
    """What every stage needs besides the config: device (cuda > mps > cpu for auto), torchrun rank and
    world size (a DDP process group, created unless one exists), autocast precision, tokenizer, task."""

    def __init__(self, cfg):
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.rank = int(os.environ.get("RANK", 0))
        auto = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
        name = auto if cfg.device == "auto" else cfg.device
        local = int(os.environ.get("LOCAL_RANK", 0))
        self.device = torch.device(f"cuda:{local}" if name == "cuda" else name)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls for any fp32 work (Ampere+)
            torch.backends.cudnn.allow_tf32 = True
        self.owns_pg = self.world > 1 and not dist.is_initialized()  # then close() destroys it
        if self.owns_pg:
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.bf16 = name == "cuda" and torch.cuda.is_bf16_supported()  # bf16 autocast on CUDA, else fp32
        self.amp = (
            torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        )
        self.enc = tasks.get_tokenizer()
        self.eot = self.enc.eot_token  # ends every response; its id is the tokenizer's
        self.task = tasks.make_task(cfg.task)

    def log(self, *args):
        if self.rank == 0:
            print(*args, flush=True)

    def close(self):
        if self.owns_pg:
            dist.destroy_process_group()


def seed_of(seed, stage, step, rank):
    """A 31-bit seed, a fixed function of its arguments (Python's hash() is salted per process)."""
    return zlib.crc32(f"{seed}/{stage}/{step}/{rank}".encode()) & 0x7FFFFFFF


def reduce_sums(rt, sums):
    """Sum a dict of floats over ranks, by name (one all-reduce); float64 where the device has it."""
    dtype = torch.float32 if rt.device.type == "mps" else torch.float64
    x = torch.tensor(list(sums.values()), dtype=dtype, device=rt.device)
    if rt.world > 1:
        dist.all_reduce(x)
    return dict(zip(sums, x.tolist()))


def wrap(raw, cfg, rt):
    """The module the training forward goes through: optionally compiled, DDP across ranks."""
    model = torch.compile(raw, dynamic=True) if cfg.compile else raw
    if rt.world > 1:
        device_ids = [rt.device.index] if rt.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    return model


class Laps:
    """Wall time per phase of a step, each taken after the device finished the phase."""

    def __init__(self, device):
        self.device, self.times, self.t = device, {}, time.time()

    def __call__(self, name):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.time()
        self.times[name] = now - self.t
        self.t = now


# -----------------------------------------------------------------------------
# Checkpoints: a dict {"model", "model_args", ...}, written atomically; loading errors are one line


def save_checkpoint(path, **state):
    """Atomic: write a temporary file, then rename over the old checkpoint. Adds the RNG states."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    state["rng"] = {"python": random.getstate(), "torch": torch.get_rng_state(), "cuda": cuda}
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_checkpoint(path, what="checkpoint"):
    """Load a train_gpt.py checkpoint or exit with one line saying what is wrong."""
    if not os.path.exists(path):
        raise SystemExit(f"error: {what} {path} not found (train one: --stage sft; or --init_from PATH)")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say so in one line
        first_line = str(e).splitlines()[0]
        raise SystemExit(f"error: {what} {path} is unreadable ({type(e).__name__}: {first_line})") from None
    if not isinstance(ck, dict) or not {"model", "model_args"} <= set(ck):
        raise SystemExit(f"error: {what} {path} is not a train_gpt.py checkpoint (no model/model_args)")
    return ck


def resume_from(ck, opt):
    """Restore the optimizer and the global RNGs (per-step draws use seed_of()); return the step."""
    opt.load_state_dict(ck["optimizer"])
    random.setstate(ck["rng"]["python"])
    torch.set_rng_state(ck["rng"]["torch"])
    return ck["step"]


def check_finite(loss, stage, step, ckpt):
    """Stop with the step and the last good checkpoint named if the loss is NaN or inf."""
    if not math.isfinite(loss):
        raise SystemExit(
            f"error: {stage} loss is {loss} at step {step}; stopped before the update. "
            f"Last good checkpoint: {ckpt if os.path.exists(ckpt) else 'none yet'}"
        )


# -----------------------------------------------------------------------------
# A stage's files and console line; Ctrl-C


def read_jsonl(path):
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


def fmt_time(s):
    return f"{int(s // 60)}m{int(s % 60):02d}s"


class Stage:
    """The files of one stage: out_dir/<name>.pt (model, optimizer, step, config and `extra`, rank 0
    writes it) and out_dir/<name>.jsonl, one row per step. A resumed stage keeps the rows of the steps
    before `start` and drops the rest (they are run again)."""

    def __init__(self, cfg, rt, name, start):
        self.cfg, self.rt, self.name, self.start = cfg, rt, name, start
        self.ckpt = os.path.join(cfg.out_dir, name + ".pt")
        self.log_path = os.path.join(cfg.out_dir, name + ".jsonl")
        self.rows = []
        if rt.rank == 0:
            self.rows = [r for r in read_jsonl(self.log_path) if r["step"] < start]
            with open(self.log_path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in self.rows)
        self.t_start = time.time()

    def append(self, row):
        self.rows.append(row)
        if self.rt.rank == 0:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(row) + "\n")

    def save(self, step, raw, opt, **extra):
        if self.rt.rank == 0:
            model = {"model": raw.state_dict(), "model_args": dataclasses.asdict(raw.config)}
            run = {"optimizer": opt.state_dict(), "step": step, "config": dataclasses.asdict(self.cfg)}
            save_checkpoint(self.ckpt, **model, **run, stage=self.name.split("_")[0], **extra)

    def after_step(self, step, flag, raw, opt, **extra):
        """Checkpoint every CKPT_EVERY steps, and after a Ctrl-C on any rank (one all-reduce: every rank
        stops after the same step); True after a Ctrl-C: the stage stops, to continue with --resume."""
        stop = reduce_sums(self.rt, {"interrupted": float(flag["interrupted"])})["interrupted"] > 0
        if stop or (step + 1) % CKPT_EVERY == 0:
            self.save(step + 1, raw, opt, **extra)
        if stop:
            self.rt.log(f"{self.name}: stopped after step {step}; saved {self.ckpt} (continue with --resume)")
        return stop

    def line(self, step, total, row, keys, seconds):
        """The console line of a step: keys ((metric, format); '-' where not measured), speed, ETA."""
        eta = (time.time() - self.t_start) / (step + 1 - self.start) * (total - step - 1)
        cells = [f"{k} {format(row[k], f) if k in row and row[k] == row[k] else '-'}" for k, f in keys]
        speed = f"{row['tokens'] / seconds / 1e3:.1f}k tok/s | {seconds * 1e3:.0f} ms | eta {fmt_time(eta)}"
        return f"{self.name.split('_')[0]} {step:4d}/{total} | " + " | ".join(cells) + " | " + speed


@contextlib.contextmanager
def ctrl_c_stops():
    """First Ctrl-C: finish the step, save, stop (Stage.after_step polls the flag). Second: abort at once."""
    flag, main = {"interrupted": False}, threading.current_thread() is threading.main_thread()

    def handler(signum, frame):
        if flag["interrupted"]:
            raise KeyboardInterrupt
        flag["interrupted"] = True
        print("\nCtrl-C: finishing this step, then saving a checkpoint (press again to abort)", flush=True)

    old = signal.signal(signal.SIGINT, handler) if main else None
    try:
        yield flag
    finally:
        if main:
            signal.signal(signal.SIGINT, old)
