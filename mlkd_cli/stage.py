"""The stage protocol: every command and cache decides, writes and publishes its outputs here.

An output directory holds a record (``stage.json``; a second stage sharing the directory,
such as scoring inside a decode dir, names its own) of the command that made it: its argv,
its inputs (paths and content digests), its resolved config, software versions, status and
the names of the entries it published. From that record, and nothing else, :meth:`Stage.plan`
decides:

  skip      the same inputs and config, finished: "up to date", nothing is rewritten
  resume    the same inputs and config, interrupted (training stages only)
  fresh     nothing there yet, ``--force``, an unfinished publish, or (for derived outputs
            such as caches and scores: ``on_change="redo"``) changed inputs, or changes only
            among those the stage ``follows`` (a decode: its calibrated rejection rule)
  refuse    changed inputs or config of a finished or running stage, without ``--force``:
            a StageError names what changed

Work happens under an exclusive lock (a second identical command fails at once instead of
writing into the same directory) in a staging directory inside the output directory;
:meth:`Stage.publish` then moves the new entries into place, removes the entries of the
previous run that the new one no longer has, and writes the record last. A run killed
before publishing leaves the previous outputs as they were; its leftovers (staging dir,
``.tmp*`` files) are removed by the next run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Literal

from mlkd_cli.errors import StageError
from mlkd_cli.fsutil import atomic_write_text, file_digest

logger = logging.getLogger("mlkd")

STAGE_FILE = "stage.json"
TMP_PREFIX = ".tmp"  # mlkd_cli.fsutil.atomic_path's temporary names
Plan = Literal["skip", "resume", "fresh"]
SHOWN_CHANGES = 6


@dataclasses.dataclass
class StageRecord:
    command: str
    argv: list[str]
    inputs: dict[str, dict[str, str]]  # name -> {"path": ..., "digest": ...}
    config: dict[str, Any]
    status: str = "running"  # running (training in place), publishing, done
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    started: str = ""
    finished: str = ""
    outputs: list[str] = dataclasses.field(default_factory=list)  # entries the stage published

    def changes_from(self, old: StageRecord) -> list[str]:
        """What differs from ``old``: input names, and ``config`` keys as ``config.a.b``."""
        changed = [
            name
            for name in sorted(set(self.inputs) | set(old.inputs))
            if self.inputs.get(name, {}).get("digest") != old.inputs.get(name, {}).get("digest")
        ]
        changed += [f"config.{key}" for key in _differing_keys(self.config, old.config)]
        return changed


def _differing_keys(new: Any, old: Any, prefix: str = "") -> list[str]:
    if isinstance(new, dict) and isinstance(old, dict):
        keys = sorted(set(new) | set(old))
        return [k for key in keys for k in _differing_keys(new.get(key), old.get(key), f"{prefix}{key}.")]
    return [] if new == old else [prefix.rstrip(".") or "config"]


def file_input(path: str | Path, digest: str | None = None) -> dict[str, str]:
    """A record input: a file by absolute path and content digest."""
    path = Path(path)
    return {"path": str(path.resolve()), "digest": digest or file_digest(path)}


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


def new_record(command: str, inputs: dict[str, dict[str, str]], config: dict[str, Any],
               argv: list[str] | None = None) -> StageRecord:
    return StageRecord(command=command, argv=list(argv or []), inputs=inputs, config=config,
                       versions=software_versions())


def read_stage(out_dir: str | Path, name: str = STAGE_FILE) -> StageRecord | None:
    path = Path(out_dir) / name
    if not path.is_file():
        return None
    try:
        return StageRecord(**json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as e:
        raise StageError(f"{path}: unreadable stage record ({e}); delete it to start this stage afresh") from None


def write_stage(out_dir: str | Path, record: StageRecord, name: str = STAGE_FILE) -> None:
    atomic_write_text(Path(out_dir) / name, json.dumps(dataclasses.asdict(record), indent=2) + "\n")


class Stage:
    """One stage's output directory: plan, lock, stage, publish (see the module docstring)."""

    def __init__(self, out_dir: str | Path, record: StageRecord, *, force: bool = False,
                 on_change: Literal["refuse", "redo"] = "refuse", resumable: bool = False,
                 record_name: str = STAGE_FILE, intact: Callable[[], bool] = lambda: True, shared: bool = False,
                 follows: Collection[str] = ()):
        """``intact``: whether finished outputs are still whole beyond their top-level entries
        (e.g. every file a manifest names); a finished stage that is not is redone. ``shared``: a
        cache that stages running at once may all need (teachers of a job array): a second one
        waits for the lock, then reads what the first published, instead of failing. ``follows``:
        changes (as :meth:`StageRecord.changes_from` names them) that come from another stage's
        output rather than the command line, e.g. a calibration: a change among them alone redoes."""
        self.out_dir, self.record, self.force, self.intact = Path(out_dir), record, force, intact
        self.shared, self.follows = shared, frozenset(follows)
        self.on_change, self.resumable, self.record_name = on_change, resumable, record_name
        stem = record_name.removesuffix(".json")
        self.staging = self.out_dir / f".staging-{stem}"
        self._trash = self.out_dir / f".trash-{stem}"
        self._lock_path = self.out_dir / f".{stem}.lock"
        self._lock_fd: int | None = None

    @property
    def previous(self) -> StageRecord | None:
        return read_stage(self.out_dir, self.record_name)

    def plan(self) -> Plan:
        old = self.previous
        if old is None or self.force or (old.status == "publishing" and not self.resumable):
            return "fresh"
        changed = self.record.changes_from(old)
        if not changed:
            if old.status != "done":
                return "resume" if self.resumable else "fresh"
            if all((self.out_dir / name).exists() for name in old.outputs) and self.intact():
                return "skip"
            logger.info("%s: outputs of the finished run are missing; redoing it", self.out_dir)
            return "fresh"
        if self.on_change == "redo" or set(changed) <= self.follows:
            logger.info("%s: redoing (changed: %s)", self.out_dir, _shown(changed))
            return "fresh"
        raise StageError(
            f"{self.out_dir / self.record_name}: this directory holds the output of `{' '.join(old.argv) or old.command}` "
            f"from other inputs or settings (changed: {_shown(changed)}); rerun with --force to replace it, "
            "or choose another output directory"
        )

    # -- locking and leftovers ------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's lock: a POSIX record lock, which the kernel releases when the
        process dies and which forked children (data-loading workers) do not inherit."""
        created = not self.out_dir.exists()
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise StageError(f"{self.out_dir}: cannot write here ({e.strerror}); choose a writable directory") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            if not self.shared:
                os.close(fd)
                raise StageError(f"{self.out_dir}: in use by {holder}; wait for it to finish or choose another "
                                 "output directory") from None
            logger.info("%s: in use by %s; waiting for it", self.out_dir, holder)
            fcntl.lockf(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} (`{' '.join(self.record.argv) or self.record.command}`)".encode(), 0)
        self._lock_fd = fd
        try:
            self._remove_leftovers()
            yield
        except BaseException:
            if created and all(p.name.startswith(".") for p in self.out_dir.iterdir()):
                shutil.rmtree(self.out_dir, ignore_errors=True)  # a first run that failed leaves nothing
            raise
        finally:
            self._lock_fd = None
            os.close(fd)

    def _remove_leftovers(self) -> None:
        """Staging dirs and temporary files of runs that were killed (nobody else holds the lock)."""
        for path in (self.staging, self._trash):
            shutil.rmtree(path, ignore_errors=True)
        for parent in [self.out_dir, *(p for p in self.out_dir.iterdir() if p.is_dir() and not p.name.startswith("."))]:
            for tmp in parent.glob(f"{TMP_PREFIX}*"):
                shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink(missing_ok=True)

    # -- running --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def run(self) -> Iterator[Path | None]:
        """Lock, plan, and yield an empty staging dir to write into (None when up to date);
        published when the block ends without an error, discarded otherwise."""
        with self.locked():
            if self.plan() == "skip":
                logger.info("%s is up to date (inputs and settings unchanged); nothing to do", self.out_dir)
                yield None
                return
            self.record.started = now()
            with self.staged() as staging:
                yield staging

    @contextlib.contextmanager
    def staged(self) -> Iterator[Path]:
        """An empty staging dir, published when the block ends without an error (lock held)."""
        self.staging.mkdir()
        try:
            yield self.staging
            self.publish()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)

    def start_in_place(self, plan: Plan) -> None:
        """For a stage that works in the output dir itself (training): record it as running
        (a resumed run's record says so already)."""
        old = self.previous
        self.record.outputs = old.outputs if old else []
        if plan == "resume":
            self.record.started = old.started
            return
        self.record.started, self.record.status = now(), "running"
        write_stage(self.out_dir, self.record, self.record_name)

    def publish(self) -> None:
        """Move the staging dir's entries into place, drop the previous run's other outputs,
        then record the stage as done."""
        if self._lock_fd is None:
            raise RuntimeError("Stage.publish needs the lock")
        old = self.previous
        new = sorted(p.name for p in self.staging.iterdir())
        self.record.status, self.record.outputs = "publishing", new
        write_stage(self.out_dir, self.record, self.record_name)
        self._trash.mkdir(exist_ok=True)
        for name in sorted(set(old.outputs if old else []) | set(new)):
            dst = self.out_dir / name
            if dst.exists() or dst.is_symlink():
                os.replace(dst, self._trash / name)
            if name in new:
                os.replace(self.staging / name, dst)
        self.record.status, self.record.finished = "done", now()
        write_stage(self.out_dir, self.record, self.record_name)
        shutil.rmtree(self._trash, ignore_errors=True)


def _shown(changed: list[str]) -> str:
    more = f", ... ({len(changed) - SHOWN_CHANGES} more)" if len(changed) > SHOWN_CHANGES else ""
    return ", ".join(changed[:SHOWN_CHANGES]) + more
