"""
tasks.py -- reasoning tasks with rich feedback, their oracle experts, and the tokenizer.

DistIL distils, on the student's own rollouts, a teacher that has seen rich feedback or a
programmatic expert. This file is the environment: four tasks behind one interface, generated
offline, verified exactly, each with an oracle that is an expert *from any prefix*.

    name       domain   prompt                        reference ("/" is a newline)   recovery
    mult       math     mult: 347*29                  347*9=3123 / 347*20=6940 / ... restate the line
    countdown  math     countdown: 3 6 8 11 -> 59     8*6=48 / 48+11=59              undo
    listprog   code     listprog: / [3,1,2,5] -> [1,3]  filter odd / sort / take 2   undo
    chem       science  chem: H2 + O2 -> H2O          2H2 + O2 -> 2H2O               restate the equation

    TASKS[name].generate(split, n, seed) -> [Problem]    make_task("name:knob=value,...") -> Task
    task.verify(problem, text) -> (1.0 | 0.0, feedback)  any string; never raises; bounded time
    task.oracle(problem, prefix) -> {char | EOT: prob}   the expert's next character
    task.has_recovery(problem, text), task.corrupt(problem, rng), task.answer(problem, text)
Contexts: student {prompt}\nanswer:\n; teacher {prompt}\nfeedback:\n{fb}\npeer:\n{peer}\nanswer:\n.
Tokenizer: tiktoken, pure bytes (token i = byte i, EOT = 256): the character oracle is a token oracle.

Recovery. countdown, listprog: a line `undo` retracts the latest standing line, `restart` every
one; graded on the standing lines. mult, chem: graded on the last line, so a later line restating
a wrong one supersedes it. References stay clean: only on-policy rollouts ever meet a recovery.
Oracle. S = canonical responses (mult, chem: the reference; countdown: every valid solution;
listprog: every passing program of <= max_steps LP_STEPS lines); p(c | y) = uniform over S's
completions of the expert state y reached, marginalised to c. Off S the expert first recovers
with what the student sees: an unfinished line is finished in shape (as a legal line it starts,
else as the nearest line with characters miswritten); a state with no solution left is undone; a
wrong mult/chem line is restated; then the canonical completion follows.
Feedback names the fix: mult the corrected line; countdown/listprog the first line after which no
solution is left, then `restart` and the reference; chem the balanced equation. The countdown,
listprog and chem fix is valid after any prefix of the attempt (Task.recovery), so a teacher reading
it at a student's state needs no count of lines to undo. Knob feedback: fix (the default of
countdown, listprog, chem) the fix alone; full (mult's) the fix, then the symptoms (trace, counts);
verdict the symptoms alone, the ablation of what a small teacher can read. A tiny teacher copies a
fix best with no symptoms beside it (results/feedback.md). sft_target (knob) picks the
teacher-format SFT response; half its attempts leave the reference at once (Task.wander).
Simplifications: 1. verifiers check the examples shown; 2. chem equations come from reaction
families over an ion table (balanced, not all lab-favourable); 3. ASCII only.

Run:  python tasks.py [--tasks "mult;countdown:n_numbers=3"]   demo: attempt, feedback, recovery
      python tasks.py --bench    per-call timings and recovery rates; python -m pytest -q tests/test_tasks.py
"""

import argparse
import ast
import hashlib
import inspect
import math
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from functools import cache, lru_cache

import tiktoken

EOT = "<|endoftext|>"
EOT_ID = 256
FEEDBACK_CHARS = 256  # feedback budget in the teacher context: the first errors, not every line
PEER_CHARS = 256  # peer-solution budget: above every task's max_response_chars at defaults
MAX_TEXT = 4096  # verifiers give longer responses reward 0 unread: bounded time per call
TEST_PERCENT = 20  # share of canonical problem keys that belong to the test split
MEMO_LIMIT = 1 << 20  # oracle memo entries per task before it is dropped: bounded memory
# fix: the next step alone; full: the next step, then the symptoms; verdict: the symptoms alone
FEEDBACK_KINDS = ("fix", "full", "verdict")
# the teacher-format SFT response (sft_example): recovery from a cut of an attempt, or the reference
SFT_TARGETS = ("recovery", "reference")

# ----------------------------------------------------------------------------------------------
# Tokenizer, problems, contexts, text helpers


@cache
def get_tokenizer() -> tiktoken.Encoding:
    """Byte-level tiktoken encoding, offline: ids 0..255 are bytes, EOT_ID is EOT."""
    return tiktoken.Encoding(
        name="distil-bytes",
        pat_str=r"\S+|\s+",
        mergeable_ranks={bytes([i]): i for i in range(256)},
        special_tokens={EOT: EOT_ID},
    )


@dataclass(frozen=True)
class Problem:
    task: str  # name in TASKS
    prompt: str  # what the student is asked (student_context adds the layout)
    solution: str  # reference response, without EOT
    data: tuple  # task-specific and hashable: operands, numbers, examples, species


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


def _clip(s: str, budget: int) -> str:
    s = _printable(s)
    return s if len(s) <= budget else s[: budget - 3] + "..."


def _last_line(text: str) -> str:
    lines = [ln for ln in text.split("\n") if ln.strip()]
    return lines[-1].strip() if lines else ""


def student_context(problem: Problem) -> str:
    return f"{problem.prompt}\nanswer:\n"


def teacher_context(problem: Problem, feedback: str = None, peer: str = None) -> str:
    parts = [problem.prompt]
    if feedback is not None:
        parts += ["feedback:", _clip(feedback, FEEDBACK_CHARS)]
    if peer is not None:
        parts += ["peer:", _clip(peer, PEER_CHARS)]
    return "\n".join(parts) + "\nanswer:\n"


def sft_example(task, problem: Problem, rng, teacher_frac: float) -> tuple:
    """(context, response) for SFT: the student's context and the reference, or with prob teacher_frac
    a teacher's (feedback on a corrupted attempt, the reference as a peer, or both, a third each).
    sft_target=reference: the response is the reference. recovery (the default where the feedback names
    a fix): the context goes on with a random cut of a corrupted attempt, as a student's state does, and
    the response is task.recovery from it, so the teacher learns its job at the student's states."""
    if rng.random() >= teacher_frac:
        return student_context(problem), problem.solution
    kind, recovery = rng.randrange(3), task.sft_target == "recovery"
    # with recovery, half the attempts leave the reference at their first line (Task.wander)
    make = task.wander if recovery and rng.random() < 0.5 else task.corrupt
    attempt = make(problem, rng) if kind != 1 or recovery else None
    feedback = task.verify(problem, attempt)[1] if kind != 1 else None
    context = teacher_context(problem, feedback=feedback, peer=problem.solution if kind != 0 else None)
    if not recovery:
        return context, problem.solution
    prefix = attempt[: rng.randrange(len(attempt) + 1)]
    return context + prefix, task.recovery(problem, prefix)


def reprompt(problems, rewards, texts, feedback, group, mode="peer", self_peer=True) -> list:
    """SDPO's reprompt, the teacher context of every rollout (rows are consecutive groups of `group`
    per prompt): the feedback if the rollout failed, and/or the first *other* successful rollout of
    the prompt as a peer (self_peer: a lone success is its own peer, SDPO's
    dont_reprompt_on_self_success=False); mode peer | feedback | both | none (the student's context).
    None where neither exists: that rollout gets no teacher signal."""
    out = []
    for i, p in enumerate(problems):
        if mode == "none":
            out.append(student_context(p))
            continue
        g0 = i - i % group
        peer = next((texts[j] for j in range(g0, g0 + group) if j != i and rewards[j] > 0.5), None)
        if peer is None and self_peer and rewards[i] > 0.5:
            peer = texts[i]
        fb = feedback[i] if rewards[i] <= 0.5 and feedback[i] else None
        fb, peer = (
            (fb if mode in ("both", "feedback") else None),
            (peer if mode in ("both", "peer") else None),
        )
        out.append(teacher_context(p, feedback=fb, peer=peer) if (fb or peer) else None)
    return out


