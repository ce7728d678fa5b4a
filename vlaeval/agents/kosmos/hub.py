"""Pretrained files from the Hugging Face hub: whether they are cached, and what to say when not.

vlaeval never downloads implicitly. Evaluation machines often reach no hub, and there the hub
client spends about 25 s retrying before it gives up; so the cache is probed locally first, before
torch or transformers are imported, and a miss becomes a one-line error in well under a second
that says how to get the files. Downloading stays one option away (``local_files_only=false``).
"""

from __future__ import annotations

from vlaeval.agents.kosmos.config import WeightsNotAvailableError
from vlaeval.errors import VlaevalError

#: Any one of these holds a model's weights (single file, sharded index, legacy format).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _cached(hub_id: str, filename: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError as exc:
        raise VlaevalError(f"{hub_id} needs the `agents` extra ({exc}); install it with: bash scripts/setup.sh agents") from exc
    return isinstance(try_to_load_from_cache(hub_id, filename), str)


def weights_cached(hub_id: str) -> bool:
    """True when the local cache holds the model's config and weights; never touches the network."""
    return _cached(hub_id, "config.json") and any(_cached(hub_id, name) for name in WEIGHT_FILES)


def require_weights(hub_id: str) -> None:
    """Raise :class:`WeightsNotAvailableError` unless :func:`weights_cached`."""
    if not weights_cached(hub_id):
        from huggingface_hub.constants import HF_HUB_CACHE

        raise WeightsNotAvailableError(not_available_message(hub_id, "model weights", f"not in the Hugging Face cache {HF_HUB_CACHE}"))


def not_available_message(hub_id: str, what: str, reason: BaseException | str) -> str:
    """The one line every 'not in the local cache' failure prints, saying how to fix it."""
    if isinstance(reason, BaseException):
        reason = f"{type(reason).__name__}: {(str(reason).strip().splitlines() or [''])[0]}"
    return (
        f"the {what} for {hub_id!r} are not available locally ({reason}); on a machine with network access run "
        f"`hf download {hub_id}` (`huggingface-cli download {hub_id}` with huggingface_hub < 1.0), copy the cache "
        f"here and point HF_HOME at it, or let vlaeval download them with --agent-opt local_files_only=false; "
        f"kosmos-lstm-tiny and checkpoints trained from it (--checkpoint DIR) need no download"
    )
