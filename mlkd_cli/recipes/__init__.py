"""What the recipes use beyond the library: the embedded demo corpus (`mlkd make-corpus`).

Not part of the library's core: no module outside ``mlkd_cli.recipes`` and the commands imports it
(tests/test_layering.py).
"""