def problem_sets(task, n_train: int, n_test: int, seed: int, val_n: int = 0) -> tuple:
    """(train, validation, test) problem lists. The validation set is the first val_n distinct
    training problems (by split key, so equivalent problems count once); every copy of them leaves
    the training list, so training never sees them. ValueError if none would be left."""
    train, test = task.generate("train", n_train, seed), task.generate("test", n_test, seed)
    first = {}
    for p in train:
        first.setdefault(task.split_key(p), p)
    if val_n and val_n >= len(first):
        raise ValueError(f"val_n {val_n} leaves no training problems ({len(first)} distinct)")
    val = list(first.values())[:val_n]
    held = {task.split_key(p) for p in val}
    return [p for p in train if task.split_key(p) not in held], val, test


# ----------------------------------------------------------------------------------------------
# Task: the shared generator loop and the oracle engine (a counted state machine over lines)


class Task:
    """A task supplies sample/split_key/check/corrupt/answer and the expert's state machine:
    start(p) -> state; moves(p, s) -> {canonical line: next state}; done(p, s) -> bool;
    replay(p, s, line) -> state after any other written line (DEAD: a line only undo can
    repair); hopeless(p, s) (optional prune). undo = True: the line UNDO retracts the latest
    line still standing, and the expert's state is the stack of states of the standing lines."""

    name, domain, max_response_chars, undo = "", "", 0, False
    feedback, sft_target = "fix", "reference"

    def __init__(self, feedback: str = "fix", sft_target: str = None):
        if feedback not in FEEDBACK_KINDS:
            raise ValueError(f"feedback must be one of {', '.join(FEEDBACK_KINDS)}, got {feedback!r}")
        if sft_target is not None and sft_target not in SFT_TARGETS:
            raise ValueError(f"sft_target must be one of {', '.join(SFT_TARGETS)}, got {sft_target!r}")
        self.feedback, self.sft_target = feedback, sft_target or self.sft_target
        self._memo()

    def _memo(self):
        """Empty the oracle's memo tables (bounded memory: see MEMO_LIMIT)."""
        self._moves, self._count, self._dist, self._alive, self._replays = {}, {}, {}, {}, {}

    def generate(self, split: str, n: int, seed: int) -> list:
        """n problems of the split; distinct prompts first (until 200 draws in a row find no new
        one), then repeats: small splits are covered before any problem appears twice."""
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
        """(1.0 | 0.0, feedback) for any string: over MAX_TEXT characters 0 unread, else check."""
        if len(text) > MAX_TEXT:
            return 0.0, f"response too long: {len(text)} characters > {MAX_TEXT}"
        return self.check(p, text)

    def hopeless(self, p, s) -> bool:
        return False

    def finishes(self, p, s, cur: str) -> list:
        """Well-formed lines besides the legal ones that the partial line cur may be finished as."""
        return []

    def _legal(self, p, s) -> dict:
        key = (p.prompt, s)
        if key not in self._moves:
            self._moves[key] = {} if s is DEAD or self.done(p, s) else self.moves(p, s)
        return self._moves[key]

    def _n(self, p, s) -> int:
        """#canonical solutions through state s (s done counts 1: the response may end there)."""
        key = (p.prompt, s)
        n = self._count.get(key)
        if n is None:
            n = (
                0
                if s is DEAD or self.hopeless(p, s)
                else (int(self.done(p, s)) + sum(self._n(p, t) for t in self._legal(p, s).values()))
            )
            self._count[key] = n
        return n

    def _live(self, p, s) -> bool:
        """_n(p, s) > 0, by a depth-first search that stops at the first solution (verify's need)."""
        key = (p.prompt, s)
        if key not in self._count and key not in self._alive:
            self._alive[key] = (
                s is not DEAD
                and not self.hopeless(p, s)
                and (self.done(p, s) or any(self._live(p, t) for t in self._legal(p, s).values()))
            )
        return self._count[key] > 0 if key in self._count else self._alive[key]

    def stack(self, p: Problem, lines: list) -> tuple:
        """The expert's stack of states after the written lines (blank lines do not count); without
        undo the stack is one state. A canonical line moves along S, any other line replays."""
        stack = (self.start(p),)
        for line in lines:
            if not line.strip():
                continue
            if self.undo and line.strip() == UNDO:
                stack = stack[:-1] or stack  # nothing to retract: ignored
                continue
            if self.undo and line.strip() == RESTART:
                stack = stack[:1]
                continue
            t = self._legal(p, stack[-1]).get(line, _MISSING)
            if t is _MISSING:
                key = (p.prompt, stack[-1], line)
                if key not in self._replays:
                    self._replays[key] = DEAD if stack[-1] is DEAD else self.replay(p, stack[-1], line)
                t = self._replays[key]
            stack = stack + (t,) if self.undo else (t,)
        return stack

    def has_recovery(self, p: Problem, text: str) -> bool:
        """Whether a response recovers from a step: an undo or restart that retracts a line (undo
        tasks), or a line before the last one that is not the canonical next line (mult, chem)."""
        lines = [ln for ln in text.split("\n") if ln.strip()]
        if self.undo:
            return any(
                ln.strip() in (UNDO, RESTART) and len(self.stack(p, lines[:i])) > 1
                for i, ln in enumerate(lines)
            )
        return any(ln not in self._legal(p, self.stack(p, lines[:i])[-1]) for i, ln in enumerate(lines[:-1]))

    def standing(self, text: str) -> list:
        """(line number, line) of the non-blank lines an undo task keeps: UNDO retracts the latest,
        RESTART every one."""
        out = []
        for i, line in enumerate([ln for ln in text.split("\n") if ln.strip()], 1):
            if line.strip() == RESTART:
                out = []
            elif line.strip() != UNDO:
                out.append((i, line))
            elif out:
                out.pop()
        return out

    def first_dead(self, p: Problem, standing: list) -> tuple:
        """(k, stack): the first standing line standing[k - 1] after which no canonical solution is left
        (k None if every one leaves one) and the stack of states of the standing lines."""
        stack = self.stack(p, [line for _, line in standing])
        k = next((k for k, s in enumerate(stack) if k and not self._live(p, s)), None)  # the start has one
        return k, stack

    def way_back(self, p: Problem, standing: list) -> str:
        """Verdict feedback's recovery: the first standing line after which no canonical solution is
        left and the undo lines that retract it ("" when every standing line leaves one)."""
        k, stack = self.first_dead(p, standing)
        if k is None:
            return ""
        n = len(stack) - k
        return f"line {standing[k - 1][0]} leaves no solution: write {UNDO} " + (
            "to retract it" if n == 1 else f"{n} times to retract it and the lines after it"
        )

    def wander(self, p: Problem, rng) -> str:
        """A failed attempt that leaves the reference at its first line, as a student's failed attempts
        often do (undo tasks: a random walk over the legal lines, whose first is not the reference's;
        the others: corrupt). SFT's teacher examples on it cannot copy standing lines of the reference."""
        first = p.solution.split("\n")[0]
        for _ in range(20 if self.undo else 0):
            s, lines = self.start(p), []
            while not self.done(p, s):
                moves = sorted(ln for ln in self._legal(p, s) if lines or ln != first)
                if not moves:
                    break
                lines.append(rng.choice(moves))
                s = self._legal(p, s)[lines[-1]]
                if rng.random() < 0.25:
                    break
            if lines and self.verify(p, "\n".join(lines))[0] == 0.0:
                return "\n".join(lines)
        return self.corrupt(p, rng)

    def said(self, fix: list, symptoms: list) -> str:
        """A failed check's feedback from its lines by the knob: the fix alone (the symptoms where no fix
        is named), or (full) the fix, then the symptoms; under verdict `fix` is empty."""
        return "\n".join(fix if fix and self.feedback == "fix" else fix + symptoms)

    def fix_lines(self, p: Problem) -> list:
        """The lines the fix names, valid after any response once it ends its line: undo tasks RESTART
        and the reference, the others (graded by the last line) the reference's last line."""
        return [RESTART] + p.solution.split("\n") if self.undo else p.solution.split("\n")[-1:]

    def recovery(self, p: Problem, prefix: str) -> str:
        """What the fix asks for after prefix, a student's state: the rest of the reference where the
        prefix is on it, else a new line (if one is open) and fix_lines. verify(prefix + it) is 1.0."""
        if p.solution.startswith(prefix):
            return p.solution[len(prefix) :]
        return ("\n" if prefix and not prefix.endswith("\n") else "") + "\n".join(self.fix_lines(p))

    def fix_feedback(self, p: Problem, text: str) -> str:
        """Feedback's first lines for an undo task: the first line after which no solution is left
        (or that none is reached yet), then fix_lines, one per line as they are to be written: valid
        wherever the student stands, so the teacher needs no count of the lines to undo."""
        standing = self.standing(text)
        k, stack = self.first_dead(p, standing)
        bad = "is invalid" if k is not None and stack[k] is DEAD else "leaves no solution"
        why = "not solved yet" if k is None else f"line {standing[k - 1][0]} {bad}"
        lines = self.fix_lines(p)
        return f"{why}; write these {len(lines)} lines:\n" + "\n".join(lines)

    def oracle(self, p: Problem, prefix: str) -> dict:
        if sum(map(len, (self._moves, self._count, self._dist, self._alive, self._replays))) > MEMO_LIMIT:
            self._memo()
        *lines, cur = prefix.split("\n")
        stack = self.stack(p, lines)
        s, shape = stack[-1], next(t for t in reversed(stack) if t is not DEAD)
        key = (p.prompt, s, shape, cur)
        if key not in self._dist:
            self._dist[key] = self._next_char(p, s, shape, cur)
        return dict(self._dist[key])

    def _next_char(self, p, s, shape, cur: str) -> dict:
        """Uniform over the canonical completions from s, marginalised to the next character; from
        a state without one (undo tasks only) the expert first writes UNDO. A partial line off S is
        finished in the shape of the lines legal at `shape` (s, or below an invalid line the latest
        valid state: the line is judged as if the invalid one were not there)."""
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
    positions: cur is read as such a line with some characters miswritten, and the expert writes
    on in that line's shape ("\n" at its end) instead of breaking the line off."""
    fits = {ln: sum(a == b for a, b in zip(cur, ln)) for ln in pool if len(ln) >= len(cur)}
    best = max(fits.values(), default=None)
    return Counter(ln[len(cur)] if len(ln) > len(cur) else "\n" for ln, k in fits.items() if k == best)


