"""Tokenizers and the token layout the Kosmos-2 VLA expects.

The sequence follows Kosmos-2's own processor layout, ``<s><image>[Q latents]</image> text``,
repeated once per camera; the image placeholders are overwritten with projected image
features inside the network and the learnable action token is appended there too, so the
text side only has to produce ids and a mask.  Instructions repeat for a whole episode, so
encodings are cached per string.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from vlaeval.agents.kosmos.config import KosmosVLAConfig, WeightsNotAvailableError
from vlaeval.agents.kosmos.hub import not_available_message

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<image>", "</image>")

#: Words of the 34 CALVIN tasks plus the glue words of their annotations: the tiny tokenizer
#: only has to cover the instructions it is smoke-tested and trained on.
_CALVIN_TASKS = (
    "rotate_red_block_right rotate_red_block_left rotate_blue_block_right rotate_blue_block_left "
    "rotate_pink_block_right rotate_pink_block_left push_red_block_right push_red_block_left "
    "push_blue_block_right push_blue_block_left push_pink_block_right push_pink_block_left "
    "move_slider_left move_slider_right open_drawer close_drawer lift_red_block_table "
    "lift_red_block_slider lift_red_block_drawer lift_blue_block_table lift_blue_block_slider "
    "lift_blue_block_drawer lift_pink_block_table lift_pink_block_slider lift_pink_block_drawer "
    "place_in_slider place_in_drawer stack_block unstack_block turn_on_lightbulb turn_off_lightbulb "
    "turn_on_led turn_off_led push_into_drawer"
).split()
_CORPUS = tuple(t.replace("_", " ") for t in _CALVIN_TASKS) + (
    "take the red block and rotate it to the right",
    "grasp the blue block and lift it up",
    "push the sliding door to the left side",
    "pull the handle to open the drawer",
    "go push the button to turn on the green light",
    "toggle the switch to turn off the yellow bulb",
    "put the grasped object on top of the other block",
    "sweep the pink block into the drawer",
)


@functools.lru_cache(maxsize=4)
def build_local_tokenizer(vocab_size: int) -> Any:
    """A byte-level BPE trained in-process on a fixed corpus.

    BPE training on a fixed corpus is deterministic (verified by the tests), so a checkpoint
    of the tiny preset needs no tokenizer files: the same tokenizer is rebuilt on load.
    Byte-level means any instruction still encodes, just into more tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def load_tokenizer(config: KosmosVLAConfig, *, local_files_only: bool = False) -> Any:
    """The tokenizer a config names: the hub tokenizer, or the local BPE for the tiny preset."""
    if config.tokenizer is None:
        return build_local_tokenizer(config.backbone.get("text_config", {}).get("vocab_size", 512))
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(config.tokenizer, local_files_only=local_files_only)
    except (OSError, ValueError) as exc:
        raise WeightsNotAvailableError(not_available_message(config.tokenizer, "tokenizer files", exc)) from exc


class TextEncoder:
    """Instruction -> (input_ids, attention_mask) in the layout the network splices into."""

    def __init__(self, tokenizer: Any, config: KosmosVLAConfig, latent_query_num: int) -> None:
        self._tokenizer = tokenizer
        self._max_tokens = config.max_text_tokens
        self.pad_id = int(tokenizer.pad_token_id)
        boi = int(tokenizer.convert_tokens_to_ids("<image>"))
        eoi = int(tokenizer.convert_tokens_to_ids("</image>"))
        block = [boi] + [boi] * latent_query_num + [eoi]
        self._prefix = [int(tokenizer.bos_token_id)] + block * len(config.cameras)
        self._cache: dict[str, list[int]] = {}

    def _ids(self, instruction: str) -> list[int]:
        if instruction not in self._cache:
            text = self._tokenizer(instruction, add_special_tokens=False)["input_ids"][: self._max_tokens]
            self._cache[instruction] = self._prefix + list(text)
        return self._cache[instruction]

    def __call__(self, instructions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded int64 ids and mask; padding never changes a row's output (see model)."""
        rows = [self._ids(i) for i in instructions]
        length = max(len(r) for r in rows)
        ids = np.full((len(rows), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), length), dtype=np.int64)
        for k, row in enumerate(rows):
            ids[k, : len(row)] = row
            mask[k, : len(row)] = 1
        return ids, mask
