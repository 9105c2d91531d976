"""Tests for tasks.py: references verify, corrupted attempts fail with feedback naming the error,
verifiers survive adversarial strings, the oracle is the uniform distribution it claims to be and
recovers from wrong prefixes, splits are disjoint, the tokenizer round-trips, limits hold."""

import random
import re
import time
from collections import Counter

import pytest

import tasks
from tasks import EOT, EOT_ID, TASKS, Problem, first_off_support, oracle_greedy

N = 40  # problems per task and split in most tests
EXPERIMENT_SPECS = [
    "mult:digits_a=2,digits_b=1",
    "listprog:max_steps=2,n_examples=2,min_len=3,max_len=5,split=examples",
]  # the small knobs experiments run (experiment.py's default task is the first)
VERDICT = {name: tasks.make_task(f"{name}:feedback=verdict") for name in TASKS}  # the symptoms-only ablation
FULL = {name: tasks.make_task(f"{name}:feedback=full") for name in TASKS}  # the fix, then the symptoms


@pytest.fixture(scope="module")
def problems():
    return {name: t.generate("train", N, 1) + t.generate("test", N, 1) for name, t in TASKS.items()}


def oracle_support(task, p, prefix=""):
    """Every complete response the oracle can produce from prefix, with its probability (DFS)."""
    out, stack = {}, [(prefix, 1.0)]
    while stack:
        prefix, q = stack.pop()
        for c, pc in task.oracle(p, prefix).items():
            if c == EOT:
                out[prefix] = out.get(prefix, 0.0) + q * pc
            else:
                stack.append((prefix + c, q * pc))
    return out


# -----------------------------------------------------------------------------
# References, corrupted attempts, feedback


def test_reference_solutions_verify_to_one_and_fit_the_sampling_budget(problems):
    for name, ps in problems.items():
        for p in ps:
            assert TASKS[name].verify(p, p.solution)[0] == 1.0, (p, TASKS[name].verify(p, p.solution))
            assert len(p.solution) <= TASKS[name].max_response_chars, p
            assert p.prompt.isascii() and p.solution.isascii()


def test_mult_feedback_names_the_first_wrong_line_and_its_correct_value(problems):
    rng = random.Random(0)
    for p in problems["mult"]:
        bad = TASKS["mult"].corrupt(p, rng)
        reward, fb = TASKS["mult"].verify(p, bad)
        ref, got = p.solution.split("\n"), bad.split("\n")
        i = next(k for k in range(len(ref)) if ref[k] != got[k])
        assert reward == 0.0 and f"line {i + 1} wrong" in fb and f"correct: {ref[i]}" in fb, (bad, fb)
        assert "final answer" in fb and "wrong" in fb.split("\n")[-1]


def way_back_undos(fb):
    """The number of undo lines the feedback's way back asks for (0: none asked)."""
    m = re.search(r"leaves no solution: write undo (to retract it|(\d+) times)", fb)
    return 0 if m is None else int(m[2] or 1)


def test_feedback_way_back_names_the_fewest_undos_that_leave_a_solution(problems):
    rng, task = random.Random(5), TASKS["listprog"]  # the undo task
    for p in problems["listprog"]:
        bad = task.corrupt(p, rng)
        k = way_back_undos(VERDICT["listprog"].verify(p, bad)[1])
        live = [task._n(p, task.stack(p, (bad + "\nundo" * j).split("\n"))[-1]) > 0 for j in range(k + 1)]
        assert live[-1] and not any(live[:-1]), (bad, k, live)


def written_fix(fb):
    """The lines the feedback's first line tells the student to write: "write these N lines:" and the
    N lines below it (undo tasks), or "correct: a" (mult)."""
    m = re.match(r"[^\n]*; write these (\d+) lines?:\n", fb)
    if m:
        return fb[m.end() :].split("\n")[: int(m[1])]
    m = re.match(r"[^\n]*?correct: (.*?)(?: \(write |\n|$)", fb)
    return None if m is None else [m[1].strip()]


def symptoms(fb):
    """The feedback's rows after the fix it names first (its first line and the lines it lists)."""
    m = re.match(r"[^\n]*; write these (\d+) lines?:\n", fb)
    return fb.split("\n")[1 + (int(m[1]) if m else 0) :]


def fix_attempts(task, p, rng):
    """Attempts a student writes: a corrupted one, each prefix of it that ends a line or cuts one, fuzz."""
    bad = task.corrupt(p, rng)
    cuts = [bad[:k] for k in range(len(bad) + 1) if k == len(bad) or bad[k] == "\n" or rng.random() < 0.15]
    return [bad] + cuts + adversarial_strings(p, rng, 6)[20:]