UNDO = "undo"  # the line that retracts the latest standing line (countdown, listprog)
RESTART = "restart"  # the line that retracts every standing line (countdown, listprog)
DEAD = None  # the expert's state after a line that only undo (or restart) can repair
_MISSING = object()


def first_off_support(task: Task, p: Problem, text: str):
    """Index of the first character of text (len(text): its end) the oracle gives probability 0."""
    for i in range(len(text) + 1):
        if task.oracle(p, text[:i]).get(text[i] if i < len(text) else EOT, 0.0) == 0.0:
            return i
    return None


def oracle_greedy(task: Task, p: Problem, prefix: str = "", max_chars: int = 1024, rng=None) -> str:
    """The oracle's completion of prefix, greedy (ties: the first key), or sampled with rng (a
    random.Random); stops at EOT or max_chars."""
    text = prefix
    while len(text) < max_chars:
        d = task.oracle(p, text)
        c = max(d, key=d.get) if rng is None else rng.choices(list(d), weights=list(d.values()))[0]
        if c == EOT:
            break
        text += c
    return text


def recovery_rates(task: Task, n: int = 150, seed: int = 0) -> tuple:
    """(from corrupted, from random): the share of n test problems whose greedy oracle completion
    reaches reward 1 from a random prefix of task.corrupt's attempt, and from 1-8 random
    characters of the task's alphabet (the characters of the reference solutions)."""
    rng, problems = random.Random(seed), task.generate("test", n, seed)
    alphabet = sorted(set("".join(p.solution for p in problems)) | {"\n"})
    cut = [(p, a[: rng.randint(0, len(a))]) for p in problems for a in [task.corrupt(p, rng)]]
    noise = [(p, "".join(rng.choices(alphabet, k=rng.randint(1, 8)))) for p in problems]
    return tuple(
        sum(task.verify(p, oracle_greedy(task, p, s))[0] for p, s in pairs) / n for pairs in (cut, noise)
    )


class _LastLine(Task):
    """Expert for tasks graded by their last line against one reference (mult, chem). The state
    is (the value last stated for each working line of the reference, the last line is a correct
    answer). Recovery by restatement: the expert writes the first working line whose stated value
    is wrong or missing, recomputed from the operands in view, then the answer line. Mid-line it
    finishes the line the student is writing in shape (see Task._next_char) before restating."""

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

    def first_mistake(self, p, lines):
        """(index, the line it should have been) of the first line off the canonical path, or None."""
        ref, s = p.solution.split("\n"), self.start(p)
        for i, line in enumerate(lines):
            legal = self._legal(p, s)
            if line not in legal:
                claims = [r for r in ref if line.replace(" ", "").split("=")[0] == r.split("=")[0]]
                return i, (claims or list(legal) or ref[-1:])[0]
            s = legal[line]
        return None


# ----------------------------------------------------------------------------------------------
# math: multiplication with a worked scratchpad


