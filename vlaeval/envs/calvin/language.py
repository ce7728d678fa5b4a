"""Language instructions for the 34 CALVIN tasks, in vlaeval's own wording.

CALVIN's annotation strings are not reproduced; these paraphrases are written for vlaeval. Two
disjoint sets exist so the suite can measure generalisation to unseen phrasings:

* :data:`TRAIN_INSTRUCTIONS`: several paraphrases per task, for training and for the standard
  settings.
* :data:`EVAL_INSTRUCTIONS`: phrasings that never occur in the training set (also not after
  lower-casing and whitespace normalisation), for the ``unseen-instructions`` setting.

Directions follow the spec's convention: the robot faces +y, so "left" is -x as seen from it.
"""

from __future__ import annotations

from vlaeval.envs.calvin.tasks import COLOURS, TASKS


def _block_tasks(colour: str) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Train and eval paraphrases of the tasks that name one block; the colour is the only
    difference between blocks, so the phrasings are shared."""
    b = f"{colour} block"
    return {
        f"rotate_{colour}_block_right": (
            (
                f"rotate the {b} to the right",
                f"turn the {b} clockwise",
                f"twist the {b} rightwards",
                f"spin the {b} a quarter turn to the right",
            ),
            (f"give the {b} a clockwise twist", f"swivel the {b} towards the right"),
        ),
        f"rotate_{colour}_block_left": (
            (
                f"rotate the {b} to the left",
                f"turn the {b} counterclockwise",
                f"twist the {b} leftwards",
                f"spin the {b} a quarter turn to the left",
            ),
            (f"give the {b} a counterclockwise twist", f"swivel the {b} towards the left"),
        ),
        f"push_{colour}_block_right": (
            (
                f"push the {b} to the right",
                f"slide the {b} rightwards",
                f"shove the {b} towards the right",
                f"nudge the {b} to the right side",
            ),
            (f"move the {b} right by pushing it", f"sweep the {b} over to the right"),
        ),
        f"push_{colour}_block_left": (
            (
                f"push the {b} to the left",
                f"slide the {b} leftwards",
                f"shove the {b} towards the left",
                f"nudge the {b} to the left side",
            ),
            (f"move the {b} left by pushing it", f"sweep the {b} over to the left"),
        ),
        f"lift_{colour}_block_table": (
            (
                f"lift the {b} from the table",
                f"pick up the {b} lying on the table",
                f"grasp the {b} on the table and raise it",
                f"take the {b} off the table",
            ),
            (f"raise the {b} up from the tabletop", f"hold the {b} from the table in the air"),
        ),
        f"lift_{colour}_block_slider": (
            (
                f"lift the {b} from the shelf",
                f"pick up the {b} in the sliding cabinet",
                f"grasp the {b} behind the sliding door and raise it",
                f"take the {b} out of the shelf",
            ),
            (f"raise the {b} up out of the cupboard", f"fetch the {b} from the shelf and hold it up"),
        ),
        f"lift_{colour}_block_drawer": (
            (
                f"lift the {b} from the drawer",
                f"pick up the {b} inside the drawer",
                f"grasp the {b} in the drawer and raise it",
                f"take the {b} out of the drawer",
            ),
            (f"raise the {b} up out of the drawer", f"fetch the {b} from the drawer and hold it up"),
        ),
    }


_OTHER_TASKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "move_slider_left": (
        (
            "slide the door to the left",
            "move the sliding door left",
            "push the sliding panel leftwards",
            "shift the cabinet door to the left side",
        ),
        ("drag the sliding door over to the left", "bring the cupboard's sliding door left"),
    ),
    "move_slider_right": (
        (
            "slide the door to the right",
            "move the sliding door right",
            "push the sliding panel rightwards",
            "shift the cabinet door to the right side",
        ),
        ("drag the sliding door over to the right", "bring the cupboard's sliding door right"),
    ),
    "open_drawer": (
        ("open the drawer", "pull the drawer out", "slide the drawer open", "pull the drawer towards you"),
        ("draw the drawer outwards", "get the drawer open"),
    ),
    "close_drawer": (
        ("close the drawer", "push the drawer in", "slide the drawer shut", "push the drawer closed"),
        ("shut the drawer", "press the drawer back into the desk"),
    ),
    "place_in_slider": (
        (
            "put the block you are holding on the shelf",
            "place the grasped block in the sliding cabinet",
            "set the block down on the shelf",
            "store the held block in the cabinet",
        ),
        ("deposit the block behind the sliding door", "leave the block in the cupboard"),
    ),
    "place_in_drawer": (
        (
            "put the block you are holding in the drawer",
            "place the grasped block inside the drawer",
            "set the block down in the drawer",
            "drop the held block into the drawer",
        ),
        ("deposit the block in the drawer", "leave the block inside the open drawer"),
    ),
    "stack_block": (
        (
            "stack the block on top of another one",
            "put the held block onto a different block",
            "place the block on top of another block",
            "build a tower of two blocks",
        ),
        ("set the block down on a second block", "pile the block onto another one"),
    ),
    "unstack_block": (
        (
            "take the top block off the stack",
            "unstack the blocks",
            "remove the upper block from the pile",
            "separate the stacked blocks",
        ),
        ("lift the top block off the tower and put it down", "break up the stack of blocks"),
    ),
    "turn_on_lightbulb": (
        (
            "turn on the light bulb",
            "switch the lamp on",
            "push the switch up to light the bulb",
            "make the yellow light glow",
        ),
        ("flip the switch so the bulb lights up", "get the lightbulb shining"),
    ),
    "turn_off_lightbulb": (
        (
            "turn off the light bulb",
            "switch the lamp off",
            "push the switch down to darken the bulb",
            "make the yellow light go out",
        ),
        ("flip the switch so the bulb goes dark", "stop the lightbulb shining"),
    ),
    "turn_on_led": (
        (
            "turn on the green light",
            "press the button to switch the led on",
            "light up the led",
            "push the button so the green lamp comes on",
        ),
        ("activate the green led", "hit the button until the green light shines"),
    ),
    "turn_off_led": (
        (
            "turn off the green light",
            "press the button to switch the led off",
            "make the led go dark",
            "push the button so the green lamp goes out",
        ),
        ("deactivate the green led", "hit the button until the green light is off"),
    ),
    "push_into_drawer": (
        (
            "push the block on the table into the drawer",
            "sweep the block off the table into the drawer",
            "slide the table block into the open drawer",
            "shove the block from the table into the drawer",
        ),
        ("knock the block on the desk into the drawer", "get the tabletop block into the drawer by pushing it"),
    ),
}

_BY_TASK = {**{k: v for c in COLOURS for k, v in _block_tasks(c).items()}, **_OTHER_TASKS}

#: Task -> training paraphrases (also the wording of the standard settings).
TRAIN_INSTRUCTIONS: dict[str, tuple[str, ...]] = {t: _BY_TASK[t][0] for t in TASKS}

#: Task -> held-out paraphrases for the ``unseen-instructions`` setting.
EVAL_INSTRUCTIONS: dict[str, tuple[str, ...]] = {t: _BY_TASK[t][1] for t in TASKS}

#: Instruction-set name (a setting's ``options["instructions"]``) -> instructions.
INSTRUCTION_SETS: dict[str, dict[str, tuple[str, ...]]] = {"train": TRAIN_INSTRUCTIONS, "eval": EVAL_INSTRUCTIONS}
