from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec(Path("mlkd_cli/version.py").read_text(), version)

setup(
    name="mlkd",
    version=version["__version__"],
    description="Multilingual speech recognition by knowledge distillation, as Kaldi-style command-line stages",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["mlkd_cli", "mlkd_cli.*"]),
    install_requires=[
        "torch>=2.1",
        "lhotse>=1.24",
        # lhotse needs these at run time for our use (feature cache, resampling) but does
        # not declare them all.
        "lilcom>=1.7",
        "scipy>=1.10",
        "urllib3",
        "soundfile>=0.12",
        "kaldi-native-io>=1.22",  # lhotse reads wav.scp pipe entries ("cmd |") with it
        "kaldialign>=0.9",
        "kaldi-native-fbank>=1.20",  # streaming decoding: fbank computed as the audio arrives
        # simulated rooms for reverberation (lhotse's simulator needs torchaudio)
        "pyroomacoustics>=0.7",
        # WFST decoding without k2: graphs, pruned search over CTC posteriors, ARPA → FST
        "kaldifst>=1.8",
        "kaldi-decoder>=0.3",
        "kaldilm>=1.15",
        # `mlkd export`: ONNX graphs (the dynamo exporter needs onnxscript), checked with onnxruntime
        "onnx>=1.23",
        "onnxruntime>=1.32",
        "onnxscript>=0.7",
        "matplotlib>=3.5",
        "sentencepiece>=0.1.99",
        "pycountry>=22.3",
        "click>=8.1",
        "rich>=13",
        "pyyaml>=6",
        "numpy",
    ],
    extras_require={
        "dev": ["pytest>=7", "pytest-timeout", "pytest-xdist>=3", "jiwer>=3", "sherpa-onnx>=2.0"],
        # teachers from elsewhere: Hugging Face CTC checkpoints, sherpa-onnx models
        "hf": ["transformers>=4.40"],
        "onnx": ["sherpa-onnx>=2.0"],
    },
    entry_points={"console_scripts": ["mlkd=mlkd_cli.cli:cli"]},
)