class Mult(_LastLine):
    """a*b: one line a*(d*10^i) per nonzero digit d of b, lowest first, then the sum line.
    Reward: the number after the last '=' of the last line is a*b. Recovery: a later line
    restating a working line (same left side) supersedes it. Feedback: the first line off the
    worked scratchpad, the line to write instead (not with feedback="verdict"), the answer's verdict."""

    name, domain = "mult", "math"

    def __init__(self, digits_a: int = 3, digits_b: int = 2, feedback: str = "full"):
        super().__init__(feedback)
        self.digits_a, self.digits_b = digits_a, digits_b
        longest = self.scratchpad(10**digits_a - 1, 10**digits_b - 1)
        self.max_response_chars = len(longest) + 1 + max(map(len, longest.split("\n")))  # + one restatement

    def finishes(self, p, s, cur):
        """Every working line, and the sum of the values as stated (right or wrong)."""
        stated = [v for v in s[0] if re.fullmatch(r"[0-9]{1,12}", v)]
        return p.solution.split("\n")[:-1] + (
            ["+".join(stated) + f"={sum(map(int, stated))}"] if len(stated) == len(s[0]) else []
        )

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
        got = [ln.replace(" ", "") for ln in text.split("\n") if ln.strip()]
        wrong = self.first_mistake(p, got)
        if wrong:
            line = f"line {wrong[0] + 1} wrong: {_quote(got[wrong[0]])}"
            tip = f"; correct: {wrong[1]} (write it on a new line: a later line supersedes an earlier one)"
        elif not self.done(p, s := self.stack(p, got)[-1]):
            line, tip = f"line {len(got) + 1} missing", f"; correct: {list(self._legal(p, s))[0]}"
        else:
            line, tip = "every line correct", ""
        ans = self.answer(p, text)
        ok = ans is not None and int(ans) == p.data[0] * p.data[1]
        verdict = (
            "no final answer: the last line must end with =N"
            if ans is None
            else f"final answer {ans}: {'correct' if ok else 'wrong'}"
        )
        fix = [line + tip] if tip and self.feedback != "verdict" else []
        return float(ok), self.said(fix, ([] if fix else [line]) + [verdict])

    def corrupt(self, p, rng):
        """An arithmetic slip, a forgotten shift (a*20 written as a*2), or a carry error."""
        a, b = p.data
        values = [int(v) for v in re.findall(r"=([0-9]+)$", p.solution, re.M)[:-1]]
        i, kind = rng.randrange(len(values)), rng.choice(["slip", "shift", "carry"])
        if kind == "carry":
            return self.scratchpad(
                a, b, values, sum(values) + rng.choice([-1, 1]) * 10 ** rng.randrange(1, 3)
            )
        if kind == "shift" and values[i] % 10 == 0:
            values[i] //= 10
        else:
            values[i] += 10 ** rng.randrange(len(str(values[i]))) * (
                1 if values[i] < 10 else rng.choice([-1, 1])
            )
        return self.scratchpad(a, b, values)


# ----------------------------------------------------------------------------------------------
# math: Countdown, one operation per line


def _cd_eval(a: int, op: str, b: int) -> int:
    """a op b, or 0 where the rules forbid it (every result must be a positive integer)."""
    return max(0, {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b and a % b == 0 else 0}[op])


@lru_cache(maxsize=1 << 16)
def _cd_legal(rem: tuple) -> dict:
    """Every legal canonical line from the sorted remaining numbers -> (remaining after, result)."""
    out = {}
    for i in range(len(rem)):
        for j in range(i + 1, len(rem)):
            b, a = rem[i], rem[j]  # sorted, so a >= b
            rest = rem[:i] + rem[i + 1 : j] + rem[j + 1 :]
            for x, op, y in ((a, "+", b), (b, "+", a), (a, "*", b), (b, "*", a), (a, "-", b), (a, "/", b)):
                r = _cd_eval(x, op, y)
                if r:
                    out.setdefault(f"{x}{op}{y}={r}", (tuple(sorted(rest + (r,))), r))
    return out


_CD_LINE = re.compile(r" *([0-9]{1,9}) *([-+*/]) *([0-9]{1,9}) *= *([0-9]{1,12}) *")


def _cd_check(rem: tuple, line: str):
    """One written line against the remaining numbers -> (remaining after, true result, error)."""
    m = _CD_LINE.fullmatch(line)
    if not m:
        return rem, None, f"cannot read {_quote(line)}; write a+b=c"
    a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
    left = list(rem)
    for x in (a, b):
        if x not in left:
            return rem, None, f"{x} is not available"
        left.remove(x)
    r = _cd_eval(a, op, b)
    if not r:
        return rem, None, f"{a}{op}{b} is not allowed: results must be positive integers"
    rest = tuple(sorted(left + [r]))
    return rest, r, (f"{a}{op}{b}={c} is wrong: {a}{op}{b}={r}" if c != r else None)


class Countdown(Task):
    """Reach the target from the numbers with + - * /, one operation a?b=c per line, each number
    (given or produced) used at most once, every result a positive integer; the last standing
    line's result is the target. Recovery: a line `undo` retracts the latest standing line (an
    invalid line, or a valid one that leaves no solution), `restart` every one. Feedback: the fix
    (Task.fix_feedback: the first line that leaves no solution, restart and the reference); with
    feedback="full" followed by the symptoms that feedback="verdict" gives alone: each standing
    line's evaluation and the numbers left, until the first invalid one, whether the target was
    reached, which line to retract."""

    name, domain, undo = "countdown", "math", True

    def __init__(
        self,
        n_numbers: int = 4,
        max_number: int = 15,
        max_target: int = 100,
        feedback: str = "fix",
        sft_target: str = "recovery",
    ):
        super().__init__(feedback, sft_target)
        self.n_numbers, self.max_number, self.max_target = n_numbers, max_number, max_target
        d = len(str(max_number**n_numbers))  # no result exceeds the product of all numbers
        line = 3 * d + 3  # a?b=c and its newline
        # the attempt with one retracted line and its undo, then (after a cut) restart and the reference
        self.max_response_chars = n_numbers * line + len(UNDO) + len(RESTART) + 1 + (n_numbers - 1) * line

    def sample(self, rng):
        nums = tuple(sorted(rng.randint(1, self.max_number) for _ in range(self.n_numbers)))
        s, lines, results = (nums, None), [], []
        for _ in range(rng.randint(2, self.n_numbers - 1)):
            line, s = rng.choice(list(_cd_legal(s[0]).items()))
            lines.append(line)
            results.append(s[1])
        target = s[1]  # it must need two lines or more
        if (
            target in nums
            or not 10 <= target <= self.max_target
            or any(r == target for _, r in _cd_legal(nums).values())
        ):
            return None
        return Problem(
            self.name,
            f"countdown: {' '.join(map(str, nums))} -> {target}",
            "\n".join(lines[: results.index(target) + 1]),
            (nums, target),
        )

    def split_key(self, p):
        return f"{p.data[0]}->{p.data[1]}"

    def start(self, p):
        return p.data[0], None  # state: (remaining numbers, last result)

    def moves(self, p, s):
        return _cd_legal(s[0])

    def done(self, p, s):
        return s[1] == p.data[1]

    def replay(self, p, s, line):
        rest, r, err = _cd_check(s[0], line)
        return DEAD if err else (rest, r)

    def _run(self, p, text):
        """-> (trace of the standing lines, every standing line valid, last result, standing)."""
        rem, last, trace, standing = p.data[0], None, [], self.standing(text)
        for i, line in standing:
            rem, r, err = _cd_check(rem, line)
            if err:
                return (
                    trace + [f"line {i}: {_quote(line.replace(' ', ''), 24)[1:-1]}: {err}"],
                    False,
                    None,
                    standing,
                )
            last = r
            trace.append(f"line {i}: {line.replace(' ', '')} ok, left {' '.join(map(str, rem))}")
        return trace, bool(trace), last, standing

    def check(self, p, text):
        trace, valid, last, standing = self._run(p, text)
        ok = valid and last == p.data[1]
        rows = (trace or ["no operations"]) + [f"target {p.data[1]} {'reached' if ok else 'not reached'}"]
        if ok:
            return 1.0, "\n".join(rows)
        if self.feedback != "verdict":
            return 0.0, self.said([self.fix_feedback(p, text)], rows)
        return 0.0, "\n".join(rows + [self.way_back(p, standing)]).strip()

    def answer(self, p, text):
        _, valid, last, _ = self._run(p, text)
        return str(last) if valid else None

    def corrupt(self, p, rng):
        """An arithmetic slip, a number that was already used, or a wrong last operation."""
        lines = p.solution.split("\n")
        for _ in range(20):
            kind = rng.choice(["slip", "used", "last"])
            out, i, rem = (
                list(lines),
                len(lines) - 1 if kind == "last" else rng.randrange(len(lines)),
                p.data[0],
            )
            for line in lines[:i]:
                rem = _cd_check(rem, line)[0]
            used = [x for x in p.data[0] if x not in rem]
            a, op, b, c = re.fullmatch(r"([0-9]+)(.)([0-9]+)=([0-9]+)", lines[i]).groups()
            if kind == "slip" or not used and kind == "used":
                out[i] = f"{a}{op}{b}={max(1, int(c) + rng.choice([-2, -1, 1, 2, 10]))}"
            else:
                a, b = rng.choice(used) if kind == "used" else int(a), int(b)
                ops = rng.sample([o for o in "+-*/" if o != op], 3) if kind == "last" else [op]
                op = next((o for o in ops if _cd_eval(a, o, b)), "+")  # keep the arithmetic valid
                out[i] = f"{a}{op}{b}={_cd_eval(a, op, b)}"
            if self.verify(p, "\n".join(out))[0] == 0.0:
                return "\n".join(out)
        return lines[0]  # one line never reaches the target (sample)


