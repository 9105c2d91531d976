"""
tasks.py -- reasoning tasks with rich feedback, their oracle experts, and the tokenizer.

DistIL distils, on the student's own rollouts, a teacher that has seen rich feedback or a
programmatic expert. This file is the environment: two tasks behind one interface, generated
offline, verified exactly, each with an oracle that is an expert *from any prefix*.

    name      domain   prompt                          reference ("/" is a newline)    recovery
    mult      math     mult: 347*29                    347*9=3123 / 347*20=6940 / ...  restate the line
    listprog  code     listprog: / [3,1,2,5] -> [1,3]  filter odd / sort / take 2      undo, restart

A task is what a fork writes for its problems: name, domain, max_response_chars (the sampling budget),
    generate(split, n, seed) -> [Problem]           split "train" | "test", disjoint by split_key's hash
    verify(problem, text) -> (1.0 | 0.0, feedback)  any string; never raises; bounded time
    split_key(problem) -> str                       the same for every copy of a problem
    answer(problem, text) -> str | None             the final answer, for maj@n
Optional: oracle(problem, prefix) -> {char | EOT: prob} (--teacher oracle, --states support),
has_recovery(problem, text) (the recov metric), corrupt(problem, rng) -> a failed attempt (teacher-
format SFT examples; without it every SFT example is the reference in the student's context).
Task builds them all from a line state machine: the oracle is uniform over the canonical responses S
that complete the expert's state, marginalised to the next character; off S it finishes the line in
shape, then undoes or restates a wrong line (references stay clean: only rollouts meet a recovery).
Tokens are bytes (EOT = 256): the character oracle is a token oracle. Feedback (a knob, as in
make_task("listprog:feedback=verdict")): fix names the next step; full adds the symptoms; verdict is the
symptoms alone. Simplifications: 1. verifiers check the examples shown; 2. ASCII only.
Run:  python tasks.py [--tasks "mult;listprog:max_steps=2"] [--seed 0]   attempt, feedback, recovery
      python -m pytest -q tests/test_tasks.py
"""

import argparse
import ast
import hashlib
import inspect
import random
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache

import tiktoken

EOT = "<|endoftext|>"
EOT_ID = 256
FEEDBACK_CHARS = 256  # feedback budget in the teacher context: the first errors, not every line
PEER_CHARS = 256  # peer-solution budget: above every task's max_response_chars at defaults
MAX_TEXT = 4096  # verifiers give longer responses reward 0 unread: bounded time per call
TEST_PERCENT = 20  # share of canonical problem keys that belong to the test split
MEMO_LIMIT = 1 << 20  # oracle memo entries per task before it is dropped: bounded memory
FEEDBACK_KINDS = ("fix", "full", "verdict")  # fix: the next step; full: then the symptoms; verdict: symptoms
# the teacher-format SFT response (sft_example): recovery from a cut of an attempt, or the reference
SFT_TARGETS = ("recovery", "reference")
UNDO = "undo"  # the line that retracts the latest standing line (listprog)
RESTART = "restart"  # the line that retracts every standing line (listprog)
DEAD = None  # the expert's state after a line that only undo (or restart) can repair

# ----------------------------------------------------------------------------------------------
# Tokenizer, problems, contexts, text helpers


@cache
def get_tokenizer() -> tiktoken.Encoding:
    """Byte-level tiktoken encoding, offline: ids 0..255 are bytes, EOT_ID is EOT."""
    ranks = {bytes([i]): i for i in range(256)}
    return tiktoken.Encoding(
        "distil-bytes", pat_str=r"\S+|\s+", mergeable_ranks=ranks, special_tokens={EOT: EOT_ID}
    )


@dataclass(frozen=True)
class Problem:
    task: str  # name in TASKS
    prompt: str  # what the student is asked (student_context adds the layout)
    solution: str  # reference response, without EOT
    data: tuple  # task-specific and hashable: operands, examples