def test_fix_feedback_names_lines_that_solve_from_the_response_on_every_task(problems):
    """Exactness of the fix: writing the lines the first feedback line names, after the response
    itself, gives reward 1 on every failing attempt; on undo tasks they are restart and the reference,
    and the line the diagnosis names is the first standing one after which no solution is left (none
    named: every standing line leaves one); on mult the line named is the reference's line for the
    first wrong one."""
    rng, failing = random.Random(3), Counter()
    for name, task in TASKS.items():
        for p in problems[name][:30]:
            for text in fix_attempts(task, p, rng):
                reward, fb = task.verify(p, text)
                if reward == 1.0 or len(text) > tasks.MAX_TEXT:
                    continue
                failing[name] += 1
                lines = written_fix(fb)
                assert lines and fb.split("\n")[0].isascii(), (name, text, fb)
                if name == "mult":
                    assert lines[0] in p.solution.split("\n"), (text, fb)
                    continue
                assert task.verify(p, text + "\n" + "\n".join(lines))[0] == 1.0, (name, text, fb)
                if task.undo:
                    assert lines == ["restart"] + p.solution.split("\n"), (text, fb)
                    standing = task.stack(p, [ln for _, ln in task.standing(text)])
                    live = [task._n(p, s) > 0 for s in standing]
                    m = re.match(r"line (\d+) (is invalid|leaves no solution);", fb)
                    if m is None:
                        assert fb.startswith("not solved yet;") and all(live), (name, text, fb)
                        continue
                    k = [i for i, _ in task.standing(text)].index(int(m[1])) + 1
                    assert not live[k] and all(live[:k]), (name, text, fb, live)
                    assert (m[2] == "is invalid") == (standing[k] is tasks.DEAD), (name, text, fb)
    assert min(failing.values()) >= 100, failing


def test_verdict_feedback_is_the_full_feedback_without_the_fix(problems):
    """feedback=verdict (the ablation): no line to write is named, and the symptoms are exactly the
    full feedback's rows after its fix (mult: the same rows without "; correct: ...")."""
    rng = random.Random(4)
    for name, task in TASKS.items():
        for p in problems[name][:20]:
            for text in fix_attempts(task, p, rng)[:6]:
                (r1, fix), (r2, verdict) = FULL[name].verify(p, text), VERDICT[name].verify(p, text)
                assert r1 == r2 and written_fix(verdict) is None, (name, text, verdict)
                if name == "mult":
                    assert re.sub(r"; correct: [^\n]*", "", fix) == verdict and "correct:" not in verdict
                elif r1 == 1.0 or len(text) > tasks.MAX_TEXT:
                    assert fix == verdict
                elif task.undo:
                    rows = verdict.split("\n")
                    way_back = "leaves no solution: write undo" in rows[-1]
                    assert symptoms(fix) == (rows[:-1] if way_back else rows), (fix, verdict)
                    assert way_back == fix.startswith("line "), (fix, verdict)


def test_fix_feedback_is_the_full_feedbacks_fix_alone(problems):
    """feedback=fix (listprog's default; mult's is full): a failed check's feedback is
    the full feedback's fix lines and nothing after them; the same reward; the symptoms where no fix is
    named (mult with every line right)."""
    rng = random.Random(9)
    defaults = {"mult": "full", "listprog": "fix"}
    assert {n: t.feedback for n, t in TASKS.items()} == defaults
    for name in TASKS:
        fix_task = tasks.make_task(f"{name}:feedback=fix")
        for p in problems[name][:20]:
            for text in fix_attempts(fix_task, p, rng)[:6]:
                (r1, fix), (r2, full) = fix_task.verify(p, text), FULL[name].verify(p, text)
                assert r1 == r2, (name, text)
                if r1 == 1.0 or len(text) > tasks.MAX_TEXT:
                    continue
                n = 1 + len(fix_task.fix_lines(p)) if fix_task.undo else 1
                named = "correct: " in full.split("\n")[0] or fix_task.undo
                assert fix == ("\n".join(full.split("\n")[:n]) if named else full), (name, text, fix, full)


def test_fix_feedback_puts_the_fix_first_so_the_clip_keeps_it(problems):
    rng = random.Random(6)
    for name, task in TASKS.items():
        for p in problems[name][:20]:
            text = task.corrupt(p, rng)
            fb = task.verify(p, text)[1]
            block = tasks.teacher_context(p, feedback=fb).split("feedback:\n")[1]
            assert block.startswith(fb.split("\n")[0] + "\n"), (name, fb)
            assert len(fb.split("\n")[0]) <= tasks.FEEDBACK_CHARS // 2, fb


def test_recovery_completes_every_prefix_of_an_attempt(problems):
    """Task.recovery, what the fix asks for at a student's state: after any prefix (a corrupted attempt,
    its cuts, fuzz) it gives reward 1; on the reference it is the reference's rest, else a new line if
    one is open and fix_lines; after a corrupted attempt's cut it fits the sampling budget."""
    rng = random.Random(7)
    for name, task in TASKS.items():
        for p in problems[name][:30]:
            bad = task.corrupt(p, rng)
            for text in fix_attempts(task, p, rng) + [bad[:k] for k in range(len(bad) + 1)]:
                if len(text) > tasks.MAX_TEXT - 300:
                    continue
                out = task.recovery(p, text)
                assert task.verify(p, text + out)[0] == 1.0, (name, text, out)
                if p.solution.startswith(text):
                    assert text + out == p.solution
                else:
                    assert out.lstrip("\n").split("\n") == task.fix_lines(p) and out.count("\n") >= len(
                        task.fix_lines(p)
                    ) - (text == "" or text.endswith("\n")), (name, text, out)
                if bad.startswith(text):
                    assert len(text + out) <= task.max_response_chars, (name, text, out)


