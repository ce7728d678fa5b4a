"""Instruction sets: full coverage, no duplicates, and truly unseen evaluation wording."""

from __future__ import annotations

import collections

import pytest

from vlaeval.envs.calvin.language import EVAL_INSTRUCTIONS, INSTRUCTION_SETS, TRAIN_INSTRUCTIONS
from vlaeval.envs.calvin.tasks import COLOURS, TASKS


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def test_every_task_is_covered_in_both_sets():
    assert list(TRAIN_INSTRUCTIONS) == list(TASKS)
    assert list(EVAL_INSTRUCTIONS) == list(TASKS)
    assert all(len(v) >= 4 for v in TRAIN_INSTRUCTIONS.values())
    assert all(len(v) == 2 for v in EVAL_INSTRUCTIONS.values())
    assert INSTRUCTION_SETS == {"train": TRAIN_INSTRUCTIONS, "eval": EVAL_INSTRUCTIONS}


def test_strings_are_clean():
    for instructions in (TRAIN_INSTRUCTIONS, EVAL_INSTRUCTIONS):
        for task, texts in instructions.items():
            assert isinstance(texts, tuple), task
            assert all(isinstance(t, str) and t and t == t.strip() and t == _norm(t) for t in texts), task


def test_no_instruction_is_used_twice_anywhere():
    counts = collections.Counter(_norm(t) for s in (TRAIN_INSTRUCTIONS, EVAL_INSTRUCTIONS) for v in s.values() for t in v)
    assert [t for t, n in counts.items() if n > 1] == []


def test_eval_wording_never_appears_in_training():
    train = {_norm(t) for v in TRAIN_INSTRUCTIONS.values() for t in v}
    assert not train & {_norm(t) for v in EVAL_INSTRUCTIONS.values() for t in v}


@pytest.mark.parametrize("task", [t for t in TASKS if "_block_" in t])
def test_block_tasks_name_their_block_only(task):
    colour = task.split("_")[1]
    for text in TRAIN_INSTRUCTIONS[task] + EVAL_INSTRUCTIONS[task]:
        assert f"{colour} block" in text
        assert not any(f"{other} block" in text for other in COLOURS if other != colour)