def split_of(key: str) -> str:
    """'test' for TEST_PERCENT% of canonical keys, by hash: disjoint splits by construction."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return "test" if h % 100 < TEST_PERCENT else "train"


def _printable(s: str) -> str:
    return "".join(c if " " <= c <= "~" or c == "\n" else "?" for c in s)


def _quote(s: str, n: int = 40) -> str:
    """Student text quoted inside feedback: one printable ASCII line of at most n characters."""
    s = _printable(s[: n + 1]).replace("\n", " ")
    return f"'{s[:n]}...'" if len(s) > n else f"'{s}'"


def _lines(text: str) -> list:
    return [ln for ln in text.split("\n") if ln.strip()]


def _last_line(text: str) -> str:
    return (_lines(text) or [""])[-1].strip()


def student_context(problem: Problem) -> str:
    return f"{problem.prompt}\nanswer:\n"


def teacher_context(problem: Problem, feedback: str = None, peer: str = None) -> str:
    """{prompt}\nfeedback:\n{feedback}\npeer:\n{peer}\nanswer:\n, each block printable and clipped."""
    parts = [problem.prompt]
    for label, text, budget in (("feedback:", feedback, FEEDBACK_CHARS), ("peer:", peer, PEER_CHARS)):
        if text is not None:  # printable, clipped to its budget
            text = _printable(text)
            parts += [label, text if len(text) <= budget else text[: budget - 3] + "..."]
    return "\n".join(parts) + "\nanswer:\n"


def sft_example(task, problem: Problem, rng, teacher_frac: float) -> tuple:
    """(context, response) for SFT: the student's context and the reference, or with prob teacher_frac a
    teacher's (feedback on a failed attempt, the reference as a peer, or both). sft_target=recovery: the
    context goes on with a cut of the attempt, a student's state, and the response is task.recovery.
    A task without corrupt (an optional capability) has no failed attempts: always the student's."""
    if getattr(task, "corrupt", None) is None or rng.random() >= teacher_frac:
        return student_context(problem), problem.solution
    kind, recovery = rng.randrange(3), getattr(task, "sft_target", "reference") == "recovery"
    make = task.wander if recovery and rng.random() < 0.5 else task.corrupt  # half: wander off at line 1
    attempt = make(problem, rng) if kind != 1 or recovery else None
    feedback = task.verify(problem, attempt)[1] if kind != 1 else None
    context = teacher_context(problem, feedback=feedback, peer=problem.solution if kind != 0 else None)
    if not recovery:
        return context, problem.solution
    prefix = attempt[: rng.randrange(len(attempt) + 1)]
    return context + prefix, task.recovery(problem, prefix)


def reprompt(problems, rewards, texts, feedback, group, mode="peer", self_peer=True) -> list:
    """SDPO's reprompt: each rollout's teacher context (rows: groups of `group` per prompt), with its feedback
    if it failed and/or the first *other* success of its prompt as a peer (self_peer: a lone success is
    its own peer); mode peer | feedback | both | none (the student's). None: no teacher signal."""
    if mode == "none":
        return [student_context(p) for p in problems]
    out = []
    for i, p in enumerate(problems):
        g0 = i - i % group
        mates = [j for j in range(g0, g0 + group) if j != i] + ([i] if self_peer else [])  # itself last
        peer = next((texts[j] for j in mates if rewards[j] > 0.5), None) if mode in ("both", "peer") else None
        fb = feedback[i] if rewards[i] <= 0.5 and feedback[i] and mode in ("both", "feedback") else None
        out.append(teacher_context(p, feedback=fb, peer=peer) if (fb or peer) else None)
    return out


def problem_sets(task, n_train: int, n_test: int, seed: int, val_n: int = 0) -> tuple:
    """(train, validation, test): validation is the first val_n distinct training problems (by split
    key), and every copy of them leaves the training list. ValueError if none would be left."""
    train, test = task.generate("train", n_train, seed), task.generate("test", n_test, seed)
    first = {}
    for p in train:
        first.setdefault(task.split_key(p), p)
    if val_n and val_n >= len(first):
        raise ValueError(f"val_n {val_n} leaves no training problems ({len(first)} distinct)")
    held = set(list(first)[:val_n])  # the first val_n distinct keys
    return [p for p in train if task.split_key(p) not in held], list(first.values())[:val_n], test


# ----------------------------------------------------------------------------------------------
# Task: the shared generator loop and the oracle engine (a counted state machine over lines)


