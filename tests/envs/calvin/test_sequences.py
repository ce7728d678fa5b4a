"""The symbolic task model and the official-chain generator against calvin.md Part A."""

from __future__ import annotations

import collections
import hashlib
import json

import numpy as np
import pytest

from vlaeval.envs.calvin.sequences import (
    SHIPPED_SEQUENCES,
    _chains_per_state,
    _sample_chains,
    _TransitionTable,
    canonical_json,
    generate_sequences,
    initial_states,
    official_sequences,
)
from vlaeval.envs.calvin.tasks import (
    STATE_KEYS,
    TASK_CATEGORY,
    TASKS,
    apply_task,
    is_valid_chain,
    successors,
)

# --- §A.2 / §A.6 ------------------------------------------------------------------------------

SPEC_TASK_ORDER = (
    "rotate_red_block_right rotate_red_block_left rotate_blue_block_right rotate_blue_block_left "
    "rotate_pink_block_right rotate_pink_block_left push_red_block_right push_red_block_left "
    "push_blue_block_right push_blue_block_left push_pink_block_right push_pink_block_left "
    "move_slider_left move_slider_right open_drawer close_drawer lift_red_block_table "
    "lift_red_block_slider lift_red_block_drawer lift_blue_block_table lift_blue_block_slider "
    "lift_blue_block_drawer lift_pink_block_table lift_pink_block_slider lift_pink_block_drawer "
    "place_in_slider place_in_drawer stack_block unstack_block turn_on_lightbulb turn_off_lightbulb "
    "turn_on_led turn_off_led push_into_drawer"
).split()
SPEC_CATEGORIES = [1] * 12 + [2, 2, 3, 3, 4, 5, 6, 4, 5, 6, 4, 5, 6, 7, 7, 10, 11, 8, 8, 8, 8, 9]


def test_task_order_and_categories_are_normative():
    assert TASKS == tuple(SPEC_TASK_ORDER)
    assert [TASK_CATEGORY[t] for t in TASKS] == SPEC_CATEGORIES


def _state(**changes):
    base = dict(zip(STATE_KEYS, (0, 0, "right", "closed", "table", "table", "slider_right", 0)))
    base.update(changes)
    return base


def test_stack_block_with_two_free_targets_is_rejected_not_picked():
    state = _state(red_block="grasped", blue_block="table", pink_block="table", grasped=1)
    assert len(successors(state, "stack_block")) == 2
    assert apply_task(state, "stack_block") is None
    one_target = _state(red_block="grasped", blue_block="table", pink_block="slider_left", grasped=1)
    assert apply_task(one_target, "stack_block") == {
        **one_target,
        "red_block": "stacked_top",
        "blue_block": "stacked_bottom",
        "grasped": 0,
    }


def test_place_in_slider_quirk_puts_block_in_the_half_named_like_the_door():
    held = _state(red_block="grasped", grasped=1, slider="right")
    placed = apply_task(held, "place_in_slider")
    assert placed["red_block"] == "slider_right" and placed["grasped"] == 0
    # ...which is the half lift_X_block_slider considers covered while the door stays right.
    assert apply_task(placed, "lift_red_block_slider") is None
    moved = apply_task(placed, "move_slider_left")
    assert apply_task(moved, "lift_red_block_slider")["red_block"] == "grasped"


def test_push_into_drawer_needs_the_other_blocks_on_the_shelf_and_an_open_drawer():
    state = _state(red_block="table", blue_block="slider_left", pink_block="slider_right", drawer="open")
    assert apply_task(state, "push_into_drawer") == {**state, "red_block": "drawer"}
    assert apply_task({**state, "drawer": "closed"}, "push_into_drawer") is None
    assert apply_task({**state, "pink_block": "table"}, "push_into_drawer") is None


def test_grasped_blocks_everything_but_place_and_stack():
    held = _state(pink_block="grasped", grasped=1, drawer="open")
    allowed = {t for t in TASKS if successors(held, t)}
    assert allowed == {"place_in_slider", "place_in_drawer", "stack_block"}


