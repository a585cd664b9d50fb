"""Teachers named on the command line: their spelling, parsed, and the loader of each kind."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional, Sequence

from mlkd_cli.errors import ConfigError
from mlkd_cli.teachers.base import Teacher

KINDS = ("mlkd", "hf", "onnx")


class TeacherSpec(NamedTuple):
    """A teacher named on the command line: ``[LANG=][KIND:]PATH``."""

    lang: Optional[str]
    kind: str
    path: Path
    loader: Optional[str] = None  # sherpa-onnx loader of an onnx teacher

    def __str__(self) -> str:
        kind = f"onnx-{self.loader}" if self.loader else self.kind
        return f"{self.lang + '=' if self.lang else ''}{kind}:{self.path}"


def parse_teacher_arg(arg: str) -> TeacherSpec:
    """``DIR``, ``LANG=DIR``, ``LANG=hf:DIR``, ``LANG=onnx:DIR`` or ``LANG=onnx-<loader>:DIR``.

    A plain ``DIR`` is an mlkd experiment dir; ``onnx`` alone means the zipformer-ctc loader
    (the one `mlkd export` writes for).
    """
    from mlkd_cli.teachers.onnx import LOADERS

    lang, sep, rest = arg.partition("=")
    if not (sep and lang and "/" not in lang):
        lang, rest = None, arg
    kind, sep, path = rest.partition(":")
    if not sep or "/" in kind:
        return TeacherSpec(lang, "mlkd", Path(rest))
    loader = None
    if kind == "onnx":
        loader = LOADERS[0]
    elif kind.startswith("onnx-"):
        kind, loader = "onnx", kind.removeprefix("onnx-")
        if loader not in LOADERS:
            raise ConfigError(f"teacher {arg}: unknown sherpa-onnx loader {loader!r}; use one of "
                              + ", ".join(f"onnx-{name}" for name in LOADERS))
    elif kind not in KINDS:
        raise ConfigError(f"teacher {arg}: unknown kind {kind!r}; use DIR (mlkd), hf:DIR, onnx:DIR or onnx-<loader>:DIR")
    return TeacherSpec(lang, kind, Path(path), loader)



def load_teachers_of(spec: TeacherSpec, langs: Sequence[str]) -> list[Teacher]:
    """The teachers one argument gives: one, or for a language-adaptive mlkd model dir named without
    LANG=, one for each of its languages among ``langs``."""
    if spec.kind == "mlkd" and spec.lang is None:
        from mlkd_cli.teachers.mlkd import load_mlkd_teachers

        return list(load_mlkd_teachers(spec.path, langs))
    return [load_teacher(spec)]


def load_teacher(arg: str | TeacherSpec) -> Teacher:
    spec = parse_teacher_arg(arg) if isinstance(arg, str) else arg
    if spec.kind == "hf":
        from mlkd_cli.teachers.hf import load_hf_teacher

        return load_hf_teacher(spec.lang, spec.path)
    if spec.kind == "onnx":
        from mlkd_cli.teachers.onnx import load_onnx_teacher

        return load_onnx_teacher(spec.lang, spec.path, spec.loader)
    from mlkd_cli.teachers.mlkd import load_mlkd_teacher

    return load_mlkd_teacher(spec.lang, spec.path)