class Task:
    """Builds the contract's methods, optional ones included, from a subclass's sample(rng) -> Problem or
    None, split_key, check (verify's body), answer, corrupt and the expert's state machine: start(p);
    moves(p, s) -> {canonical line: next state}; done(p, s); replay(p, s, line) -> the state after any
    other line (DEAD: only undo repairs it); hopeless(p, s), an optional prune. undo = True: UNDO
    retracts the latest standing line, RESTART every one; the state is the standing lines' stack."""

    name, domain, max_response_chars, undo = "", "", 0, False
    feedback, sft_target = "fix", "reference"

    def __init__(self, feedback: str = "fix", sft_target: str = None):
        if feedback not in FEEDBACK_KINDS:
            raise ValueError(f"feedback must be one of {', '.join(FEEDBACK_KINDS)}, got {feedback!r}")
        if sft_target is not None and sft_target not in SFT_TARGETS:
            raise ValueError(f"sft_target must be one of {', '.join(SFT_TARGETS)}, got {sft_target!r}")
        self.feedback, self.sft_target = feedback, sft_target or self.sft_target
        self._memo = {}  # the expert's moves, counts, replays and distributions, by (what, prompt, ...)

    def generate(self, split: str, n: int, seed: int) -> list:
        """n problems of the split: distinct prompts first, repeats once 200 draws in a row find none."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        rng, out, seen, misses = random.Random(f"{self.name}/{split}/{seed}"), [], set(), 0
        for _ in range(200 * n + 1000):  # rejection sampling: sample() may return None
            if len(out) == n:
                break
            p = self.sample(rng)
            if p is None or split_of(self.split_key(p)) != split:
                continue
            misses = misses + 1 if p.prompt in seen else 0
            if p.prompt not in seen or misses > 200:
                out.append(p)
                seen.add(p.prompt)
        if len(out) < n:
            raise RuntimeError(f"{self.name}: found {len(out)} of {n} {split} problems; loosen the knobs")
        return out

    def verify(self, p: Problem, text: str) -> tuple:
        if len(text) > MAX_TEXT:
            return 0.0, f"response too long: {len(text)} characters > {MAX_TEXT}"
        return self.check(p, text)

    def hopeless(self, p, s) -> bool:  # an optional prune: True where no canonical solution is left
        return False

    def finishes(self, p, s, cur: str) -> list:  # well-formed lines besides the legal ones cur may become
        return []

    def _legal(self, p, s) -> dict:
        key = ("legal", p.prompt, s)
        if key not in self._memo:
            self._memo[key] = {} if s is DEAD or self.done(p, s) else self.moves(p, s)
        return self._memo[key]

    def _n(self, p, s) -> int:
        """The number of canonical solutions through state s (s done counts 1: the response may end)."""
        key = ("n", p.prompt, s)
        if key not in self._memo:
            live = s is not DEAD and not self.hopeless(p, s)
            n = (int(self.done(p, s)) + sum(self._n(p, t) for t in self._legal(p, s).values())) if live else 0
            self._memo[key] = n
        return self._memo[key]

    def standing(self, text: str) -> list:
        """(line number, line) of the non-blank lines an undo task keeps."""
        out = []
        for i, line in enumerate(_lines(text), 1):
            if line.strip() == RESTART:
                out = []
            elif line.strip() != UNDO:
                out.append((i, line))
            elif out:
                out.pop()
        return out

    def stack(self, p: Problem, lines: list) -> tuple:
        """The expert's states after the lines: the last one, or (undo tasks) one per standing line."""
        text, stack = "\n".join(lines), (self.start(p),)
        for line in [ln for _, ln in self.standing(text)] if self.undo else _lines(text):
            t = self._legal(p, stack[-1]).get(line)  # None (DEAD is never legal): not a canonical line
            if t is None:
                key = ("replay", p.prompt, stack[-1], line)
                if key not in self._memo:
                    self._memo[key] = DEAD if stack[-1] is DEAD else self.replay(p, stack[-1], line)
                t = self._memo[key]
            stack = stack + (t,) if self.undo else (t,)
        return stack

    def has_recovery(self, p: Problem, text: str) -> bool:
        """Whether a line is retracted (undo tasks) or a line before the last one leaves S (mult)."""
        lines = _lines(text)
        if self.undo:
            retractions = [i for i, ln in enumerate(lines) if ln.strip() in (UNDO, RESTART)]
            return any(self.standing("\n".join(lines[:i])) for i in retractions)
        return any(ln not in self._legal(p, self.stack(p, lines[:i])[-1]) for i, ln in enumerate(lines[:-1]))

    def wander(self, p: Problem, rng) -> str:
        """A failed attempt off the reference from its first line (undo tasks; the others: corrupt)."""
        first = p.solution.split("\n")[0]
        for _ in range(20 if self.undo else 0):
            s, lines = self.start(p), []
            while moves := sorted(ln for ln in self._legal(p, s) if lines or ln != first):  # none once done
                lines.append(rng.choice(moves))
                s = self._legal(p, s)[lines[-1]]
                if rng.random() < 0.25:
                    break
            if lines and self.verify(p, "\n".join(lines))[0] == 0.0:
                return "\n".join(lines)
        return self.corrupt(p, rng)

    def said(self, fix: list, symptoms: list) -> str:
        """Feedback by the knob: the fix alone (if one is named), or the fix and the symptoms."""
        return "\n".join(fix if fix and self.feedback == "fix" else fix + symptoms)

    def fix_lines(self, p: Problem) -> list:
        """The lines the fix names, valid after any finished line: RESTART and the reference, or its last."""
        return [RESTART] + p.solution.split("\n") if self.undo else p.solution.split("\n")[-1:]

    def recovery(self, p: Problem, prefix: str) -> str:
        """What the fix asks for after prefix (the reference's rest, or fix_lines): reward 1 after it."""
        if p.solution.startswith(prefix):
            return p.solution[len(prefix) :]
        return ("\n" if prefix and not prefix.endswith("\n") else "") + "\n".join(self.fix_lines(p))

    def oracle(self, p: Problem, prefix: str) -> dict:
        if len(self._memo) > MEMO_LIMIT:
            self._memo = {}
        *lines, cur = prefix.split("\n")
        stack = self.stack(p, lines)
        s, shape = stack[-1], next(t for t in reversed(stack) if t is not DEAD)
        key = ("next", p.prompt, s, shape, cur)
        if key not in self._memo:
            self._memo[key] = self._next_char(p, s, shape, cur)
        return dict(self._memo[key])

    def _next_char(self, p, s, shape, cur: str) -> dict:
        """Uniform over the canonical completions from s, marginalised to the next character; from a
        state without one the expert first writes UNDO. A partial line off S is finished in the shape
        of the lines legal at `shape` (s, or below an invalid line the latest valid state)."""
        legal = self._legal(p, s)
        expert = {ln: (self._n(p, t), int(self.done(p, t))) for ln, t in legal.items() if self._n(p, t)}
        if not self._n(p, s):
            expert = {UNDO: (1, 0)}
        w = Counter({EOT: 1} if cur == "" and s is not DEAD and self.done(p, s) else {})
        for line, (n, stop) in expert.items():
            if line.startswith(cur):
                if len(line) > len(cur):
                    w[line[len(cur)]] += n
                else:  # the line is complete: end here, or a new line
                    w[EOT] += stop
                    w["\n"] += n - stop
        w = +w
        if not w and cur:  # mid-line off S: keep the line well formed
            pool = list(self._legal(p, shape)) + self.finishes(p, shape, cur)
            w = Counter(ln[len(cur)] for ln in pool if ln.startswith(cur) and len(ln) > len(cur))
            w = w or _nearest(pool, cur)
        w = w or Counter({"\n": 1})
        total = sum(w.values())
        return {c: k / total for c, k in w.items()}


