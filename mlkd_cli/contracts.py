"""What every reader and writer of mlkd's data, models and exports agrees on, in one place."""

SAMPLING_RATE = 16000  # Hz: audio is read, synthesized, featurized and exported at this rate
BLANK_ID = 0  # the CTC blank is token 0 of every mlkd vocabulary (models, decoding and export rely on it)
OUTPUT_FRAME_MS = 40  # one encoder output frame: 10 ms features, subsampled 4x
TOKENS_FILE = "tokens.txt"  # a vocabulary's token table: `symbol id` per line, ids 0..V-1
