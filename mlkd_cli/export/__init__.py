"""`mlkd export`: a model dir as ONNX for sherpa-onnx.

- :mod:`.contract`  sherpa-onnx's file contract and onnxruntime sessions; the one module that
  distillation (ONNX teachers) may import, so this file imports nothing
- :mod:`.routine`   the steps every export shares: model dir, tokens, record, stage, export,
  check, verify, publish
- :mod:`.offline`   the flavour for ``OfflineRecognizer.from_zipformer_ctc`` (and ``--int8``)
- :mod:`.streaming` the flavour for ``OnlineRecognizer.from_wenet_ctc`` (``--streaming``)
"""
