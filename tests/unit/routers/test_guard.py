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
    assert views(PROMPT, GuardSpec()) == [PROMPT]
    r = KeywordRouter()
    assert guard_router(r, "off") is r and guard_router(r, None) is r


def test_tail_drops_the_last_words_and_keeps_formatting():
    v = views(PROMPT, GuardSpec(mode="tail", span=4, min_words=4))
    assert v[0] == PROMPT
    assert v[1] == "Tell me\nwhat the capital of France is, and name two rivers that flow through"


def test_ends_also_drops_the_first_words():
    v = views(PROMPT, GuardSpec(mode="ends", span=4, min_words=4))
    assert len(v) == 3 and v[2].startswith("capital of France")


def test_short_prompts_are_scored_as_sent():
    assert views("What is 2+2?", GuardSpec(mode="windows", span=4, min_words=8)) == ["What is 2+2?"]


@settings(max_examples=300, deadline=None)
@given(n_words=st.integers(1, 300), gadget=st.integers(1, 16), where=st.floats(0, 1),
       max_views=st.integers(3, 10))
def test_windows_leave_one_view_without_any_gadget_word(n_words, gadget, where, max_views):
    spec = GuardSpec(mode="windows", span=16, min_words=8, max_views=max_views)
    words = [f"w{i}" for i in range(n_words)]
    at = int(where * n_words)
    attacked = " ".join([*words[:at], *["GADGET"] * gadget, *words[at:]])
    vs = views(attacked, spec)
    assert 1 <= len(vs) <= max_views
    if n_words + gadget > 16:
        # a gadget of up to `span` words anywhere: some view holds none of it
        assert any("GADGET" not in v for v in vs[1:])


def test_guard_stops_an_appended_gadget_and_calls_the_router_once_per_batch():
    inner = KeywordRouter()
    guarded = guard_router(inner, {"mode": "tail", "span": 10})
    attacked = PROMPT + " HARD HARD HARD HARD HARD HARD"
    plain, hit = inner.score([PROMPT, attacked])
    assert plain == 0 and hit > 0.2
    inner.calls.clear()
    assert list(guarded.score([PROMPT, attacked])) == [0.0, 0.0]
    assert inner.calls == [4]  # two prompts, two views each, one call


def test_spec_parsing_and_fingerprint():
    assert GuardSpec.parse("tail").mode == "tail"
    assert GuardSpec.parse({"mode": "windows", "span": 12}).span == 12
    with pytest.raises(RouterayError, match="unknown guard mode"):
        GuardSpec.parse("nope")
    with pytest.raises(RouterayError, match="unknown guard option"):
        GuardSpec.parse({"mode": "tail", "spam": 1})
    with pytest.raises(RouterayError):
        GuardSpec(mode="tail", span=0)
    inner = KeywordRouter()
    g = guard_router(inner, "tail")
    assert isinstance(g, GuardedRouter)
    assert g.fingerprint != inner.fingerprint and "tail" in g.fingerprint
    assert g.calls is inner.calls  # the inner router's attributes stay reachable
