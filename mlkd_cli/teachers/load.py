"""Load a teacher of any kind from its command-line spelling."""

from __future__ import annotations

from mlkd_cli.teachers.base import Teacher, TeacherSpec, parse_teacher_arg


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