def test_unstack_keeps_grasped_and_rotate_changes_nothing():
    stacked = _state(red_block="stacked_top", blue_block="stacked_bottom", pink_block="slider_left")
    assert apply_task(stacked, "unstack_block") == {**stacked, "red_block": "table", "blue_block": "table"}
    assert apply_task(stacked, "rotate_pink_block_left") is None
    assert apply_task(_state(), "rotate_red_block_left") == _state()


def test_chain_validity_needs_distinct_categories():
    assert is_valid_chain(_state(), ("open_drawer", "turn_on_lightbulb", "move_slider_left", "rotate_red_block_left", "lift_red_block_table"))
    assert not is_valid_chain(_state(), ("open_drawer", "turn_on_lightbulb", "turn_on_led", "rotate_red_block_left", "lift_red_block_table"))


# --- §A.7 / §A.8 ------------------------------------------------------------------------------


def test_initial_states_enumeration():
    states = initial_states()
    assert len(states) == 192
    assert all(list(s) == list(STATE_KEYS) for s in states)
    assert all(type(s[k]) is int for s in states for k in ("led", "lightbulb", "grasped"))
    assert list(states[0].values()) == [0, 0, "right", "closed", "table", "table", "slider_right", 0]
    assert list(states[190].values()) == [1, 1, "left", "open", "slider_left", "table", "slider_right", 0]
    triples = [tuple(s[k] for k in ("red_block", "blue_block", "pink_block")) for s in states[:12]]
    for index, s in enumerate(states):  # index = 12 c + k
        c = 8 * s["led"] + 4 * s["lightbulb"] + 2 * (s["slider"] == "left") + (s["drawer"] == "open")
        assert index == 12 * c + triples.index((s["red_block"], s["blue_block"], s["pink_block"]))
    assert triples[7] == ("slider_right", "table", "slider_left")


def test_chains_per_state_matches_array_split():
    assert _chains_per_state(1000, 192) == [len(a) for a in np.array_split(np.arange(1000), 192)]
    assert _chains_per_state(1000, 192)[:41] == [6] * 40 + [5]


# --- §A.9: the batched sampler against a literal upstream-style loop -------------------------


def _upstream_style(seed: int, state: dict, count: int) -> tuple[list[tuple[str, ...]], int]:
    """Upstream's loop: global legacy RNG, choice over the name array, full model check."""
    np.random.seed(seed)
    names = np.array(TASKS)
    accepted, draws = [], 0
    while len(accepted) < count:
        draws += 1
        chain = tuple(str(t) for t in np.random.choice(names, size=5, replace=False))
        if is_valid_chain(state, chain):
            accepted.append(chain)
    return accepted, draws


@pytest.fixture(scope="module")
def table():
    return _TransitionTable([tuple(s.values()) for s in initial_states()])


def test_sampler_matches_upstream_loop_for_state_0(table):
    state = initial_states()[0]
    expected, draws = _upstream_style(0, state, 6)
    assert draws == 12368
    assert _sample_chains(0, tuple(state.values()), 6, table) == expected


@pytest.mark.parametrize(
    "index, first",
    [
        (0, "open_drawer turn_on_lightbulb move_slider_left rotate_red_block_left lift_red_block_table"),
        (1, "push_blue_block_right open_drawer turn_on_led lift_blue_block_table place_in_drawer"),
        (2, "turn_on_led push_pink_block_left lift_pink_block_table stack_block move_slider_left"),
    ],
)
def test_first_accepted_chain_per_state(table, index, first):
    assert _sample_chains(index, tuple(initial_states()[index].values()), 1, table) == [tuple(first.split())]


def test_transition_table_agrees_with_the_model(table):
    rng = np.random.default_rng(1)
    for index in rng.choice(192, size=8, replace=False):
        state = initial_states()[index]
        chains = np.array([rng.permutation(len(TASKS))[:5] for _ in range(500)])
        mask = table.valid(tuple(state.values()), chains)
        assert mask.tolist() == [is_valid_chain(state, [TASKS[i] for i in c]) for c in chains]