def test_recovery_sft_examples_are_a_cut_attempt_and_its_recovery(problems):
    """sft_target=recovery (listprog): a teacher-format example's context goes on
    with a cut of a corrupted attempt, as a student's state does, and its response is Task.recovery
    from there; both kinds of cut (on the reference, off it) are common."""
    rng, task, on = random.Random(8), TASKS["listprog"], Counter()
    assert task.sft_target == "recovery"
    for i in range(200):
        p = problems["listprog"][i % len(problems["listprog"])]
        ctx, resp = tasks.sft_example(task, p, rng, 1.0)
        head, prefix = ctx.rsplit("\nanswer:\n", 1)
        assert head.startswith(p.prompt + "\n") and resp == task.recovery(p, prefix), (ctx, resp)
        assert "feedback:" in head or "peer:" in head
        on[p.solution.startswith(prefix)] += 1
    assert len(on) == 2 and min(on.values()) >= 30, on


def test_wander_is_a_failed_attempt_off_the_reference_from_its_first_line(problems):
    """Task.wander, half of SFT's teacher-format attempts: it fails, never raises, and (undo tasks) is
    legal lines whose first is not the reference's, so no standing line of it can be copied; the
    others fall back to corrupt. Seeded: the same rng gives the same attempt."""
    for name, task in TASKS.items():
        for i, p in enumerate(problems[name][:30]):
            text = task.wander(p, random.Random(i))
            assert text == task.wander(p, random.Random(i)) and task.verify(p, text)[0] == 0.0, (name, text)
            if not task.undo:
                assert text == task.corrupt(p, random.Random(i)), (name, text)
                continue
            lines, s = text.split("\n"), task.start(p)
            assert lines[0] != p.solution.split("\n")[0], (name, text, p.solution)
            for line in lines:
                assert line in task._legal(p, s), (name, text)
                s = task._legal(p, s)[line]


def test_sft_examples_with_the_reference_target_are_todays_rng_for_rng(problems):
    """mult's SFT data, and every task's with sft_target=reference, are unchanged by the recovery
    target: the same draws give the same (context, response) pairs as the reference-target
    construction (context from corrupt's feedback)."""
    for name in TASKS:
        task = TASKS[name] if name == "mult" else tasks.make_task(f"{name}:sft_target=reference")
        for seed in range(50):
            p = problems[name][seed % len(problems[name])]
            ctx, resp = tasks.sft_example(task, p, random.Random(seed), 0.5)
            rng = random.Random(seed)
            if rng.random() >= 0.5:
                assert (ctx, resp) == (tasks.student_context(p), p.solution)
                continue
            kind = rng.randrange(3)
            fb = task.verify(p, task.corrupt(p, rng))[1] if kind != 1 else None
            assert (ctx, resp) == (tasks.teacher_context(p, fb, p.solution if kind else None), p.solution)


def test_make_task_reads_a_bare_word_as_a_string_and_rejects_unknown_kinds():
    assert tasks.make_task("listprog:max_steps=2,feedback=verdict").feedback == "verdict"
    assert tasks.make_task("mult:feedback='fix'").feedback == "fix"
    for spec in (
        "mult:feedback=hint",
        "listprog:sft_target=oracle",
        "mult:sft_target=recovery",
    ):
        with pytest.raises(ValueError):
            tasks.make_task(spec)


def test_listprog_feedback_reports_exactly_the_failing_examples_with_expected_and_actual(problems):
    rng = random.Random(0)
    for p in problems["listprog"]:
        bad = TASKS["listprog"].corrupt(p, rng)
        reward, fb = FULL["listprog"].verify(p, bad)
        assert reward == 0.0, bad
        for k, (x, want) in enumerate(p.data, 1):
            vals, err = tasks.lp_run([s for s in bad.split("\n") if s], x)
            failing = err is not None or not vals or vals[-1] != want
            assert (f"example {k} FAIL" in fb) == failing, (bad, fb)
            if failing and err is None and vals:
                assert f"got {tasks._fmt(vals[-1])}, expected {tasks._fmt(want)}" in fb
        assert re.search(r"\n\d/\d examples pass(\n|$)", fb), fb


def test_mult_is_graded_on_the_last_line_and_still_reports_the_working():
    p = Problem("mult", "mult: 12*34", tasks.Mult.scratchpad(12, 34), (12, 34))
    reward, fb = TASKS["mult"].verify(p, "408")
    assert reward == 1.0 and "line 1 wrong: '408'; correct: 12*4=48" in fb
    assert TASKS["mult"].verify(p, "12*4=49\n12*30=360\n48+360=408")[0] == 1.0
    assert TASKS["mult"].verify(p, p.solution + "\n12*34=409")[0] == 0.0