def _nearest(pool: list, cur: str) -> Counter:
    """Next characters of the lines of pool at least as long as cur that agree with it in the most
    positions: cur is read as such a line miswritten, and the expert writes on in its shape."""
    fits = {ln: sum(a == b for a, b in zip(cur, ln)) for ln in pool if len(ln) >= len(cur)}
    best = max(fits.values(), default=None)
    return Counter(ln[len(cur)] if len(ln) > len(cur) else "\n" for ln, k in fits.items() if k == best)


def first_off_support(task: Task, p: Problem, text: str):
    """Index of the first character of text (len(text): its end) the oracle gives probability 0, or None."""
    for i in range(len(text) + 1):
        if task.oracle(p, text[:i]).get(text[i] if i < len(text) else EOT, 0.0) == 0.0:
            return i


def oracle_greedy(task: Task, p: Problem, prefix: str = "", max_chars: int = 1024, rng=None) -> str:
    """The oracle's completion of prefix: greedy (ties: the first key) or sampled with rng."""
    text = prefix
    while len(text) < max_chars:
        d = task.oracle(p, text)
        c = max(d, key=d.get) if rng is None else rng.choices(list(d), weights=list(d.values()))[0]
        if c == EOT:
            break
        text += c
    return text


# ----------------------------------------------------------------------------------------------
# math: multiplication with a worked scratchpad