# --- §A.10 / §A.11 / §A.12 -------------------------------------------------------------------

FIRST_FIVE = [
    (
        [1, 1, "left", "open", "slider_left", "table", "slider_right", 0],
        "rotate_blue_block_right move_slider_right lift_red_block_slider place_in_slider turn_off_lightbulb",
    ),
    (
        [1, 1, "right", "open", "slider_right", "table", "slider_left", 0],
        "turn_off_led push_into_drawer lift_blue_block_drawer place_in_slider close_drawer",
    ),
    (
        [0, 1, "right", "closed", "table", "slider_right", "slider_left", 0],
        "lift_pink_block_slider place_in_slider open_drawer rotate_red_block_right lift_red_block_table",
    ),
    (
        [1, 0, "right", "closed", "slider_right", "table", "table", 0],
        "rotate_blue_block_right lift_pink_block_table place_in_slider move_slider_left open_drawer",
    ),
    (
        [1, 0, "left", "closed", "slider_right", "table", "table", 0],
        "open_drawer lift_pink_block_table place_in_slider turn_on_lightbulb rotate_blue_block_left",
    ),
]


@pytest.fixture(scope="module")
def official():
    return official_sequences()


def test_known_prefix(official):
    assert len(official) == 1000
    for (state, chain), (values, names) in zip(official, FIRST_FIVE):
        assert list(state) == list(STATE_KEYS)
        assert list(state.values()) == values
        assert chain == tuple(names.split())


def test_whole_list_checksum(official):
    canonical = json.dumps([[list(s.values()), list(c)] for s, c in official], separators=(",", ":")).encode("ascii")
    assert len(canonical) == 160690
    assert hashlib.sha256(canonical).hexdigest() == "961386371b028e8dc35df74eac85e797083c0f2345382a1120ddc8ced4db9e6c"


def test_generator_reproduces_the_shipped_list(official):
    generated = generate_sequences()
    assert generated == official
    assert canonical_json([(s.values(), c) for s, c in generated]) == SHIPPED_SEQUENCES.read_text()


def test_final_shuffle_is_a_fresh_seed_0_permutation(official, table):
    perm = np.arange(1000)
    np.random.RandomState(0).shuffle(perm)
    assert perm[:10].tolist() == [993, 859, 298, 553, 672, 971, 27, 231, 306, 706]
    # P[993] is state 190, slot 3 (state 40 + (993 - 240) // 5, slot (993 - 240) % 5).
    state = initial_states()[190]
    assert official[0] == (state, _sample_chains(190, tuple(state.values()), 5, table)[3])


def test_statistics(official):
    assert len({tuple(s.values()) for s, _ in official}) == 192
    counts = collections.Counter(t for _, chain in official for t in chain)
    assert set(counts) == set(TASKS)
    assert counts.most_common(1) == [("place_in_slider", 398)]
    assert min(counts.items(), key=lambda kv: kv[1]) == ("lift_pink_block_drawer", 17)
    firsts = {chain[0] for _, chain in official}
    never_first = {"place_in_slider", "place_in_drawer", "stack_block", "unstack_block"} | {
        f"lift_{c}_block_drawer" for c in ("red", "blue", "pink")
    }
    assert not firsts & never_first


def test_every_chain_is_valid_with_plain_types(official):
    for state, chain in official:
        assert len(set(chain)) == 5 and all(type(t) is str for t in chain)
        assert all(type(v) in (int, str) for v in state.values())
        assert is_valid_chain(state, chain)


def test_results_are_fresh_copies_and_global_rng_is_untouched():
    first = official_sequences()
    first[0][0]["led"] = "corrupted"
    np.random.seed(123)
    expected = np.random.random_sample()
    np.random.seed(123)
    again = official_sequences()
    assert np.random.random_sample() == expected
    assert again[0][0]["led"] == 1