def test_answer_extracts_the_final_answer_for_majority_vote(problems):
    for name, ps in problems.items():
        for p in ps:
            assert TASKS[name].answer(p, p.solution) is not None
            assert TASKS[name].answer(p, "") is None
    p = problems["mult"][0]
    assert TASKS["mult"].answer(p, p.solution) == str(p.data[0] * p.data[1])
    p = problems["listprog"][0]  # the behaviour on the examples: their outputs
    assert TASKS["listprog"].answer(p, p.solution) == ";".join(tasks._fmt(y) for _, y in p.data)
    assert TASKS["listprog"].answer(p, "sort\nundo\n" + p.solution) == TASKS["listprog"].answer(p, p.solution)


# -----------------------------------------------------------------------------
# Verifiers on adversarial strings


def adversarial_strings(p, rng, n):
    alphabet = list("0123456789+-*/=()[], .>\n\t abcxyzHOC|") + [
        "\u0663",
        "\u00b2",
        "\u00e9",
        "\x00",
        "->",
        EOT,
    ]
    fixed = [
        "",
        "\n",
        " ",
        "=",
        "->",
        "(" * 300,
        ")" * 300,
        "9" * 5000,
        "1" * 300 + "=" + "9" * 300,
        "\u0663\u0661\u0662" * 3,
        "\u00b2",
        "dup\n" * 40,
        "map ^2\n" * 30,
        p.solution * 3,
        p.solution + "\n" + "x" * 5000,
        "\n" * 3000,
        "take 99999",
        "Cu(((((((",
        "2H2..O",
        "1+1=2\n" * 2000,
    ]
    out = list(fixed)
    while len(out) < n:
        s = list(rng.choice([p.solution, p.prompt, ""]))
        for _ in range(rng.randint(1, 8)):
            k = rng.randint(0, len(s))
            op = rng.randrange(3)
            if op == 0 or not s:
                s.insert(k, rng.choice(alphabet))
            elif op == 1:
                del s[min(k, len(s) - 1)]
            else:
                s[min(k, len(s) - 1)] = rng.choice(alphabet)
        out.append("".join(s)[: rng.choice([10, 60, 400, 10**6])])
    return out


def test_verifiers_never_raise_on_adversarial_strings_and_return_a_binary_reward(problems):
    rng = random.Random(0)
    for name, task in TASKS.items():
        for p in problems[name][:10]:
            for s in adversarial_strings(p, rng, 150):
                t0 = time.perf_counter()
                reward, fb = task.verify(p, s)
                assert time.perf_counter() - t0 < 1.0, (
                    name,
                    s[:80],
                )  # bounded; generous: a shared, loaded CPU
                assert reward in (0.0, 1.0) and isinstance(fb, str) and fb.isascii(), (name, s[:80])
                assert task.answer(p, s) is None or isinstance(task.answer(p, s), str)


def test_unicode_digits_are_not_read_as_numbers():
    p = Problem("mult", "mult: 12*34", tasks.Mult.scratchpad(12, 34), (12, 34))
    assert TASKS["mult"].verify(p, p.solution.replace("408", "\u0664\u0660\u0668"))[0] == 0.0
    assert TASKS["mult"].verify(p, p.solution)[0] == 1.0


# -----------------------------------------------------------------------------
# The oracle


def test_oracle_distributions_sum_to_one_on_any_prefix(problems):
    rng = random.Random(1)
    for name, task in TASKS.items():
        for p in problems[name][:8]:
            for s in adversarial_strings(p, rng, 40) + [p.solution[:k] for k in range(len(p.solution) + 1)]:
                d = task.oracle(p, s[:2000])
                assert abs(sum(d.values()) - 1.0) < 1e-9 and min(d.values()) > 0, (name, s[:60], d)
                assert all(c == EOT or (len(c) == 1 and c.isascii()) for c in d), d


def test_greedy_decoding_with_the_oracle_alone_solves_every_test_problem(problems):
    for name, task in TASKS.items():
        for p in problems[name][N:]:
            text = oracle_greedy(task, p)
            assert task.verify(p, text)[0] == 1.0 and len(text) <= task.max_response_chars, (p, text)


def test_oracle_samples_are_valid_solutions_within_the_budget(problems):
    rng = random.Random(2)
    for name, task in TASKS.items():
        for p in problems[name][:20]:
            for _ in range(5):
                text = ""
                while True:
                    d = task.oracle(p, text)
                    c = rng.choices(list(d), weights=list(d.values()))[0]
                    if c == EOT:
                        break
                    text += c
                assert task.verify(p, text)[0] == 1.0 and len(text) <= task.max_response_chars, (p, text)
                assert not task.has_recovery(p, text), (
                    p,
                    text,
                )  # offline (the oracle's own answers) sees none


