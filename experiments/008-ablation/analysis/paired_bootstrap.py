"""Paired bootstrap of the test W-F1 difference between two runs' per-target predictions.

Usage: paired_bootstrap.py A.predictions.parquet B.predictions.parquet [resamples]

Both files must hold the same targets (dataset, dialogue_id, turn). Prints W-F1 of A and B, the
difference A - B, and its 95% interval over resamples of the targets (the same resample for
both runs, so what is shared between them cancels). W-F1 as sklearn's f1_score(average=
"weighted") over the labels present in the gold set.
"""
import sys

import numpy as np
import pyarrow.parquet as pq


def weighted_f1(gold, pred, labels):
    total = 0.0
    for c in range(len(labels)):
        g, p = gold == c, pred == c
        tp = np.sum(g & p)
        support = np.sum(g)
        if support == 0:
            continue
        denom = np.sum(p) + support
        total += support * (2 * tp / denom if denom else 0.0)
    return total / len(gold)


def load(path):
    t = pq.read_table(path).to_pandas()
    return t.set_index(["dataset", "dialogue_id", "turn"]).sort_index()


def main():
    a, b = load(sys.argv[1]), load(sys.argv[2])
    resamples = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    if not a.index.equals(b.index) or not (a["gold"] == b["gold"]).all():
        sys.exit("the two files do not hold the same targets with the same gold labels")
    labels = sorted(set(a["gold"]) | set(a["prediction"].dropna()) | set(b["prediction"].dropna()))
    code = {l: i for i, l in enumerate(labels)}
    gold = a["gold"].map(code).to_numpy()
    pa = a["prediction"].map(code).fillna(-1).astype(int).to_numpy()
    pb = b["prediction"].map(code).fillna(-1).astype(int).to_numpy()
    fa, fb = weighted_f1(gold, pa, labels), weighted_f1(gold, pb, labels)
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(resamples):
        i = rng.integers(0, len(gold), len(gold))
        diffs.append(weighted_f1(gold[i], pa[i], labels) - weighted_f1(gold[i], pb[i], labels))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    print(f"n={len(gold)}  W-F1 A {fa:.4f}  B {fb:.4f}  A-B {fa - fb:+.4f}  95% [{lo:+.4f}, {hi:+.4f}]  P(A-B<=0) {np.mean(np.array(diffs) <= 0):.3f}")


if __name__ == "__main__":
    main()
