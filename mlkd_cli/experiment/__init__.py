"""The model/experiment layer: typed stage configs and self-contained model directories.

What inference (decode, export, teaching) loads lives here, below the trainer.
"""
