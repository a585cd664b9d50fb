"""Which score tells speech of an unseen language from the trained ones? Energy against Mahalanobis.

Runs a language-adaptive model over a trained-language set (dev) and an unseen-language set
(dev_unseen) and, for each score, calibrates the threshold that flags at most
``--max-false-reject`` of the trained-language utterances (as `mlkd calibrate-lid` does), then
prints the share of unseen-language utterances it flags. Scores: the energy of the language-ID
logits (mlkd's), and the Mahalanobis distance (Lee et al., 2018) of each layer's mean-pooled
frames to the nearest trained language, with a covariance shared by the languages, both fitted
on the training set.

    OMP_NUM_THREADS=2 .venv/bin/python bench/rejection_scores.py --data data --model exp/student \\
        [--fit-set train] [--trained-set dev] [--unseen-set dev_unseen] [--max-false-reject 0.01]
"""

from __future__ import annotations

import argparse

import torch

from mlkd_cli.data.prepare import PreparedData
from mlkd_cli.decode.rejection import flagged_share, threshold_for
from mlkd_cli.distill.ensemble import collate_inputs
from mlkd_cli.experiment.model_dir import load_model_dir
from mlkd_cli.models.asr import masked_mean
from mlkd_cli.train.batches import make_sampler


@torch.inference_mode()
def pooled(model, cuts) -> tuple[list[torch.Tensor], torch.Tensor, list[str]]:
    """Each layer's mean-pooled frames (layers × (N, D)), the language-ID energy (N,), the languages."""
    layers, energy, langs = [], [], []
    for batch in make_sampler(cuts, 100.0, shuffle=False, seed=0):
        inputs = collate_inputs(batch, audio=False)
        out = model(inputs.features, inputs.feature_lens)
        layers.append([masked_mean(h, out.lengths) for h in out.hidden])
        energy.append(torch.logsumexp(out.lid_logits, dim=-1))
        langs.extend(c.supervisions[0].language for c in batch)
    return [torch.cat(per_layer) for per_layer in zip(*layers)], torch.cat(energy), langs


def mahalanobis(fit: torch.Tensor, fit_langs: list[str]):
    """x -> minus the smallest Mahalanobis distance to a language's mean (shared covariance)."""
    names = sorted(set(fit_langs))
    means = torch.stack([fit[[i for i, lang in enumerate(fit_langs) if lang == name]].mean(0) for name in names])
    centred = fit - means[[names.index(lang) for lang in fit_langs]]
    covariance = centred.T @ centred / len(fit) + 1e-4 * torch.eye(fit.size(1), dtype=fit.dtype)
    precision = torch.linalg.inv(covariance)

    def score(x: torch.Tensor) -> torch.Tensor:
        d = x[:, None, :] - means[None]
        return -torch.einsum("nld,de,nle->nl", d, precision, d).min(dim=1).values

    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--fit-set", default="train")
    parser.add_argument("--trained-set", default="dev")
    parser.add_argument("--unseen-set", default="dev_unseen")
    parser.add_argument("--max-false-reject", type=float, default=0.01)
    args = parser.parse_args()
    data, model = PreparedData(args.data), load_model_dir(args.model).model.eval()
    fit, _, fit_langs = pooled(model, data.cuts(args.fit_set))
    trained, trained_energy, _ = pooled(model, data.cuts(args.trained_set))
    unseen, unseen_energy, _ = pooled(model, data.cuts(args.unseen_set))
    print(f"{args.model}: flagged at {args.max_false_reject:.1%} of {args.trained_set} ({len(trained_energy)} "
          f"utterances) flagged, {args.unseen_set} ({len(unseen_energy)} utterances); fitted on {args.fit_set}")
    scores = {"energy": (trained_energy, unseen_energy)}
    for k in range(len(fit)):
        score = mahalanobis(fit[k].double(), fit_langs)
        scores[f"mahalanobis, layer {k + 1}"] = (score(trained[k].double()), score(unseen[k].double()))
    for name, (known, new) in scores.items():
        threshold = threshold_for(known.tolist(), args.max_false_reject)
        print(f"  {name:22s} {args.unseen_set} flagged {100 * flagged_share(new.tolist(), threshold):6.2f}%   "
              f"{args.trained_set} flagged {100 * flagged_share(known.tolist(), threshold):5.2f}%")


if __name__ == "__main__":
    main()
