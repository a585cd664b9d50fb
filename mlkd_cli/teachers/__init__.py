"""Teachers of any origin behind one interface: mlkd experiment dirs, Hugging Face CTC
checkpoints and sherpa-onnx models (see :mod:`mlkd_cli.teachers.base`)."""
