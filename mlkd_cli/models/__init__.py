"""Conformer-CTC models built from a :class:`ModelConfig`, and their checkpoint files."""

from mlkd_cli.models.asr import CtcModel, CtcOutput, build_model, ctc_loss, greedy_decode, num_parameters
from mlkd_cli.models.checkpoint import load_checkpoint_file, load_model, load_model_state, save_model
from mlkd_cli.models.config import ModelConfig
from mlkd_cli.models.conformer import ConformerEncoder, EncoderOutput

__all__ = [
    "ConformerEncoder",
    "CtcModel",
    "CtcOutput",
    "EncoderOutput",
    "ModelConfig",
    "build_model",
    "ctc_loss",
    "greedy_decode",
    "load_checkpoint_file",
    "load_model",
    "load_model_state",
    "num_parameters",
    "save_model",
]
