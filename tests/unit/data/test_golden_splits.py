"""Golden labels -> judgments, prompt splits, leave-source-out, fingerprints."""

from __future__ import annotations

from routeray.data import (
    GoldenLabel,
    Judgment,
    PreferenceData,
    golden_to_judgments,
    leave_source_out,
    split_by_prompt,
)

P1, P2 = "What is the integral of x squared?", "Name three noble gases, please."


def _g(prompt: str, model: str, score: float, source: str = "s") -> GoldenLabel:
    return GoldenLabel(prompt=prompt, model=model, score=score, source=source, prompt_id=f"{source}:{prompt[:5]}")


def test_golden_to_judgments_paper_rule() -> None:
    golden = [_g(P1, "strong", 1), _g(P1, "weak", 0), _g(P2, "strong", 0), _g(P2, "weak", 1),
              _g(P1, "mid", 1), _g(P2, "mid", 0)]
    pairs = {(j.prompt, j.model_a, j.model_b): j.p_a for j in golden_to_judgments(golden, pairs=[("strong", "weak")])}
    assert pairs == {(P1, "strong", "weak"): 1.0, (P2, "strong", "weak"): 0.0}
    got = golden_to_judgments(golden, ratings={"strong": 3, "mid": 2, "weak": 1})
    assert {(j.prompt, j.model_a, j.model_b): j.p_a for j in got} == {
        (P1, "strong", "mid"): 0.5, (P1, "strong", "weak"): 1.0, (P1, "mid", "weak"): 1.0,
        (P2, "strong", "mid"): 0.5, (P2, "strong", "weak"): 0.0, (P2, "mid", "weak"): 0.0}
    assert all(j.source == "s" and j.prompt_id for j in got)


def test_golden_to_judgments_grades_and_default_order() -> None:
    golden = [_g(P1, "a", 0.9), _g(P1, "b", 0.9), _g(P2, "a", 0.8), _g(P2, "b", 0.3), _g(P2, "c", 0.1)]
    got = {(j.prompt, j.model_a, j.model_b): j.p_a for j in golden_to_judgments(golden)}
    # default order by mean score: a (0.85) > b (0.6) > c (0.1); missing labels give no judgment
    assert got == {(P1, "a", "b"): 0.5, (P2, "a", "b"): 1.0, (P2, "a", "c"): 1.0, (P2, "b", "c"): 1.0}


def _data() -> PreferenceData:
    judgments = [Judgment(f"chat prompt number {i:03d}", "x", "y", 1.0, "chat") for i in range(100)]
    judgments += [Judgment(f"chat prompt number {i:03d}", "y", "z", 0.0, "chat") for i in range(0, 100, 2)]
    golden = [_g(f"quiz question number {i:03d}", m, 1.0, f"quiz/{'a' if i % 2 else 'b'}")
              for i in range(60) for m in ("x", "y")]
    golden.append(_g("chat prompt number 007", "x", 1.0, "quiz/a"))  # a prompt in two sources
    return PreferenceData(judgments=judgments, golden=golden)


def test_split_by_prompt_keeps_prompts_together_and_is_deterministic() -> None:
    data = _data()
    train, val = split_by_prompt(data, 0.25, seed=3)
    tp, vp = set(train.prompts), set(val.prompts)
    assert not tp & vp and tp | vp == set(data.prompts)
    assert len(vp) == round(0.25 * len(data.prompts))
    assert len(train.judgments) + len(val.judgments) == len(data.judgments)
    assert len(train.golden) + len(val.golden) == len(data.golden)
    again = split_by_prompt(data, 0.25, seed=3)[1]
    assert again.prompts == val.prompts
    assert split_by_prompt(data, 0.25, seed=4)[1].prompts != val.prompts


def test_leave_source_out_by_prefix_and_decontaminated() -> None:
    data = _data()
    train, held = leave_source_out(data, "quiz")
    assert held.sources == ["quiz/a", "quiz/b"] and "quiz/a" not in train.sources
    assert "chat prompt number 007" not in train.prompts  # shared with the held-out source
    train, held = leave_source_out(data, "quiz/a")
    assert held.sources == ["quiz/a"] and "quiz/b" in train.sources
    try:
        leave_source_out(data, "qui")
    except ValueError as exc:
        assert "no records with source 'qui'" in str(exc)
    else:
        raise AssertionError("an unknown prefix must fail")


def test_fingerprint_ignores_order_and_sees_labels() -> None:
    data = _data()
    shuffled = PreferenceData(judgments=data.judgments[::-1], golden=data.golden[::-1])
    assert data.fingerprint() == shuffled.fingerprint()
    flipped = PreferenceData(judgments=[Judgment(j.prompt, j.model_a, j.model_b, 1 - j.p_a, j.source)
                                        for j in data.judgments], golden=data.golden)
    assert flipped.fingerprint() != data.fingerprint()
