"""Decoding: inputs, CTC search (greedy, prefix beam, WFST), long-audio chunking, outputs."""