def brute_force_listprog(task, p):
    """Every program of LP_STEPS lines (<= task.max_steps, each changing a value) that passes p's examples,
    ending at the first line that passes."""
    xs, want, sols = tuple(x for x, _ in p.data), tuple(y for _, y in p.data), set()

    def extend(vals, prog):
        for step in tasks.LP_STEPS:
            runs = [tasks.lp_run([step], v) for v in vals]
            new = tuple(r[0][-1] if r[0] else None for r in runs)
            if None not in new and new != vals:
                if new == want:
                    sols.add("\n".join(prog + [step]))
                elif len(prog) + 1 < task.max_steps:
                    extend(new, prog + [step])

    extend(xs, [])
    return sols


def test_listprog_oracle_is_uniform_over_all_passing_programs(problems):
    task = TASKS["listprog"]
    for p in problems["listprog"][:2]:
        sols, support = brute_force_listprog(task, p), oracle_support(task, p)
        assert set(support) == sols and len(sols) > 1
        assert all(abs(q - 1 / len(sols)) < 1e-9 for q in support.values())


def test_oracle_recovers_to_reward_one_after_the_first_wrong_character_and_after_the_whole_attempt(problems):
    rng = random.Random(3)
    for name, task in TASKS.items():
        for p in problems[name]:
            bad = task.corrupt(p, rng)
            i = first_off_support(task, p, bad)
            for prefix in (bad[: i + 1], bad + "\n", "garbage ) 12\n\n=" + bad):
                assert task.verify(p, oracle_greedy(task, p, prefix))[0] == 1.0, (p, prefix)


def test_oracle_continues_from_valid_student_lines_outside_the_canonical_set(problems):
    task = TASKS["listprog"]
    for p in problems["listprog"]:
        first = p.solution.split("\n")[0]
        spaced = f"  {first} \n"  # valid, not canonical
        assert task.verify(p, oracle_greedy(task, p, spaced))[0] == 1.0, (p, spaced)
        start = task.start(p)  # another live first line
        live = [ln for ln, s in task._legal(p, start).items() if task._n(p, s) and ln != first]
        if live:
            assert task.verify(p, oracle_greedy(task, p, live[-1] + "\n"))[0] == 1.0, (p, live[-1])


def test_listprog_oracle_finishes_a_dead_line_then_retracts_it():
    task = TASKS["listprog"]
    p = Problem("listprog", "listprog:\n[1,3,2] -> [2,4]", "filter odd\nmap +1", (((1, 3, 2), (2, 4)),))
    sols = brute_force_listprog(task, p)
    assert not any(s.startswith("sum\n") for s in sols)  # a number never becomes a list again
    assert task.oracle(p, "su") == {"m": 1.0}  # the line is legal, just a dead end: finish it
    assert task.oracle(p, "sum") == {"\n": 1.0} and task.oracle(p, "sum\n") == {"u": 1.0}  # then retract it
    assert task.oracle(p, "bogus\n") == {"u": 1.0}  # an invalid line: retract it
    assert task.oracle(p, "bogus\nund") == {"o": 1.0}
    assert task.oracle(p, "bogus\nfilter o") == {"d": 1.0}  # in shape, as if the invalid line were not there
    text = oracle_greedy(task, p, "bogus\nfilter odd\n")  # a line after an invalid one stands on it
    assert text.startswith("bogus\nfilter odd\nundo\nundo\n") and task.verify(p, text)[0] == 1.0
    support = oracle_support(task, p, "sum\n")  # after the retraction: uniform over S
    assert set(support) == {"sum\nundo\n" + s for s in sols}
    assert all(abs(q - 1 / len(sols)) < 1e-9 for q in support.values())


# -----------------------------------------------------------------------------
# Recovery: every response language can retract or supersede a step, the oracle uses it


def fuzzed_prefixes(task, p, rng, alphabet, n):
    """Prefixes a student might reach: cuts of corrupted attempts, and random strings."""
    out = [task.corrupt(p, rng) for _ in range(n)]
    out = [a[: rng.randint(0, len(a))] for a in out]
    return out + ["".join(rng.choices(alphabet, k=rng.randint(1, 8))) for _ in range(n)]


def test_greedy_oracle_recovers_to_reward_one_from_fuzzed_prefixes(problems):
    rng = random.Random(3)
    for name, task in TASKS.items():
        alphabet = sorted(set("".join(p.solution for p in problems[name])) | {"\n"})
        for p in problems[name][:20]:
            for prefix in fuzzed_prefixes(task, p, rng, alphabet, 4) + ["garbage ) 12\n\n=", "undo\n\nundo"]:
                text = oracle_greedy(task, p, prefix)
                assert text.startswith(prefix) and task.verify(p, text)[0] == 1.0, (name, prefix, text)


