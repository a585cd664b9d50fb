"""Where augmentation's time goes: milliseconds of one process per second of training audio for
each way of making an utterance's training features, on utterances of a prepared data dir.

Rendering (speed, reverb, telephone) and fbank of the audio are what on-the-fly augmentation
paid for every batch; mlkd now pays them once per copy (`<data>/augmented/`) and mixes noise and
volume into cached features. Noise is the corpus's noise/ set (`--noise`), babble 3 training talkers.
Usage: python bench/augment_cost.py DATA --noise CORPUS/noise [--lang en] [--utts 150]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import torch
from lhotse import CutSet

from mlkd_cli.data.features import downmix, fbank_extractor
from mlkd_cli.data.prepare import PreparedData
from mlkd_cli.data.rooms import room_cuts
from mlkd_cli.experiment.config import AugmentConfig, NoiseConfig, ReverbConfig
from mlkd_cli.train.augment import Augmenter, Heard, use_fast_resampling
from mlkd_cli.train.augmented_copies import Prepared, prepare_augmentation, telephone


def timed(name: str, cuts: list, make, seconds: float) -> None:
    start = time.perf_counter()
    for cut in cuts:
        make(cut)
    elapsed = time.perf_counter() - start
    print(f"  {name:48} {1000 * elapsed / seconds:7.2f} ms per s of audio ({seconds / elapsed:6.0f}x real time)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--noise", required=True, help="a noise set (Kaldi dir with wav.scp)")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--utts", type=int, default=150)
    args = parser.parse_args()
    use_fast_resampling()
    data = PreparedData(args.data)
    cuts = [c for c in data.cuts("train") if c.supervisions[0].language == args.lang][: args.utts]
    seconds = sum(c.duration for c in cuts)
    extractor = fbank_extractor()
    fbank = lambda cut: extractor.extract(downmix(cut.load_audio(), cut.sampling_rate), cut.sampling_rate)  # noqa: E731
    rooms = room_cuts(20, seed=0)
    rng = random.Random(0)
    print(f"{len(cuts)} {args.lang} utterances, {seconds:.0f} s of audio; torch threads {torch.get_num_threads()}")
    print("per batch while training, before (audio rendered, fbank computed):")
    timed("fbank of the clean audio", cuts, fbank, seconds)
    timed("speed 1.1 (libsox) + fbank", cuts, lambda c: fbank(c.drop_features().perturb_speed(1.1)), seconds)
    timed("reverb (simulated room) + fbank", cuts, lambda c: fbank(c.drop_features().reverb_rir(rng.choice(rooms))), seconds)
    timed("telephone (8 kHz, GSM) + fbank", cuts, lambda c: fbank(telephone(c.drop_features(), "gsm")), seconds)
    noise = CutSet.from_cuts(c for c in Augmenter.build(AugmentConfig(noise=NoiseConfig(prob=1.0, sets=(args.noise,))),
                                                         CutSet.from_cuts(cuts), args.data, 1).noise[args.noise])
    timed("noise, lhotse MixedCut of audio + fbank", cuts,
          lambda c: fbank(CutSet.from_cuts([c.drop_features()]).mix(noise.drop_features(), snr=15, seed=rng)[0]), seconds)
    talkers = CutSet.from_cuts(c.drop_features().drop_supervisions() for c in cuts)

    def babble_audio(cut):
        for _ in range(3):
            cut = CutSet.from_cuts([cut]).mix(talkers, snr=15 + 10 * np.log10(3), seed=rng)[0]
        return fbank(cut)

    timed("babble of 3, lhotse MixedCut of audio + fbank", cuts, babble_audio, seconds)
    print("per batch while training, now (features cached, mixed in the feature domain):")
    timed("cached features", cuts, lambda c: c.load_features(), seconds)
    reverberated = prepare_augmentation(args.data, AugmentConfig(reverb=ReverbConfig(prob=1.0), copies=1),
                                        CutSet.from_cuts(cuts), 2).copies
    timed("a precomputed copy (reverberated)", cuts, lambda c: reverberated[c.id][0].load_features(), seconds)
    augmenter = Augmenter.build(AugmentConfig(noise=NoiseConfig(prob=1.0, sets=(args.noise,))), CutSet.from_cuts(cuts),
                                args.data, 1)
    babbler = Augmenter(AugmentConfig(noise=NoiseConfig(prob=1.0, babble=3)), {"babble": cuts}, augmenter.prepared)
    timed("noise in the feature domain", cuts, lambda c: augmenter.augment(c, rng).features(), seconds)
    timed("babble of 3 in the feature domain", cuts, lambda c: babbler.augment(c, rng).features(), seconds)
    timed("volume in the feature domain", cuts, lambda c: Heard(c, gain=0.5).features(), seconds)
    empty = Augmenter(AugmentConfig(volume_prob=1.0), {}, Prepared())
    timed("drawing alone (no noise, volume)", cuts, lambda c: empty.augment(c, rng), seconds)


if __name__ == "__main__":
    main()