class Mult(Task):
    """a*b: one line a*(d*10^i) per nonzero digit d of b, lowest first, then the sum line; reward: the
    number after the last '=' of the last line is a*b. Feedback: the first line off the scratchpad
    and the line to write instead (not under verdict), then the answer's verdict. The expert's state:
    (the value last stated for each working line, the last line is right); it restates the first wrong
    or missing one, then answers."""

    name, domain = "mult", "math"

    def _ref(self, p):
        ref = p.solution.split("\n")
        return ref, [r.split("=", 1) for r in ref[:-1]]  # working lines as (left side, value)

    def start(self, p):
        return ("",) * (p.solution.count("\n")), False

    def moves(self, p, s):
        ref, work = self._ref(p)
        j = next((j for j, (_, v) in enumerate(work) if s[0][j] != v), None)
        if j is None:
            return {ref[-1]: (s[0], True)}
        return {ref[j]: (s[0][:j] + (work[j][1],) + s[0][j + 1 :], False)}

    def done(self, p, s):
        return s[1]

    def replay(self, p, s, line):
        values, (lhs, _, v) = list(s[0]), line.replace(" ", "").partition("=")
        for j, (left, _) in enumerate(self._ref(p)[1]):
            if lhs == left:  # it restates working line j
                values[j] = v
        return tuple(values), self.check(p, line)[0] == 1.0

    def __init__(self, digits_a: int = 3, digits_b: int = 2, feedback: str = "full"):
        super().__init__(feedback)
        self.digits_a, self.digits_b = digits_a, digits_b
        longest = self.scratchpad(10**digits_a - 1, 10**digits_b - 1)
        self.max_response_chars = len(longest) + 1 + max(map(len, longest.split("\n")))  # + one restatement

    def finishes(self, p, s, cur):
        """Every working line, and the sum of the values as stated (right or wrong)."""
        stated = [v for v in s[0] if re.fullmatch(r"[0-9]{1,12}", v)]
        total = ["+".join(stated) + f"={sum(map(int, stated))}"] if len(stated) == len(s[0]) else []
        return p.solution.split("\n")[:-1] + total

    @staticmethod
    def scratchpad(a, b, values=None, total=None) -> str:
        """The worked solution; values/total override the partial products/sum (for corrupt)."""
        mults = [int(d) * 10**i for i, d in enumerate(reversed(str(b))) if d != "0"]
        values = values or [a * m for m in mults]
        lines = [f"{a}*{m}={v}" for m, v in zip(mults, values)]
        return "\n".join(lines + ["+".join(map(str, values)) + f"={sum(values) if total is None else total}"])

    def sample(self, rng):
        a = rng.randrange(10 ** (self.digits_a - 1), 10**self.digits_a)
        b = rng.randrange(10 ** (self.digits_b - 1), 10**self.digits_b)
        return Problem(self.name, f"mult: {a}*{b}", self.scratchpad(a, b), (a, b))

    def split_key(self, p):
        return "*".join(map(str, sorted(p.data)))

    def answer(self, p, text):
        m = re.fullmatch(r"[0-9]{1,40}", _last_line(text).rsplit("=", 1)[-1].strip())
        return str(int(m[0])) if m else None

    def check(self, p, text):
        got, ref, s = [ln.replace(" ", "") for ln in _lines(text)], p.solution.split("\n"), self.start(p)
        line, tip = "every line correct", ""
        for i, written in enumerate(got):  # the first line off the canonical path
            legal = self._legal(p, s)
            if written not in legal:
                claims = [r for r in ref if written.split("=")[0] == r.split("=")[0]]  # lines it restates
                line = f"line {i + 1} wrong: {_quote(written)}"
                right = (claims or list(legal) or ref[-1:])[0]
                tip = f"; correct: {right} (write it on a new line: a later line supersedes an earlier one)"
                break
            s = legal[written]
        if not tip and not self.done(p, s):  # every line on the path, and the path unfinished
            line, tip = f"line {len(got) + 1} missing", f"; correct: {list(self._legal(p, s))[0]}"
        ans = self.answer(p, text)
        ok = ans is not None and int(ans) == p.data[0] * p.data[1]
        verdict = f"final answer {ans}: {'correct' if ok else 'wrong'}"
        if ans is None:
            verdict = "no final answer: the last line must end with =N"
        fix = [line + tip] if tip and self.feedback != "verdict" else []
        return float(ok), self.said(fix, ([] if fix else [line]) + [verdict])

    def corrupt(self, p, rng):
        """An arithmetic slip, a forgotten shift (a*20 written as a*2), or a carry error."""
        a, b = p.data
        values = [int(v) for v in re.findall(r"=([0-9]+)$", p.solution, re.M)[:-1]]
        i, kind = rng.randrange(len(values)), rng.choice(["slip", "shift", "carry"])
        if kind == "carry":
            carry = rng.choice([-1, 1]) * 10 ** rng.randrange(1, 3)
            return self.scratchpad(a, b, values, sum(values) + carry)
        if kind == "shift" and values[i] % 10 == 0:
            values[i] //= 10
        else:
            step = 10 ** rng.randrange(len(str(values[i])))
            values[i] += step * (1 if values[i] < 10 else rng.choice([-1, 1]))
        return self.scratchpad(a, b, values)


