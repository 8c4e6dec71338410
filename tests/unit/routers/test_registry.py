import numpy as np
import pytest

import routeray
from routeray.errors import UnknownRouterError
from routeray.routers.base import Router
from routeray.routers.registry import get_router_class, register_router


def test_unknown_router_lists_known_ones():
    with pytest.raises(UnknownRouterError) as exc:
        get_router_class("nope")
    assert "mf" in str(exc.value) and "random" in str(exc.value)


def test_register_refuses_duplicates_and_non_routers():
    class Dup(Router):
        name = "random"

        def score(self, prompts):
            return np.zeros(len(prompts))

        @classmethod
        def load(cls, artifact_dir, **overrides):
            return cls()

    with pytest.raises(ValueError):
        register_router(Dup)
    with pytest.raises(TypeError):
        register_router(int)  # type: ignore[arg-type]


def test_random_router_is_seeded_and_in_range():
    prompts = [f"prompt number {i} about something" for i in range(2000)]
    a = routeray.load_router("random", seed=1).score(prompts)
    b = routeray.load_router("random", seed=1).score(prompts)
    c = routeray.load_router("random", seed=2).score(prompts)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() < 1
    assert abs(a.mean() - 0.5) < 0.03  # uniform: mean 0.5, sd of the mean ~0.006
    # the same prompt gets the same score in any batch
    assert routeray.load_router("random", seed=1).score([prompts[7]])[0] == a[7]
