"""The rerouting guard: views, the minimum over them, and what a gadget can still do against it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routeray.errors import RouterayError
from routeray.routers.base import Router
from routeray.routers.guard import GuardedRouter, GuardSpec, guard_router, views


class KeywordRouter(Router):
    """Scores the share of words that are ``HARD``: a gadget of HARD words pushes any prompt up."""

    name: ClassVar[str] = "keyword"

    def __init__(self) -> None:
        self.calls: list[int] = []

    @classmethod
    def load(cls, artifact_dir: Path | None, **overrides: Any) -> KeywordRouter:
        return cls()

    def score(self, prompts):
        self.calls.append(len(prompts))
        return np.asarray([sum(w == "HARD" for w in p.split()) / max(1, len(p.split())) for p in prompts])


PROMPT = "Tell me\nwhat the capital of France is, and name two rivers that flow through the city of Paris."


def test_off_scores_the_prompt_itself():
    assert views(PROMPT, GuardSpec(mode="off")) == [PROMPT]
    r = KeywordRouter()
    assert guard_router(r, "off") is r
    assert isinstance(guard_router(r, None), GuardedRouter)  # None: the default guard


def test_heads_keep_the_first_words_on_a_fixed_grid_and_keep_formatting():
    v = views(PROMPT, GuardSpec(mode="heads", min_words=4))
    assert v[0] == PROMPT and [len(x.split()) for x in v[1:]] == [4, 8, 16]
    assert v[1] == "Tell me\nwhat the"
    long = " ".join(f"w{i}" for i in range(200))
    assert [len(x.split()) for x in views(long, GuardSpec())[1:]] == [16, 32, 64, 128]


def test_anchored_adds_the_last_words():
    v = views(PROMPT, GuardSpec(mode="anchored", min_words=4))
    assert "Tell me\nwhat the" in v and "the city of Paris." in v


def test_short_prompts_are_scored_as_sent():
    for mode in ("heads", "anchored", "windows", "spans"):
        assert views("What is 2+2?", GuardSpec(mode=mode)) == ["What is 2+2?"]


@settings(max_examples=300, deadline=None)
@given(n_words=st.integers(17, 300), gadget=st.integers(1, 40))
def test_heads_of_a_prompt_survive_anything_appended(n_words, gadget):
    prompt = " ".join(f"w{i}" for i in range(n_words))
    attacked = prompt + " " + " ".join(["GADGET"] * gadget)
    mine, theirs = views(prompt, GuardSpec()), views(attacked, GuardSpec())
    assert set(mine[1:]) <= set(theirs[1:])  # every head of the prompt is still a view of the longer text


@settings(max_examples=300, deadline=None)
@given(n_words=st.integers(1, 300), gadget=st.integers(1, 16), where=st.floats(0, 1),
       max_views=st.integers(3, 10))
def test_windows_leave_one_view_without_any_gadget_word(n_words, gadget, where, max_views):
    spec = GuardSpec(mode="windows", span=16, max_views=max_views)
    words = [f"w{i}" for i in range(n_words)]
    at = int(where * n_words)
    attacked = " ".join([*words[:at], *["GADGET"] * gadget, *words[at:]])
    vs = views(attacked, spec)
    assert 1 <= len(vs) <= max_views and all(vs)
    if n_words + gadget > 16:
        # a gadget of up to `span` words anywhere: some view holds none of it
        assert any("GADGET" not in v for v in vs[1:])


QUESTION = ("A farmer has 17 sheep and buys 5 more every week. In March, she sells half of them. How many sheep "
            "does the farmer have at the end of the year if no sheep die?\nA. 12\nB. 140\nAnswer:")


def test_spans_run_from_a_capital_to_the_first_sentence_end_after_min_words():
    v = views(QUESTION, GuardSpec(mode="spans", min_words=8))
    assert v[0] == QUESTION
    # starts: a capital followed by a small letter ("In", "March", "How", "Answer"; not "A farmer", "A.", "B.");
    # each runs to the first sentence end at or after its 8th word ("them." ends the 7th from "In")
    assert v[1:] == [
        "In March, she sells half of them. How many sheep does the farmer have at the end of the year if no "
        "sheep die?",
        "March, she sells half of them. How many sheep does the farmer have at the end of the year if no sheep die?",
        "How many sheep does the farmer have at the end of the year if no sheep die?",
    ]
    # "A." / "B." (a capital before the dot) end no sentence, "Answer:" does; a span equal to the prompt is
    # the prompt itself
    mc = "Which of these animals sleeps standing up, most of the time?\nA. Horse\nB. Cat\nAnswer:"
    assert views(mc, GuardSpec(mode="spans", min_words=12)) == [mc]
    assert views(mc, GuardSpec(mode="spans", min_words=4))[1:] == [
        "Which of these animals sleeps standing up, most of the time?", "Horse\nB. Cat\nAnswer:"]


GADGET_TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=60)
SENTENCE_WORDS = st.sampled_from(["The", "cat", "Sat", "on", "mat.", "Why?", "A.", "x:", "NASA", "3.14", "Ok!", "iPhone",
                                  "and", "\nB)", "\u00c9t\u00e9", "well,"])


@settings(max_examples=300, deadline=None)
@given(words=st.lists(SENTENCE_WORDS, min_size=1, max_size=60), gadget=GADGET_TEXT, glue=st.booleans(),
       min_words=st.integers(1, 12))
def test_every_span_of_a_prompt_is_a_span_of_it_with_anything_added_at_either_end(words, gadget, glue, min_words):
    spec = GuardSpec(mode="spans", min_words=min_words, max_views=10**6)
    prompt = " ".join(words)
    sep = "" if glue else " "
    mine = set(views(prompt, spec)[1:])
    for attacked in (prompt + sep + gadget, gadget + sep + prompt):
        assert mine <= set(views(attacked, spec)) | {attacked}


@settings(max_examples=200, deadline=None)
@given(gadget=st.lists(st.sampled_from(["HARD", "HARD.", "Hard", "x"]), min_size=1, max_size=30),
       margin=st.sampled_from([0.0, 0.05]), glue=st.booleans())
def test_spans_cap_a_gadget_at_either_end_at_the_prompts_lowest_span_plus_margin(gadget, margin, glue):
    inner = KeywordRouter()
    guarded = guard_router(inner, {"mode": "spans", "min_words": 8, "margin": margin})
    cap = min(inner.score(views(QUESTION, guarded.spec)[1:])) + margin
    text, sep = " ".join(gadget), "" if glue else " "
    for attacked in (QUESTION + sep + text, text + sep + QUESTION):
        assert guarded.score([attacked])[0] <= cap + 1e-12
    hard = " ".join(["HARD"] * 30)
    assert inner.score([QUESTION + " " + hard])[0] > 0.4 > cap  # unguarded, a long gadget does lift the score


def test_spans_past_max_views_keep_the_first_and_the_last():
    prompt = " ".join(f"Sentence number {i} of this long prompt has a few words in it." for i in range(40))
    v = views(prompt, GuardSpec(mode="spans", min_words=8))
    assert len(v) == 32 and v[1].startswith("Sentence number 0 ") and v[-1].startswith("Sentence number 39 ")
    assert v[16].startswith("Sentence number 15 ") and v[17].startswith("Sentence number 25 ")


def test_margin_lets_the_prompt_decide_unless_a_view_is_clearly_lower():
    class Fixed(KeywordRouter):
        def score(self, prompts):
            return np.asarray([0.6 if p == QUESTION else 0.55 for p in prompts])

    assert guard_router(Fixed(), {"mode": "spans", "min_words": 8}).score([QUESTION])[0] == 0.55
    assert guard_router(Fixed(), {"mode": "spans", "min_words": 8, "margin": 0.1}).score([QUESTION])[0] == 0.6
    assert guard_router(Fixed(), {"mode": "spans", "min_words": 8, "margin": 0.03}).score([QUESTION])[0] == pytest.approx(0.58)


def test_guard_stops_an_appended_gadget_and_calls_the_router_once_per_batch():
    inner = KeywordRouter()
    guarded = guard_router(inner, {"mode": "heads", "min_words": 4})
    attacked = PROMPT + " HARD HARD HARD HARD HARD HARD"
    plain, hit = inner.score([PROMPT, attacked])
    assert plain == 0 and hit > 0.2
    inner.calls.clear()
    assert list(guarded.score([PROMPT, attacked])) == [0.0, 0.0]
    assert inner.calls == [8]  # two prompts and their three heads each, in one call


def test_spec_parsing_and_fingerprint():
    assert GuardSpec.parse("windows").mode == "windows"
    assert GuardSpec.parse({"mode": "heads", "min_words": 12}).min_words == 12
    assert GuardSpec.parse(None) == GuardSpec(mode="heads", min_words=16)
    with pytest.raises(RouterayError, match="unknown guard mode"):
        GuardSpec.parse("nope")
    with pytest.raises(RouterayError, match="unknown guard option"):
        GuardSpec.parse({"mode": "heads", "spam": 1})
    with pytest.raises(RouterayError):
        GuardSpec(mode="heads", min_words=0)
    with pytest.raises(RouterayError, match="whole numbers"):
        GuardSpec.parse({"mode": "heads", "min_words": 2.5})
    for bad in (-0.1, 1, "0.1", True):
        with pytest.raises(RouterayError, match="margin"):
            GuardSpec.parse({"mode": "spans", "margin": bad})
    assert GuardSpec.parse("spans").views_cap == 32 and GuardSpec.parse("heads").views_cap == 8
    assert GuardSpec.from_text('{"mode": "spans", "margin": 0.0075}').describe() == (
        "spans(min_words=16,max_views=32,margin=0.0075)")
    assert GuardSpec(mode="windows").describe() == "windows(span=16,max_views=8)"
    # the command line's form (routeray calibrate --guard): a mode name or a JSON object
    assert GuardSpec.from_text(" anchored ") == GuardSpec(mode="anchored")
    assert GuardSpec.from_text('{"mode": "heads", "min_words": 16}') == GuardSpec.from_text('"heads"') == GuardSpec()
    assert GuardSpec.from_text('{"min_words": 32}') == GuardSpec(min_words=32)
    inner = KeywordRouter()
    g = guard_router(inner, "heads")
    assert isinstance(g, GuardedRouter)
    assert g.fingerprint != inner.fingerprint and "heads" in g.fingerprint
    assert g.calls is inner.calls  # the inner router's attributes stay reachable


def test_every_builtin_router_is_unguarded_unless_asked():
    """Opt-in: the mode that holds both ends costs about three times the scoring CPU (routeray.routers.guard)."""
    from routeray.routers.registry import available_routers, get_router_class

    assert Router.guard == "off"
    assert {name: get_router_class(name).guard for name in available_routers()} == dict.fromkeys(
        available_routers(), "off")


def test_a_router_config_with_guard_turns_it_on_in_the_routing_service() -> None:
    from routeray.config import Config, ScorerConfig
    from routeray.gateway.scorers import LocalScorers

    cfg = Config(routers=[ScorerConfig(router="random", overrides={"guard": "heads"})])
    # the scorer scores prompts unguarded; the routing service scores the views where they can change the tier
    # (tests/unit/gateway/test_guard_service.py)
    assert not isinstance(LocalScorers(cfg).router("random"), GuardedRouter)
    assert cfg.router_guard(cfg.routers[0]) == GuardSpec()  # explicit: even random's "off" yields


def test_a_guarded_router_cannot_score_a_pool_and_says_why() -> None:
    from routeray.routers.pool import as_pool_scorer

    with pytest.raises(RouterayError, match="rerouting guard on"):
        as_pool_scorer(guard_router(KeywordRouter(), "heads"), "keyword")


def test_load_router_leaves_mf_unguarded_and_obeys_guard():
    import routeray
    from routeray.evaluate.cache import score_prompts
    from routeray.routers.registry import load_router

    mf = routeray.load_router("mf")
    assert not isinstance(mf, GuardedRouter) and "guard" not in mf.fingerprint
    assert hasattr(mf, "score_embeddings")  # routeray eval scores its embeddings directly, as before the guard
    guarded = load_router("mf", guard="heads")
    assert isinstance(guarded, GuardedRouter) and guarded.spec == GuardSpec()
    assert load_router("mf", guard={"mode": "windows"}).spec.mode == "windows"  # type: ignore[attr-defined]
    assert not isinstance(load_router("random"), GuardedRouter)
    prompts = ["What is 2+2?", "Prove that there are infinitely many primes, then list the first ten of them "
               "and explain for each one why it has no divisor other than one and itself."]
    plain = mf.score(prompts)
    assert (guarded.score(prompts) <= plain + 1e-12).all()
    # a guarded router offers no score_embeddings (it would score the whole prompt): evaluation scores its
    # views through score(), so what is cached under the guarded fingerprint is the guarded score
    assert not hasattr(guarded, "score_embeddings")
    emb = np.zeros((len(prompts), 384))
    assert np.allclose(score_prompts(guarded, prompts, progress=False, embeddings=emb), guarded.score(prompts))
    assert np.allclose(score_prompts(mf, prompts, progress=False, embeddings=mf.embedder.embed(prompts)), plain)


# ---- the real default mf against a real gadget ------------------------------------------------------------
# The gadget bench/rerouting.py found against the *unguarded* default mf, in front of the prompt (2026-12-03,
# bench/results/rerouting_flips_spans.json): 10 vocabulary tokens that raise mf's score of almost any prompt.
FOUND_GADGET = "131 egan shillings couples scheme invitational played misleading 1986 cox"


def _flip_share(router: Router, prompts: list[str]) -> float:
    """Share of the prompts below the clean median that the gadget in front lifts to it or above."""
    clean = router.score(prompts)
    threshold = float(np.median(clean))
    attacked = router.score([f"{FOUND_GADGET} {p}" for p in prompts])
    weak = clean < threshold
    return float((attacked[weak] >= threshold).mean())


def test_spans_with_margin_stop_a_found_gadget_that_flips_the_unguarded_default_mf(shared_data):
    import csv

    from routeray.routers.registry import load_router

    with (shared_data / "eval_sample" / "gsm8k" / "gsm8k_responses.csv").open(encoding="utf-8", newline="") as fh:
        prompts = [row["prompt"] for row in csv.DictReader(fh)][:60]  # held out: no router trains on them
    unguarded = load_router("mf")
    guarded = load_router("mf", guard={"mode": "spans", "margin": 0.01})
    assert isinstance(guarded, GuardedRouter) and not isinstance(unguarded, GuardedRouter)
    assert _flip_share(unguarded, prompts) >= 0.8
    assert _flip_share(guarded, prompts) <= 0.1