def test_oracle_from_any_prefix_is_normalised_and_supported_only_on_successful_completions(problems):
    rng = random.Random(6)
    for name, task in TASKS.items():
        alphabet = sorted(set("".join(p.solution for p in problems[name])) | {"\n"})
        for p in problems[name][:3]:
            for prefix in fuzzed_prefixes(task, p, rng, alphabet, 2):
                support = oracle_support(task, p, prefix)
                assert abs(sum(support.values()) - 1.0) < 1e-9, (name, prefix)
                bad = [t for t in support if task.verify(p, t)[0] != 1.0]
                assert not bad, (name, prefix, bad[:3])


def recovery_rates(task, n=150, seed=0):
    """(from corrupted, from random): the share of n test problems whose greedy oracle completion
    reaches reward 1 from a random prefix of task.corrupt's attempt, and from 1-8 random characters
    of the task's alphabet (the characters of the reference solutions). results/tasks.md's table."""
    rng, problems = random.Random(seed), task.generate("test", n, seed)
    alphabet = sorted(set("".join(p.solution for p in problems)) | {"\n"})
    cut = [(p, a[: rng.randint(0, len(a))]) for p in problems for a in [task.corrupt(p, rng)]]
    noise = [(p, "".join(rng.choices(alphabet, k=rng.randint(1, 8)))) for p in problems]
    return tuple(sum(task.verify(p, oracle_greedy(task, p, s))[0] for p, s in ps) / n for ps in (cut, noise))


def test_recovery_rates_reach_99_percent_at_the_defaults_and_at_the_experiment_knobs():
    for spec in list(TASKS) + EXPERIMENT_SPECS:
        task = tasks.make_task(spec)
        if spec in TASKS:
            task = type(task)()  # a fresh memo
        assert min(recovery_rates(task, n=40, seed=1)) >= 0.99, spec


def test_mult_expert_restates_the_wrong_line_and_sums_only_values_in_view(problems):
    task, rng = TASKS["mult"], random.Random(7)
    p = Problem("mult", "mult: 72*1", tasks.Mult.scratchpad(72, 1), (72, 1))
    assert oracle_greedy(task, p, "72*1=2\n") == "72*1=2\n72*1=72\n72=72"  # not 72=72 at once
    for p in problems["mult"]:
        bad = task.corrupt(p, rng).split("\n")
        for k in range(1, len(bad) + 1):
            text = oracle_greedy(task, p, "\n".join(bad[:k]) + "\n")
            lines = text.split("\n")
            for i, line in enumerate(lines[k:], k):  # the expert's own lines
                lhs, _, value = line.partition("=")
                if "*" in lhs:  # a working line: always correct
                    assert int(value) == eval_product(lhs), (text, line)
                else:  # the sum: only values stated correctly above
                    shown = {
                        ln.split("=")[1]
                        for ln in lines[:i]
                        if "*" in ln and int(ln.split("=")[1]) == eval_product(ln.split("=")[0])
                    }
                    assert set(lhs.split("+")) <= shown, (text, line)
            if any(line not in p.solution.split("\n") for line in bad[:k]):
                assert task.has_recovery(p, text)


def test_mid_line_the_oracle_keeps_the_students_line_in_shape_then_recovers():
    mult, lp = TASKS["mult"], TASKS["listprog"]
    p = Problem("mult", "mult: 55*5", tasks.Mult.scratchpad(55, 5), (55, 5))
    assert oracle_greedy(mult, p, "55*5=25") == "55*5=255\n55*5=275\n275=275"  # finish the value, restate
    assert mult.oracle(p, "55*5=255\n2") == {"5": 1.0}  # its sum of what it stated
    assert oracle_greedy(mult, p, "55*5=2555") == "55*5=2555\n55*5=275\n275=275"  # too long: end the line
    r = Problem("listprog", "listprog:\n[1,3,2] -> [2,4]", "filter odd\nmap +1", (((1, 3, 2), (2, 4)),))
    assert lp.oracle(r, "filter ood") == {"\n": 1.0} and lp.oracle(r, "filter ood\n") == {
        "u": 1.0
    }  # misspelt


def eval_product(lhs):
    a, m = lhs.split("*")
    return int(a) * int(m)