# ----------------------------------------------------------------------------------------------
# code: a small list language -- our own interpreter with limits; model output is never eval'd

LP_STEPS = (
    "sort",
    "reverse",
    "dedup",
    "sum",
    "len",
    "max",
    "min",
    "take 1",
    "take 2",
    "take 3",
    "drop 1",
    "drop 2",
    "drop 3",
    "map +1",
    "map -1",
    "map *2",
    "map ^2",
    "filter even",
    "filter odd",
    "filter >2",
    "filter >5",
)  # the generator's and oracle's steps
LP_MAX_LINES = 32  # longer programs are rejected before they run
LP_MAX_WORK = 2000  # work budget per run: each line costs 1 + the length of its input list
LP_MAX_LEN = 256  # size limits: longest list ...
LP_MAX_VALUE = 10**6  # ... and largest magnitude of any value

_LP_FIXED = {
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
_LP_ARG = re.compile(r"(take|drop) ([0-9]{1,2})|map ([-+*])([0-9]{1,2})|filter ([<>])([0-9]{1,2})")


@lru_cache(maxsize=4096)
def _lp_parse(step: str):
    """A line of the list language -> the function it denotes, or None. The grammar: the keys of
    _LP_FIXED (dup is in the language, not in LP_STEPS), take N, drop N, map +N, map -N, map *N,
    filter >N, filter <N (N in 0..99)."""
    m = _LP_ARG.fullmatch(step)
    if m is None:
        return _LP_FIXED.get(step)
    k = int(m[2] or m[4] or m[6])
    return {
        "take": lambda x: x[:k],
        "drop": lambda x: x[k:],
        "+": lambda x: tuple(v + k for v in x),
        "-": lambda x: tuple(v - k for v in x),
        "*": lambda x: tuple(v * k for v in x),
        ">": lambda x: tuple(v for v in x if v > k),
        "<": lambda x: tuple(v for v in x if v < k),
    }[m[1] or m[3] or m[5]]


def _lp_apply(step: str, x):
    """One line on one value (a tuple or an int) -> the new value, or an error message (str)."""
    f = _lp_parse(step)
    if f is None:
        return f"unknown step {_quote(step)}"
    if isinstance(x, int):
        return f"{step} needs a list, got the number {x}"
    if not x and step in ("max", "min"):
        return f"{step} of an empty list"
    y = f(x)
    if isinstance(y, int):
        return y if abs(y) <= LP_MAX_VALUE else f"value beyond +-{LP_MAX_VALUE}"
    if len(y) > LP_MAX_LEN:
        return f"list longer than {LP_MAX_LEN}"
    if y and (max(y) > LP_MAX_VALUE or min(y) < -LP_MAX_VALUE):
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


# ----------------------------------------------------------------------------------------------
# code: program synthesis from input/output examples in the list language

_LP_PROBES = ((3, 1, 4, 1, 5, 9, 2, 6), (5, 3, 5), (8, 0, 7, 2, 2, 9), (7,), ())


class ListProg(Task):
    """Write a program, one step per line (a pipeline), that maps every example input to its
    output. Recovery: a line `undo` retracts the latest standing line (a step that errs, or one
    after which no program of max_steps useful steps passes), `restart` every one. Feedback, like
    a test runner: per failing example the trace of the standing program (each line and the value
    after it) and expected versus actual; how many examples pass; which line to retract
    (feedback="verdict"). The default (feedback="fix") is the fix alone instead (Task.fix_feedback:
    the first step that leaves no passing program, restart and the reference), "full" the fix and
    then the test runner's report. Splits (split=): "program" holds out programs (a test problem's
    behaviour is never trained on: generalisation to unseen compositions), "examples" holds out
    example sets (test programs may be trained on, with other inputs)."""

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
        if any(a == b for a, b in zip(states, states[1:])) or len(set(states[-1])) == 1 or () in states[-1]:
            return None  # a line that changes nothing; uninformative outputs
        k = states.index(states[-1])  # stop at the first line that passes (canonical)
        if k < self.min_steps:
            return None
        examples = tuple(zip(xs, states[-1]))
        prompt = "listprog:\n" + "\n".join(f"{_fmt(x)} -> {_fmt(y)}" for x, y in examples)
        return Problem(self.name, prompt, "\n".join(prog[:k]), examples)

    def split_key(self, p):
        """The reference's behaviour on fixed probe inputs (equivalent programs share a split), or
        with split="examples" the example set."""
        if self.split == "examples":
            return p.prompt
        runs = [lp_run(p.solution.split("\n"), x) for x in _LP_PROBES]
        return ";".join("!" if err else _fmt(vals[-1]) for vals, err in runs)

    def start(self, p):
        return tuple(x for x, _ in p.data), 0  # state: (value of each example, lines used)

    def done(self, p, s):
        return s[0] == tuple(y for _, y in p.data)

    def hopeless(self, p, s):  # LP_STEPS never lengthen a list or leave a number
        return any(
            isinstance(v, int) or len(v) < len(y) if isinstance(y, tuple) else isinstance(v, int) and v != y
            for v, (_, y) in zip(s[0], p.data)
        )

    def moves(self, p, s):
        out = {}
        if s[1] < self.max_steps:
            for step in LP_STEPS:
                t = self.replay(p, s, step)
                if t is not DEAD and t[1] > s[1]:
                    out[step] = t
        return out

    def replay(self, p, s, line):
        ys = tuple(_lp_apply(line.strip(), v) for v in s[0])
        if any(isinstance(y, str) for y in ys):
            return DEAD  # a line that errs: only undo repairs it
        return s if ys == s[0] else (ys, s[1] + 1)  # a line that changes nothing does not count

    def _runs(self, p, text):
        standing = self.standing(text)
        prog = [ln.strip() for _, ln in standing]
        return prog, [lp_run(prog, x) for x, _ in p.data], standing

    def check(self, p, text):
        prog, runs, standing = self._runs(p, text)
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
        if self.feedback != "verdict":
            return 0.0, self.said([self.fix_feedback(p, text)], report)
        return 0.0, "\n".join(report + [self.way_back(p, standing)]).strip()

    def answer(self, p, text):
        """The program's behaviour on the examples: programs that agree there vote together."""
        prog, runs, _ = self._runs(p, text)
        return (
            None if not prog or any(err for _, err in runs) else ";".join(_fmt(vals[-1]) for vals, _ in runs)
        )

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
# science: our own chemical formula parser and an exact balancer

ELEMENTS = frozenset(
    [
        "H",
        "He",
        "Li",
        "Be",
        "B",
        "C",
        "N",
        "O",
        "F",
        "Ne",
        "Na",
        "Mg",
        "Al",
        "Si",
        "P",
        "S",
        "Cl",
        "Ar",
        "K",
        "Ca",
        "Sc",
        "Ti",
        "V",
        "Cr",
        "Mn",
        "Fe",
        "Co",
        "Ni",
        "Cu",
        "Zn",
        "Ga",
        "Ge",
        "As",
        "Se",
        "Br",
        "Kr",
        "Rb",
        "Sr",
        "Y",
        "Zr",
        "Nb",
        "Mo",
        "Tc",
        "Ru",
        "Rh",
        "Pd",
        "Ag",
        "Cd",
        "In",
        "Sn",
        "Sb",
        "Te",
        "I",
        "Xe",
        "Cs",
        "Ba",
        "La",
        "Hf",
        "Ta",
        "W",
        "Re",
        "Os",
        "Ir",
        "Pt",
        "Au",
        "Hg",
        "Tl",
        "Pb",
        "Bi",
    ]
)
_TOKEN = re.compile(r"([A-Z][a-z]?|\(|\))([0-9]*)")


@lru_cache(maxsize=4096)
def parse_formula(s: str):
    """Atom counts of a formula like Ca3(PO4)2 or CuSO4.5H2O (hydrate), or an error (str).
    Cached: treat the returned dict as read-only."""
    if not 0 < len(s) <= 40:
        return "a formula has 1 to 40 characters"
    total = Counter()
    for k, part in enumerate(s.split(".")):
        m = re.match(r"[0-9]*", part)
        mult, i, stack = int(m[0]) if m[0] and k else 1, m.end() if k else 0, [Counter()]
        while i < len(part):
            t = _TOKEN.match(part, i)
            if not t or len(t[2]) > 3 or t[2][:1] == "0" or (t[1] == "(" and t[2]):
                return f"cannot read {_quote(part[i:])}"
            n, i = int(t[2] or 1), t.end()
            if t[1] == "(":
                if len(stack) > 4:
                    return "parentheses nested too deeply"
                stack.append(Counter())
            elif t[1] == ")":
                if len(stack) == 1:
                    return "unbalanced ')'"
                for e, c in stack.pop().items():
                    stack[-1][e] += c * n
            elif t[1] in ELEMENTS:
                stack[-1][t[1]] += n
            else:
                return f"unknown element {t[1]}"
        if len(stack) > 1 or not stack[0]:
            return "unbalanced '('" if len(stack) > 1 else "empty formula part"
        for e, c in stack[0].items():
            total[e] += c * mult
    return dict(total)


def balance(lhs: tuple, rhs: tuple):
    """Smallest positive integer coefficients balancing lhs -> rhs (the nullspace of the element
    x species matrix by fraction-free elimination), or None unless they exist and are unique up
    to scale."""
    comps = [parse_formula(f) for f in lhs + rhs]
    rows = [
        [c.get(e, 0) * (1 if j < len(lhs) else -1) for j, c in enumerate(comps)]
        for e in sorted({e for c in comps for e in c})
    ]
    pivots = []
    for col in range(len(comps)):
        r = next((i for i in range(len(pivots), len(rows)) if rows[i][col]), None)
        if r is None:
            continue
        k = len(pivots)
        rows[k], rows[r] = rows[r], rows[k]
        pk = rows[k]
        for i, row in enumerate(rows):
            if i != k and row[col]:
                row = [a * pk[col] - b * row[col] for a, b in zip(row, pk)]
                g = math.gcd(*row) or 1
                rows[i] = [v // g for v in row]
        pivots.append(col)
    free = [c for c in range(len(comps)) if c not in pivots]
    if len(free) != 1:
        return None
    f, scale = free[0], math.lcm(*(rows[k][col] for k, col in enumerate(pivots)))
    x = [scale if c == f else 0 for c in range(len(comps))]
    for k, col in enumerate(pivots):
        x[col] = -rows[k][f] * (scale // rows[k][col])
    g = math.gcd(*x)
    x = [v // g for v in x]
    if min(x) < 0 < max(x):
        return None
    x = [abs(v) for v in x]
    return tuple(x) if min(x) > 0 else None


# ----------------------------------------------------------------------------------------------
# science: balancing equations drawn from reaction families over an ion table

_CATIONS = {
    "Li": 1,
    "Na": 1,
    "K": 1,
    "NH4": 1,
    "Ag": 1,
    "Mg": 2,
    "Ca": 2,
    "Sr": 2,
    "Ba": 2,
    "Zn": 2,
    "Cu": 2,
    "Ni": 2,
    "Pb": 2,
    "Fe": (2, 3),
    "Al": 3,
    "Cr": 3,
}
_ANIONS = {
    "F": 1,
    "Cl": 1,
    "Br": 1,
    "I": 1,
    "OH": 1,
    "NO3": 1,
    "ClO3": 1,
    "SO4": 2,
    "CO3": 2,
    "SO3": 2,
    "CrO4": 2,
    "PO4": 3,
}
_NONMETALS = {
    "O2": ("O", 2),
    "S": ("S", 2),
    "N2": ("N", 3),
    "P4": ("P", 3),
    "F2": ("F", 1),
    "Cl2": ("Cl", 1),
    "Br2": ("Br", 1),
    "I2": ("I", 1),
}  # element as written -> (anion, charge)
_IONS = [(c, q) for c, qs in _CATIONS.items() for q in (qs if isinstance(qs, tuple) else (qs,))]
_METALS = [(c, q) for c, q in _IONS if c != "NH4"]
_SALTS = [(c, q, a, qa) for c, q in _IONS for a, qa in _ANIONS.items()]


def _ionic(cation: str, qc: int, anion: str, qa: int) -> str:
    """Charge-balanced formula: _ionic('Ca', 2, 'PO4', 3) = 'Ca3(PO4)2'."""

    def part(ion, n):
        return ion if n == 1 else f"({ion}){n}" if sum(map(str.isupper, ion)) > 1 else f"{ion}{n}"

    g = math.gcd(qc, qa)
    return part(cation, qa // g) + part(anion, qc // g)


def _fuel(x: int, y: int, z: int) -> str:
    return "".join(f"{e}{n if n > 1 else ''}" for e, n in (("C", x), ("H", y), ("O", z)) if n)


def reaction_families() -> dict:
    """family -> [(reactants, products)]: combustion (complete and to CO) of CxHyOz, synthesis
    and decomposition (to elements, of carbonates, hydroxides, chlorates, nitrates), single
    displacement (metal + salt, metal + acid, halogen + halide), double displacement (salt +
    salt, acid + base), and hydrate dehydration. Not all are favourable in a lab: the task is
    to balance, and every equation balances uniquely (checked when the pool is built)."""
    fuels = [_fuel(x, y, z) for x in range(1, 9) for y in range(2, 2 * x + 3, 2) for z in range(3)]
    ion = {(c, q, a): _ionic(c, q, a, qa) for c, q, a, qa in _SALTS}
    halides = ["F", "Cl", "Br", "I"]
    return {
        "combustion": [((f, "O2"), ("CO2", "H2O")) for f in fuels]
        + [((f, "O2"), ("CO", "H2O")) for f in fuels],
        "synthesis": [
            ((m, x), (_ionic(m, q, a, qa),)) for m, q in _METALS for x, (a, qa) in _NONMETALS.items()
        ],
        "decomposition": [
            ((_ionic(m, q, a, qa),), (m, x)) for m, q in _METALS for x, (a, qa) in _NONMETALS.items()
        ]
        + [((ion[m, q, "CO3"],), (_ionic(m, q, "O", 2), "CO2")) for m, q in _METALS]
        + [((ion[m, q, "OH"],), (_ionic(m, q, "O", 2), "H2O")) for m, q in _METALS]
        + [((ion[m, q, "ClO3"],), (ion[m, q, "Cl"], "O2")) for m, q in _IONS]
        + [((ion[m, q, "NO3"],), (_ionic(m, q, "O", 2), "NO2", "O2")) for m, q in _METALS],
        "single displacement": [
            ((m, ion[c, qc, a]), (ion[m, q, a], c))
            for m, q in _METALS
            for c, qc in _METALS
            for a in _ANIONS
            if m != c and a != "OH"
        ]
        + [
            ((m, _ionic("H", 1, a, qa)), (ion[m, q, a], "H2"))
            for m, q in _METALS
            for a, qa in _ANIONS.items()
            if a not in ("OH", "NO3", "ClO3")
        ]
        + [
            ((x + "2", ion[c, q, y]), (ion[c, q, x], y + "2"))
            for x in halides
            for y in halides
            for c, q in _IONS
            if halides.index(x) < halides.index(y)
        ],
        "double displacement": [
            ((ion[c, q, a], ion[d, r, b]), (ion[c, q, b], ion[d, r, a]))
            for i, (c, q) in enumerate(_IONS)
            for d, r in _IONS[i + 1 :]
            if c != d
            for a in _ANIONS
            for b in _ANIONS
            if a != b
        ]
        + [
            ((_ionic("H", 1, a, qa), ion[c, q, "OH"]), (ion[c, q, a], "H2O"))
            for c, q in _IONS
            for a, qa in _ANIONS.items()
            if a != "OH"
        ],
        "hydrate": [
            ((f"{ion[c, q, a]}.{n if n > 1 else ''}H2O",), (ion[c, q, a], "H2O"))
            for c, q, a, _ in _SALTS
            if a != "OH"
            for n in range(2, 11)
        ],
    }


@cache
def _balanced_families() -> tuple:
    """(family, reactants, products, coefficients) for every equation of reaction_families()
    that balances uniquely with positive coefficients; computed once (a few seconds)."""
    out = []
    for family, reactions in reaction_families().items():
        for lhs, rhs in dict.fromkeys(reactions):
            coefs = balance(lhs, rhs) if len(set(lhs + rhs)) == len(lhs + rhs) else None
            if coefs is not None:
                out.append((family, lhs, rhs, coefs))
    return tuple(out)


def _equation(lhs, rhs, coefs=None) -> str:
    coefs = coefs or [1] * (len(lhs) + len(rhs))
    terms = [f"{c if c != 1 else ''}{f}" for c, f in zip(coefs, lhs + rhs)]
    return " + ".join(terms[: len(lhs)]) + " -> " + " + ".join(terms[len(lhs) :])


_TERM = re.compile(r" *([0-9]{0,3}) *([A-Z(][A-Za-z0-9().]{0,39}) *")


class Chem(_LastLine):
    """Balance the equation: the smallest positive integer coefficients (1 omitted), species in
    the prompt's order. A family is drawn uniformly, then an equation of it with at most
    max_species species and coefficients 2..max_coef (all 1s: nothing to do). Graded by the
    last line; recovery: a later equation supersedes an earlier one. Feedback (feedback="fix"): the
    balanced equation to write and the coefficients to change; with "full" then, and with "verdict"
    alone, the atom count of every element on each side, the unbalanced elements, a common factor."""

    name, domain = "chem", "science"

    def __init__(
        self, max_coef: int = 10, max_species: int = 4, feedback: str = "fix", sft_target: str = "recovery"
    ):
        super().__init__(feedback, sft_target)
        if max_coef < 2 or max_species < 2:
            raise ValueError(f"max_coef >= 2 and max_species >= 2 (got {max_coef}, {max_species})")
        self.max_coef, self.max_species = max_coef, max_species

    @property
    def pool(self) -> dict:
        """family -> [Problem]: the equations the knobs allow, built on first use."""
        if "_pool" not in self.__dict__:
            pool = {}
            for family, lhs, rhs, coefs in _balanced_families():
                if 1 < max(coefs) <= self.max_coef and len(coefs) <= self.max_species:
                    pool.setdefault(family, []).append(
                        Problem(
                            self.name,
                            f"chem: {_equation(lhs, rhs)}",
                            _equation(lhs, rhs, coefs),
                            (lhs, rhs, coefs),
                        )
                    )
            self._pool = pool
        return self._pool

    @property
    def max_response_chars(self) -> int:
        return 2 * max(len(p.solution) for ps in self.pool.values() for p in ps) + 1  # + one restatement

    def sample(self, rng):
        return rng.choice(self.pool[rng.choice(sorted(self.pool))])

    def finishes(self, p, s, cur):
        """The reference, and cur finished in shape: its current species, then every later term
        with its correct coefficient (a wrong coefficient stays wrong, the equation well formed)."""
        lhs, rhs, coefs = p.data
        species = lhs + rhs
        terms = [f"{c if c != 1 else ''}{f}" for c, f in zip(coefs, species)]
        for i in range(len(cur), 0, -1):  # the longest start of cur that a finish extends
            k, seg = len(re.findall(r"\+|-?>", cur[:i])), re.split(r"\+|-?>", cur[:i])[-1]
            m = re.fullmatch(r" *[0-9]{0,3}(.*)", seg)
            if k < len(species) and species[k].startswith(m[1]):
                now = (
                    (" " if k and not seg else "") + terms[k] if not seg.strip() else species[k][len(m[1]) :]
                )
                line = (
                    cur[:i]
                    + now
                    + "".join(
                        (" -> " if j == len(lhs) else " + ") + terms[j] for j in range(k + 1, len(species))
                    )
                )
                if line.startswith(cur):
                    return [p.solution, line]
        return [p.solution]

    def split_key(self, p):
        """The species, unordered: a reaction and its reverse share a split."""
        return " ".join(sorted(p.data[0] + p.data[1]))

    def _parse(self, text):
        """The last line -> [[(coefficient, formula), ...] per side], or an error (str)."""
        line, sides = _last_line(text), []
        if line.count("->") != 1:
            return f"last line {_quote(line)} needs exactly one '->'"
        for side in line.split("->"):
            terms = [(t, _TERM.fullmatch(t)) for t in side.split("+")]
            bad = [t for t, m in terms if not m]
            if bad:
                return f"cannot read the term {_quote(bad[0])}"
            sides.append([(int(m[1] or 1), m[2]) for _, m in terms])
        return sides

    def answer(self, p, text):
        sides = self._parse(text)
        return None if isinstance(sides, str) else " ".join(str(c) for side in sides for c, _ in side)

    def check(self, p, text):
        lhs, rhs, _ = p.data
        sides, back = self._parse(text), "write the corrected equation on a new line: the last line is graded"
        write = [f"write: {p.solution}"] if self.feedback != "verdict" else []
        if isinstance(sides, str):
            return 0.0, self.said(write, [sides, back])
        if tuple(tuple(f for _, f in side) for side in sides) != (lhs, rhs):
            return 0.0, self.said(write, [f"the species must be {_equation(lhs, rhs)}, in this order", back])
        counts = [Counter(), Counter()]
        for count, side in zip(counts, sides):
            for c, f in side:
                for e, n in parse_formula(f).items():
                    count[e] += c * n
        rows = [
            f"{e}: {counts[0][e]} left, {counts[1][e]} right"
            + ("" if counts[0][e] == counts[1][e] else " UNBALANCED")
            for e in dict.fromkeys(list(counts[0]) + list(counts[1]))
        ]
        cs = [c for side in sides for c, _ in side]
        balanced, g = counts[0] == counts[1], math.gcd(*cs)
        if min(cs) == 0:
            rows.append("every coefficient must be positive")
        elif balanced:
            rows.append(f"balanced, but every coefficient shares the factor {g}" if g > 1 else "balanced")
        ok = balanced and g == 1 and min(cs) > 0
        changes = [f"{f} {c}->{w}" for c, w, f in zip(cs, p.data[2], lhs + rhs) if c != w]
        write = [f"{write[0]} (change {', '.join(changes)})"] if write and not ok else []
        return float(ok), self.said(write, rows + ([] if ok else [back]))

    def corrupt(self, p, rng):
        """One coefficient off by one, every coefficient 1 (not balanced at all), or all doubled."""
        lhs, rhs, coefs = p.data
        for _ in range(20):
            kind, cs = rng.choice(["off", "ones", "double"]), list(coefs)
            if kind == "off":
                i = rng.randrange(len(cs))
                cs[i] = cs[i] + 1 if cs[i] == 1 else cs[i] + rng.choice([-1, 1])
            else:
                cs = [1] * len(cs) if kind == "ones" else [2 * c for c in cs]
            if self.verify(p, _equation(lhs, rhs, cs))[0] == 0.0:
                return _equation(lhs, rhs, cs)
        return _equation(lhs, rhs)


TASKS = {t.name: t for t in (Mult(), Countdown(), ListProg(), Chem())}


def make_task(spec: str) -> Task:
    """ "name" -> TASKS[name]; "name:knob=value,..." -> a fresh instance of that task's class with
    those knobs (constructor arguments; values read by ast.literal_eval, a bare word as a string)."""
    name, _, args = spec.partition(":")
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} in {spec!r}; tasks: {', '.join(TASKS)}")
    cls = type(TASKS[name])
    if not args:
        return TASKS[name]
    knobs = list(inspect.signature(cls.__init__).parameters)[1:]
    kw = {}
    for kv in args.split(","):
        k, eq, v = (x.strip() for x in kv.partition("="))
        if k not in knobs or not eq:
            raise ValueError(
                f"task {spec!r}: {kv.strip()!r} is not knob=value with a knob of {name} ({', '.join(knobs)})"
            )
        try:
            word = v.isidentifier() and v not in ("True", "False", "None")
            kw[k] = v if word else ast.literal_eval(v)  # a bare word is a string: feedback=verdict
        except (ValueError, SyntaxError):
            raise ValueError(
                f"task {spec!r}: cannot read the value {v!r} of {k} (a Python literal, e.g. 3)"
            ) from None
    try:
        return cls(**kw)
    except (ValueError, TypeError, RuntimeError) as e:
        raise ValueError(f"task {spec!r}: {e}") from None


# ----------------------------------------------------------------------------------------------
# Demo and timings


def demo(specs: list, seed: int = 0):
    for task in map(make_task, specs):
        p = task.generate("train", 1, seed)[0]
        attempt = task.corrupt(p, random.Random(seed))
        i = first_off_support(task, p, attempt)
        print(f"=== {task.name} ({task.domain}) " + "=" * 60)
        print(
            f"student context:\n{student_context(p)}reference (reward "
            f"{task.verify(p, p.solution)[0]}):\n{p.solution}"
        )
        reward, feedback = task.verify(p, attempt)
        print(f"corrupted attempt (reward {reward}):\n{attempt}\nfeedback:\n{feedback}")
        wrote = repr(attempt[i]) if i < len(attempt) else "EOT"
        dist = sorted(task.oracle(p, attempt[:i]).items(), key=lambda kv: -kv[1])
        print(
            f"oracle after {attempt[:i]!r} (the attempt wrote {wrote}): "
            + ", ".join(f"{'EOT' if c == EOT else repr(c)}: {q:.3f}" for c, q in dist)
        )
        fixed = oracle_greedy(task, p, attempt + "\n")
        print(
            f"greedy oracle from the whole attempt (reward {task.verify(p, fixed)[0]}, recovery "
            f"{task.has_recovery(p, fixed)}):\n{fixed}\n"
        )


def _per_call(fn, args) -> float:
    t0 = time.perf_counter()
    for a in args:
        fn(*a)
    return (time.perf_counter() - t0) / len(args)


def bench(specs: list, seed: int = 0, n: int = 200):
    """Seconds per call on n training problems, verify/oracle on references and corrupted attempts;
    'oracle 1st' is the first call per problem (it builds the counts), 'cold' the first pass over
    every prefix after that, 'warm' a second pass (memo hits); then recovery_rates on 150 test
    problems (seed 0)."""
    print(
        f"{'task':10} {'generate':>10} {'verify':>10} {'oracle 1st':>11} {'oracle cold':>12} "
        f"{'oracle warm':>12} {'recovers: corrupted':>20} {'random':>7}  spec"
    )
    for spec in specs:
        task = type(make_task(spec))(**_knobs(make_task(spec)))  # a fresh instance: an empty memo
        t_gen = _per_call(lambda: task.generate("train", n, seed), [()]) / n
        problems, rng = task.generate("train", n, seed), random.Random(seed)
        pairs = [(p, t) for p in problems for t in (p.solution, task.corrupt(p, rng))]
        t_ver = _per_call(task.verify, pairs)
        t_first = _per_call(task.oracle, [(p, "") for p in problems])
        prefixes = [(p, t[:i]) for p, t in pairs for i in range(len(t) + 1)]
        t_cold, t_warm = _per_call(task.oracle, prefixes), _per_call(task.oracle, prefixes)
        cut, noise = recovery_rates(task)
        print(
            f"{task.name:10} {t_gen * 1e3:8.3f}ms {t_ver * 1e6:8.1f}us {t_first * 1e3:9.3f}ms "
            f"{t_cold * 1e6:10.1f}us {t_warm * 1e6:10.1f}us {cut:20.3f} {noise:7.3f}  {spec}"
        )


def _knobs(task) -> dict:
    return {k: getattr(task, k) for k in list(inspect.signature(type(task).__init__).parameters)[1:]}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="DistIL tasks: demo (default) or timings (--bench)")
    ap.add_argument(
        "--bench", action="store_true", help="print per-call timings and recovery rates instead of the demo"
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the demo/bench problems")
    ap.add_argument(
        "--tasks", default=";".join(TASKS), help="';'-separated specs, name or name:knob=value,..."
    )
    args = ap.parse_args()
    try:
        specs = [s for s in args.tasks.split(";") if s]
        [make_task(s) for s in specs]
    except ValueError as e:
        ap.error(str(e))
    bench(specs, args.seed) if args.bench else demo(specs, args.seed)