# ----------------------------------------------------------------------------------------------
# code: a small list language -- our own interpreter with limits; model output is never eval'd

LP_STEPS = (  # the generator's and oracle's steps
    ("sort", "reverse", "dedup", "sum", "len", "max", "min")
    + tuple(f"{op} {k}" for op in ("take", "drop") for k in (1, 2, 3))
    + ("map +1", "map -1", "map *2", "map ^2", "filter even", "filter odd", "filter >2", "filter >5")
)
LP_MAX_LINES = 32  # longer programs are rejected before they run
LP_MAX_WORK = 2000  # work budget per run: each line costs 1 + the length of its input list
LP_MAX_LEN = 256  # size limits: longest list ...
LP_MAX_VALUE = 10**6  # ... and largest magnitude of any value

_LP_FIXED = {  # the steps without an argument (dup is in the language, not in LP_STEPS)
    "sort": lambda x: tuple(sorted(x)),
    "reverse": lambda x: x[::-1],
    "dedup": lambda x: tuple(dict.fromkeys(x)),
    "dup": lambda x: x + x,
    "sum": sum,
    "len": len,
    "max": max,
    "min": min,
    "map ^2": lambda x: tuple(v * v for v in x),
    "filter even": lambda x: tuple(v for v in x if v % 2 == 0),
    "filter odd": lambda x: tuple(v for v in x if v % 2),
}
_LP_ARG = {  # the steps with an argument N in 0..99: take N, drop N, map +N/-N/*N, filter >N/<N
    "take": lambda x, k: x[:k],
    "drop": lambda x, k: x[k:],
    "+": lambda x, k: tuple(v + k for v in x),
    "-": lambda x, k: tuple(v - k for v in x),
    "*": lambda x, k: tuple(v * k for v in x),
    ">": lambda x, k: tuple(v for v in x if v > k),
    "<": lambda x, k: tuple(v for v in x if v < k),
}
_LP_ARG_LINE = re.compile(r"(take|drop) ([0-9]{1,2})|map ([-+*])([0-9]{1,2})|filter ([<>])([0-9]{1,2})")


def _lp_apply(step: str, x):
    """One line on one value (a tuple or an int) -> the new value, or an error message (str)."""
    m = _LP_ARG_LINE.fullmatch(step)
    if m is None and step not in _LP_FIXED:
        return f"unknown step {_quote(step)}"
    if isinstance(x, int):
        return f"{step} needs a list, got the number {x}"
    if not x and step in ("max", "min"):
        return f"{step} of an empty list"
    y = _LP_FIXED[step](x) if m is None else _LP_ARG[m[1] or m[3] or m[5]](x, int(m[2] or m[4] or m[6]))
    if isinstance(y, tuple) and len(y) > LP_MAX_LEN:
        return f"list longer than {LP_MAX_LEN}"
    if max(map(abs, y if isinstance(y, tuple) else [y]), default=0) > LP_MAX_VALUE:
        return f"value beyond +-{LP_MAX_VALUE}"
    return y


def lp_run(program: list, x):
    """Run a program (its lines) on one input -> (value after each line, error or None)."""
    values, work = [], 0
    if len(program) > LP_MAX_LINES:
        return values, f"program longer than {LP_MAX_LINES} lines"
    for i, step in enumerate(program, 1):
        work += 1 + (len(x) if isinstance(x, tuple) else 0)
        if work > LP_MAX_WORK:
            return values, f"work limit {LP_MAX_WORK} reached at line {i}"
        x = _lp_apply(step, x)
        if isinstance(x, str):
            return values, f"line {i}: {x}"
        values.append(x)
    return values, None


def _fmt(v) -> str:
    return "[" + ",".join(map(str, v)) + "]" if isinstance(v, tuple) else str(v)


_LP_PROBES = ((3, 1, 4, 1, 5, 9, 2, 6), (5, 3, 5), (8, 0, 7, 2, 2, 9), (7,), ())


