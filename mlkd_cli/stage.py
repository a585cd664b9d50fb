"""``stage.json``: which command made an output directory, from which inputs, and whether it finished.

A stage whose inputs and config are unchanged and whose status is ``done`` is skipped
("up to date"); one whose inputs changed refuses to run unless forced, so a finished
experiment is never overwritten by accident.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import platform
import sys
from pathlib import Path
from typing import Any

from mlkd_cli.errors import StageError
from mlkd_cli.fsutil import atomic_write_text

STAGE_FILE = "stage.json"


@dataclasses.dataclass
class StageRecord:
    command: str
    argv: list[str]
    inputs: dict[str, dict[str, str]]  # name -> {"path": ..., "digest": ...}
    config: dict[str, Any]
    status: str = "running"
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    started: str = ""
    finished: str = ""

    def changes_from(self, old: "StageRecord") -> list[str]:
        """Names of inputs (and 'config') that differ between ``old`` and this record."""
        changed = [
            name
            for name in sorted(set(self.inputs) | set(old.inputs))
            if self.inputs.get(name, {}).get("digest") != old.inputs.get(name, {}).get("digest")
        ]
        if self.config != old.config:
            changed.append("config")
        return changed


def software_versions() -> dict[str, str]:
    from mlkd_cli.version import __version__

    versions = {"mlkd": __version__, "python": platform.python_version()}
    for module in ("torch", "lhotse", "sentencepiece"):
        mod = sys.modules.get(module)
        if mod is not None:
            versions[module] = getattr(mod, "__version__", "unknown")
    return versions


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def read_stage(out_dir: str | Path) -> StageRecord | None:
    path = Path(out_dir) / STAGE_FILE
    if not path.is_file():
        return None
    try:
        return StageRecord(**json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError) as e:
        raise StageError(f"{path}: unreadable stage record ({e}); delete it to start this stage afresh") from None


def write_stage(out_dir: str | Path, record: StageRecord) -> None:
    atomic_write_text(Path(out_dir) / STAGE_FILE, json.dumps(dataclasses.asdict(record), indent=2) + "\n")


def plan_stage(out_dir: str | Path, new: StageRecord, force: bool) -> str:
    """What to do in ``out_dir``: "skip" (up to date), "resume" (an interrupted run of the same
    inputs and config) or "fresh"; raise if it holds a run of other inputs and not ``force``."""
    old = read_stage(out_dir)
    if old is None:
        return "fresh"
    changed = new.changes_from(old)
    if force:
        return "fresh"
    if not changed:
        return "skip" if old.status == "done" else "resume"
    raise StageError(
        f"{Path(out_dir) / STAGE_FILE}: this directory was made by `{' '.join(old.argv)}` "
        f"from different inputs (changed: {', '.join(changed)}); "
        "rerun with --force to overwrite it, or choose another output directory"
    )


def is_up_to_date(out_dir: str | Path, new: StageRecord, force: bool) -> bool:
    """True when ``out_dir`` already holds a finished run of ``new``; raise if it holds another."""
    old = read_stage(out_dir)
    if old is not None and old.status != "done":
        return False  # an interrupted run: its outputs are redone whatever its inputs were
    return plan_stage(out_dir, new, force) == "skip"