def test_the_new_verifier_rules_on_hand_written_responses():
    lp, mult = TASKS["listprog"], TASKS["mult"]
    q = Problem("listprog", "listprog:\n[1,3,2] -> [2,4]", "filter odd\nmap +1", (((1, 3, 2), (2, 4)),))
    for text, reward in [
        ("filter odd\nmap +1", 1),
        ("sort\nundo\nfilter odd\nmap +1", 1),
        ("bogus\nfilter odd\nmap +1", 0),
        ("bogus\nundo\nfilter odd\nmap +1", 1),
        ("undo\nfilter odd\nmap +1", 1),
        ("max\nsort\nundo\nundo\n\nfilter odd\nmap +1", 1),
        ("max\nsort\nundo\nfilter odd\nmap +1", 0),
        ("filter odd\nmap +2\nundo\nmap +1", 1),
        ("filter odd\nmap +1\nundo", 0),
        ("filter odd\nmap +1\nsum", 0),
        ("max\nso\nrestart\nfilter odd\nmap +1", 1),
        ("filter odd\nundo\nma\nrestart\n\nfilter odd\nmap +1", 1),
        ("restart\nfilter odd\nmap +1", 1),
        ("filter odd\nmap +1\nrestart", 0),
        ("filter odd\nrestart\nmap +1", 0),
    ]:
        assert lp.verify(q, text)[0] == reward, text
        assert lp.has_recovery(q, text) == ("\nundo" in text or "\nrestart" in text), text
    fb = VERDICT["listprog"].verify(q, "max\nsort")[1]  # line 2 errs on line 1's number
    assert "line 1 leaves no solution: write undo 2 times" in fb and "\n0/1 examples pass\n" in fb, fb
    fb = FULL["listprog"].verify(q, "max\nsort")[1]
    assert fb.startswith("line 1 leaves no solution; write these 3 lines:\nrestart\nfilter odd\nmap +1\n"), fb
    assert "| max 3 -> error: line 2: sort needs a list, got the number 3, expected [2,4]" in fb
    assert lp.verify(q, "max\nsort")[1] == fb.split("\nexample 1 FAIL")[0]
    assert "line 1 leaves no solution: write undo to retract it" in VERDICT["listprog"].verify(q, "max")[1]
    fix = "line 1 leaves no solution; write these 3 lines:\nrestart\nfilter odd\nmap +1"
    assert lp.verify(q, "max")[1] == fix
    assert (
        FULL["listprog"]
        .verify(q, "bogus")[1]
        .startswith("line 1 is invalid; write these 3 lines:\nrestart\nfilter odd\nmap +1\nexample 1 FAIL")
    )
    r = Problem("mult", "mult: 12*34", tasks.Mult.scratchpad(12, 34), (12, 34))
    fb = mult.verify(r, "12*4=48\n12*30=36\n48+36=84")[1]
    assert "line 2 wrong: '12*30=36'; correct: 12*30=360" in fb and "supersedes" in fb
    assert mult.verify(r, "12*4=48\n12*30=36\n12*30=360\n48+360=408")[0] == 1.0
    assert mult.has_recovery(r, "12*4=48\n12*30=36\n12*30=360\n48+360=408") and not mult.has_recovery(
        r, r.solution
    )


# -----------------------------------------------------------------------------
# Splits, determinism, tokenizer, contexts, limits


def test_train_and_test_splits_are_disjoint():
    for task in TASKS.values():
        train = {task.split_key(p) for p in task.generate("train", 300, 5)}
        test = {task.split_key(p) for p in task.generate("test", 300, 5)}
        assert train and test and not train & test
        assert all(tasks.split_of(k) == "train" for k in train) and all(
            tasks.split_of(k) == "test" for k in test
        )


def test_listprog_split_by_examples_trains_on_test_programs_with_other_inputs():
    prog, ex = (tasks.make_task(f"listprog:max_steps=2,split={s}") for s in ("program", "examples"))
    behaviour = prog.split_key  # the program split's key: the reference's behaviour on probe inputs
    for task in (prog, ex):
        train, test = task.generate("train", 400, 5), task.generate("test", 100, 5)
        assert not {task.split_key(p) for p in train} & {task.split_key(p) for p in test}
        seen = {behaviour(p) for p in train} & {behaviour(p) for p in test}
        assert (len(seen) >= 30) == (task is ex), len(seen)  # a test program trained on, with other examples
        if task is ex:
            assert not {p.prompt for p in train} & {p.prompt for p in test}
    with pytest.raises(ValueError, match="split must be 'program' or 'examples'"):
        tasks.make_task("listprog:split=inputs")


def test_test_splits_have_distinct_problems_at_the_defaults_and_the_experiment_knobs():
    for spec in list(TASKS) + EXPERIMENT_SPECS:
        task = tasks.make_task(spec)
        for n in (128, 2000) if spec in TASKS else (128,):  # 128: experiment.py's eval_n
            assert len({p.prompt for p in task.generate("test", n, 1337)}) >= 0.75 * n, (spec, n)
    small = tasks.make_task(EXPERIMENT_SPECS[0])  # 2x1-digit mult: ~170 test problems
    ps = small.generate("test", 400, 1337)
    assert len({p.prompt for p in ps[:150]}) == 150  # every problem once before any repeats


def test_generators_are_deterministic_per_seed():
    for task in TASKS.values():
        assert task.generate("train", 20, 7) == task.generate("train", 20, 7)
        assert task.generate("test", 20, 7) == task.generate("test", 20, 7)
        assert task.generate("train", 20, 7) != task.generate("train", 20, 8)


def test_tokenizer_round_trips_every_task_string_and_eot(problems):
    enc, rng = tasks.get_tokenizer(), random.Random(4)
    assert enc.n_vocab == 257 and enc.encode(EOT, allowed_special={EOT}) == [EOT_ID]
    assert enc.encode("0123456789") == list(b"0123456789")  # one token per digit
    for name, ps in problems.items():
        for p in ps[:10]:
            bad = TASKS[name].corrupt(p, rng)
            fb = TASKS[name].verify(p, bad)[1]
            for s in (p.prompt, p.solution, bad, fb, tasks.teacher_context(p, fb, p.solution)):
                ids = enc.encode(s + EOT, allowed_special={EOT})
                assert ids[-1] == EOT_ID and enc.decode(ids) == s + EOT and len(ids) == len(s) + 1