class ListProg(Task):
    """Write a program, one step per line, that maps every example input to its output. Symptoms, a test
    runner's: per failing example the trace, expected and actual; how many pass. split="program" holds
    out programs (a test problem's behaviour is never trained on), split="examples" example sets."""

    name, domain, undo = "listprog", "code", True

    def __init__(
        self,
        max_steps: int = 3,
        min_steps: int = 1,
        n_examples: int = 3,
        min_len: int = 4,
        max_len: int = 6,
        max_value: int = 9,
        feedback: str = "fix",
        sft_target: str = "recovery",
        split: str = "program",
    ):
        super().__init__(feedback, sft_target)
        if split not in ("program", "examples"):
            raise ValueError(f"split must be 'program' or 'examples', got {split!r}")
        self.max_steps, self.min_steps, self.n_examples, self.split = max_steps, min_steps, n_examples, split
        self.min_len, self.max_len, self.max_value = min_len, max_len, max_value
        line = max(map(len, LP_STEPS)) + 1
        # the attempt with one retracted line and its undo, then (after a cut) restart and the reference
        self.max_response_chars = (max_steps + 1) * line + len(UNDO) + len(RESTART) + 1 + max_steps * line

    def sample(self, rng):
        prog = [rng.choice(LP_STEPS) for _ in range(rng.randint(self.min_steps, self.max_steps))]
        xs = tuple(
            tuple(rng.randint(0, self.max_value) for _ in range(rng.randint(self.min_len, self.max_len)))
            for _ in range(self.n_examples)
        )
        runs = [lp_run(prog, x) for x in xs]
        if any(err for _, err in runs):
            return None
        states = [xs] + [tuple(vals[j] for vals, _ in runs) for j in range(len(prog))]
        k = states.index(states[-1])  # stop at the first line that passes (canonical)
        idle = any(a == b for a, b in zip(states, states[1:]))  # a line that changes nothing
        if idle or len(set(states[-1])) == 1 or () in states[-1] or k < self.min_steps:
            return None  # uninformative outputs, or too short
        examples = tuple(zip(xs, states[-1]))
        prompt = "listprog:\n" + "\n".join(f"{_fmt(x)} -> {_fmt(y)}" for x, y in examples)
        return Problem(self.name, prompt, "\n".join(prog[:k]), examples)

    def split_key(self, p):
        """The reference's behaviour on fixed probe inputs (equivalent programs share a split)."""
        if self.split == "examples":
            return p.prompt
        runs = [lp_run(p.solution.split("\n"), x) for x in _LP_PROBES]
        return ";".join("!" if err else _fmt(vals[-1]) for vals, err in runs)

    def start(self, p):
        return tuple(x for x, _ in p.data), 0  # state: (value of each example, lines used)

    def done(self, p, s):
        return s[0] == tuple(y for _, y in p.data)

    def hopeless(self, p, s):  # LP_STEPS never lengthen a list or turn a number into a list
        return any(
            isinstance(v, int) or len(v) < len(y) if isinstance(y, tuple) else isinstance(v, int) and v != y
            for v, (_, y) in zip(s[0], p.data)
        )

    def moves(self, p, s):
        after = {step: self.replay(p, s, step) for step in LP_STEPS} if s[1] < self.max_steps else {}
        return {step: t for step, t in after.items() if t is not DEAD and t[1] > s[1]}  # a line that counts

    def replay(self, p, s, line):
        ys = tuple(_lp_apply(line.strip(), v) for v in s[0])
        if any(isinstance(y, str) for y in ys):
            return DEAD  # a line that errs: only undo repairs it
        return s if ys == s[0] else (ys, s[1] + 1)  # a line that changes nothing does not count

    def _runs(self, p, text):
        prog = [ln.strip() for _, ln in self.standing(text)]
        return prog, [lp_run(prog, x) for x, _ in p.data]

    def check(self, p, text):
        """Fix: the first standing line after which no solution is left, then fix_lines (valid wherever
        the student stands); verdict: the test report, and the undos back to a line with a solution."""
        prog, runs = self._runs(p, text)
        report, passed = [], 0
        for i, ((x, want), (vals, err)) in enumerate(zip(p.data, runs) if prog else (), 1):
            if err is None and vals[-1] == want:
                passed += 1
                continue
            trace = "".join(f" | {step} {_fmt(v)}" for step, v in zip(prog, vals))
            got = f"error: {err}" if err else f"got {_fmt(vals[-1])}"
            report.append(f"example {i} FAIL: {_fmt(x)}{trace} -> {got}, expected {_fmt(want)}")
        report.append(f"{passed}/{len(p.data)} examples pass" if prog else "empty program")
        if prog and passed == len(p.data):
            return 1.0, "\n".join(report)
        standing, stack = self.standing(text), self.stack(p, text.split("\n"))
        k = next((k for k, s in enumerate(stack) if k and not self._n(p, s)), None)  # the start has one
        if self.feedback != "verdict":
            bad = "is invalid" if k is not None and stack[k] is DEAD else "leaves no solution"
            why = "not solved yet" if k is None else f"line {standing[k - 1][0]} {bad}"
            lines = self.fix_lines(p)
            return 0.0, self.said([f"{why}; write these {len(lines)} lines:\n" + "\n".join(lines)], report)
        if k is not None:
            n = len(stack) - k
            way = "to retract it" if n == 1 else f"{n} times to retract it and the lines after it"
            report.append(f"line {standing[k - 1][0]} leaves no solution: write {UNDO} {way}")
        return 0.0, "\n".join(report)

    def answer(self, p, text):
        """The program's behaviour on the examples: programs that agree there vote together."""
        prog, runs = self._runs(p, text)
        if not prog or any(err for _, err in runs):
            return None
        return ";".join(_fmt(vals[-1]) for vals, _ in runs)

    def corrupt(self, p, rng):
        """A wrong step, a missing step, or an extra step."""
        prog = p.solution.split("\n")
        for _ in range(50):
            out, i = list(prog), rng.randrange(len(prog))
            kind = rng.choice(["wrong", "missing", "extra"])
            if kind == "missing" and len(out) > 1:
                del out[i]
            elif kind == "extra":
                out.insert(i, rng.choice(LP_STEPS))
            else:
                out[i] = rng.choice(LP_STEPS)
            if self.verify(p, "\n".join(out))[0] == 0.0:
                return "\n".join(out)
        return ""


