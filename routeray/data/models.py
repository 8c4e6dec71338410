"""One name per model across sources: ``canonical_model`` maps each source's spelling to it."""

from __future__ import annotations

import re
from functools import lru_cache

GPT4_1106 = "gpt-4-1106-preview"
MIXTRAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
# The (strong, weak) pair of the RouteLLM paper: the default of training, evaluation and the CLI.
DEFAULT_STRONG = GPT4_1106
DEFAULT_WEAK = MIXTRAL

# canonical name -> spellings seen in the sources (AlpacaEval folders, arena-hard files, RouterBench
# columns, MMLU-Pro, lmsys arena-55k, RouteLLM evals). Matching is on _key(), so case, "_"/"-" and an
# "org/" prefix do not matter. Variants that differ in behaviour (``_concise``, ``_verbose``, other
# dates) are different models and deliberately absent.
_ALIASES: dict[str, tuple[str, ...]] = {
    GPT4_1106: ("gpt4_1106_preview", "gpt-4-turbo", "gpt-4-1106-preview", "gpt-4-turbo-1106",
                "openai/gpt-4-1106-preview"),
    MIXTRAL: ("Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b-chat", "mixtral-8x7b-instruct-v0.1",
              "mixtral-8x7b-instruct"),
    "mistralai/Mistral-7B-Instruct-v0.1": ("Mistral-7B-Instruct-v0.1",),
    "mistralai/Mistral-7B-Instruct-v0.2": ("Mistral-7B-Instruct-v0.2",),
    "gpt-4-0314": ("gpt4", "gpt4_0314", "gpt-4-0314"),
    "gpt-4-0613": ("gpt4_0613", "gpt-4-0613"),
    "gpt-3.5-turbo-0301": ("gpt35_turbo_0301", "gpt-3.5-turbo-0301"),
    "gpt-3.5-turbo-1106": ("gpt35_turbo_1106", "gpt-3.5-turbo-1106"),
    "claude-1": ("claude-v1", "claude-1"),
    "claude-2.0": ("claude-v2", "claude-2", "claude-2.0"),
    "claude-instant-1": ("claude-instant-v1", "claude-instant-1"),
    "llama-2-70b-chat": ("Llama-2-70b-chat", "llama-2-70b-chat-hf", "meta/llama-2-70b-chat",
                         "meta-llama/Llama-2-70b-chat-hf"),
    "vicuna-33b-v1.3": ("vicuna-33b", "vicuna-33b-v1.3"),
    "text-davinci-003": ("text_davinci_003",),
    "text-davinci-001": ("text_davinci_001",),
}


def _key(name: str) -> str:
    name = name.strip().lower().replace("_", "-")
    return name.rsplit("/", 1)[-1]


_LOOKUP: dict[str, str] = {}
for _canon, _spellings in _ALIASES.items():
    for _s in (_canon, *_spellings):
        _LOOKUP[_key(_s)] = _canon


@lru_cache(maxsize=8192)  # importers call it once per record; sources use a few dozen names
def canonical_model(name: str) -> str:
    """The canonical name of a model; unknown names come back stripped, with whitespace collapsed."""
    cleaned = re.sub(r"\s+", " ", str(name).strip())
    return _LOOKUP.get(_key(cleaned), cleaned)