def test_contexts_follow_the_layout_and_clip_feedback_deterministically(problems):
    p = problems["listprog"][0]
    assert tasks.student_context(p) == p.prompt + "\nanswer:\n" == tasks.teacher_context(p)
    long_fb = "example 1 FAIL: [3,1] -> got [1], expected [3]\u00e9\n" * 40
    ctx = tasks.teacher_context(p, feedback=long_fb, peer=p.solution)
    assert ctx == tasks.teacher_context(p, feedback=long_fb, peer=p.solution) and ctx.isascii()
    block = ctx.split("feedback:\n")[1].split("\npeer:\n")[0]
    assert len(block) == tasks.FEEDBACK_CHARS and block.endswith("...")
    assert ctx.endswith(f"\npeer:\n{p.solution}\nanswer:\n")


def test_listprog_interpreter_limits_stop_runaway_programs():
    x = (1, 2, 3)
    assert "longer than" in tasks.lp_run(["dup"] * 10, x)[1]  # size limit
    assert "value beyond" in tasks.lp_run(["map *99"] * 5, x)[1]  # value limit
    assert "work limit" in tasks.lp_run(["dup"] * 6 + ["sort"] * 25, x)[1]  # step budget
    assert "longer than" in tasks.lp_run(["sort"] * 10000, x)[1]  # program length
    p = TASKS["listprog"].generate("test", 1, 0)[0]
    TASKS["listprog"].verify(
        p, "map ^2"
    )  # the first call per state searches the way back (<= max_steps deep)
    t0 = time.perf_counter()
    reward, fb = FULL["listprog"].verify(p, "map ^2\n" * 30)
    assert reward == 0.0 and "beyond" in fb and time.perf_counter() - t0 < 0.05


# -----------------------------------------------------------------------------
# The contract alone: a fork's task without the optional capabilities


class ReverseWord:
    """What a fork writes (tasks.py's header): name, domain, max_response_chars, generate, verify,
    split_key, answer. No oracle, no corrupt, no has_recovery, no knobs."""

    name, domain, max_response_chars = "reverse", "text", 16

    def generate(self, split, n, seed):
        rng, out = random.Random(f"{split}/{seed}"), []
        while len(out) < n:
            word = "".join(rng.choices("abcdefgh", k=rng.randint(3, 8)))
            if tasks.split_of(word) == split:
                out.append(Problem(self.name, f"reverse: {word}", word[::-1], (word,)))
        return out

    def verify(self, p, text):
        ok = text.strip() == p.solution
        return float(ok), "correct" if ok else f"write the letters of {p.data[0]} last to first"

    def split_key(self, p):
        return p.data[0]

    def answer(self, p, text):
        return text.strip() or None


def test_a_task_with_the_contract_alone_gets_splits_sft_examples_and_teacher_contexts(monkeypatch):
    task = ReverseWord()
    assert not any(hasattr(task, a) for a in ("oracle", "corrupt", "has_recovery", "sft_target"))
    train, val, test = tasks.problem_sets(task, 60, 20, 0, val_n=5)
    keys = [{task.split_key(p) for p in ps} for ps in (train, val, test)]
    assert len(val) == len(keys[1]) == 5 and not keys[0] & keys[1] and not (keys[0] | keys[1]) & keys[2]
    rng = random.Random(0)
    for frac in (0.5, 1.0):  # no failed attempts to show a teacher: always the student's context
        for p in train[:20]:
            assert tasks.sft_example(task, p, rng, frac) == (tasks.student_context(p), p.solution)
    p0, p1 = train[:2]
    problems, texts = [p0, p0, p1, p1], ["x", p0.solution, "y", "z"]  # two prompts, groups of 2
    rewards = [task.verify(p, t)[0] for p, t in zip(problems, texts)]
    fbs = [task.verify(p, t)[1] for p, t in zip(problems, texts)]
    assert rewards == [0.0, 1.0, 0.0, 0.0]
    assert tasks.reprompt(problems, rewards, texts, fbs, 2, mode="both") == [
        tasks.teacher_context(p0, fbs[0], p0.solution),  # its feedback and the other success
        tasks.teacher_context(p0, None, p0.solution),  # a lone success is its own peer
        tasks.teacher_context(p1, fbs[2], None),
        tasks.teacher_context(p1, fbs[3], None),
    ]
    assert tasks.reprompt(problems, rewards, texts, fbs, 2, mode="none") == list(
        map(tasks.student_context, problems)
    )
    monkeypatch.setitem(TASKS, task.name, task)  # registered, make_task finds it
    assert tasks.make_task("reverse") is task and task.answer(p0, p0.solution + "\n") == p0.solution