# ----------------------------------------------------------------------------------------------
# The registry, task specs, and a demo

TASKS = {t.name: t for t in (Mult(), ListProg())}


def make_task(spec: str) -> Task:
    """ "name" -> TASKS[name]; "name:knob=value,..." -> a fresh instance of that task's class with
    those knobs (constructor arguments; values read by ast.literal_eval, a bare word as a string)."""
    name, _, args = spec.partition(":")
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} in {spec!r}; tasks: {', '.join(TASKS)}")
    if not args:
        return TASKS[name]
    cls = type(TASKS[name])
    knobs, kw = list(inspect.signature(cls.__init__).parameters)[1:], {}
    for kv in args.split(","):
        k, eq, v = (x.strip() for x in kv.partition("="))
        if k not in knobs or not eq:
            msg = f"{kv.strip()!r} is not knob=value with a knob of {name} ({', '.join(knobs)})"
            raise ValueError(f"task {spec!r}: {msg}")
        try:
            word = v.isidentifier() and v not in ("True", "False", "None")
            kw[k] = v if word else ast.literal_eval(v)  # a bare word is a string: feedback=verdict
        except (ValueError, SyntaxError):
            msg = f"cannot read the value {v!r} of {k} (a Python literal, e.g. 3)"
            raise ValueError(f"task {spec!r}: {msg}") from None
    try:
        return cls(**kw)
    except (ValueError, TypeError, RuntimeError) as e:
        raise ValueError(f"task {spec!r}: {e}") from None


def demo(task: Task, seed: int = 0):
    """A problem, a corrupted attempt, its feedback, the oracle where it leaves S, and a recovery."""
    p = task.generate("train", 1, seed)[0]
    attempt = task.corrupt(p, random.Random(seed))
    reward, feedback = task.verify(p, attempt)
    print(f"=== {task.name} ({task.domain}) " + "=" * 60)
    print(f"student context:\n{student_context(p)}reference (reward {task.verify(p, p.solution)[0]}):")
    print(f"{p.solution}\ncorrupted attempt (reward {reward}):\n{attempt}\nfeedback:\n{feedback}")
    i = first_off_support(task, p, attempt)
    wrote = repr(attempt[i]) if i < len(attempt) else "EOT"
    dist = sorted(task.oracle(p, attempt[:i]).items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{'EOT' if c == EOT else repr(c)}: {q:.3f}" for c, q in dist)
    print(f"oracle after {attempt[:i]!r} (the attempt wrote {wrote}): {shown}")
    fixed = oracle_greedy(task, p, attempt + "\n")
    recovery = f"reward {task.verify(p, fixed)[0]}, recovery {task.has_recovery(p, fixed)}"
    print(f"greedy oracle from the whole attempt ({recovery}):\n{fixed}\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="DistIL tasks: a problem, an attempt, feedback, the oracle")
    ap.add_argument("--seed", type=int, default=0, help="seed of the demo problems")
    ap.add_argument("--tasks", default=";".join(TASKS), help="';'-separated name or name:knob=value,...")
    args = ap.parse_args()
    try:
        chosen = [make_task(s) for s in args.tasks.split(";") if s]
    except ValueError as e:
        ap.error(str(e))
    for task in chosen:
        demo(task, args.seed)
