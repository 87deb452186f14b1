"""Names that may be Hugging Face Hub ids or local paths, and the one-line error when neither resolves."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import PipelineError


def looks_local(name: str) -> bool:
    """True for what can only be a path: a Hub id is ``name`` or ``owner/name``."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).expanduser().exists()


def not_found(what: str, name: str, key: str, exc: BaseException) -> PipelineError:
    """An error for a Hub id or folder that could not be loaded, saying how to provide it."""
    text = str(exc).strip()
    cause = text.splitlines()[0][:200] if text else type(exc).__name__
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    where = f"HF_HOME={os.environ['HF_HOME']}" if "HF_HOME" in os.environ else "the default Hugging Face cache"
    reach = "offline mode is on (HF_HUB_OFFLINE=1)" if offline else "the Hub may be unreachable"
    return PipelineError(
        f"{what} {name!r} ({key}) could not be loaded: {cause} [{reach}; looked in {where}] "
        f"(fix: allow Hub access once so it is cached, point HF_HOME at a cache that holds it, "
        f"or set {key} to a local directory)"
    )
