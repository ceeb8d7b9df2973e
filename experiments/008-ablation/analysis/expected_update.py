"""Expected SELF-GRPO update of the recogniser's per-label logit biases.

For each dev target of a predictions file (score mode: the label log-probs of the model), the
recogniser's answer distribution is p = softmax(label log-probs). Prompts are weighted so that
every gold class counts equally (balanced GRPO prompts). For one prompt the update of the label
logits z is E[sum_i A_i (onehot(y_i) - p)] / G over groups of G sampled labels with reward
1 + IoU_s (format 1; smoothed IoU 1 when right, 1/3 when wrong) and A_i the group-relative
advantage (reward less the group mean, divided by the group std with scale "group"). Summed
over prompts it is the push on a logit bias shared by every prompt: a positive entry for
`neutral` means the update drives the policy toward neutral everywhere.

Usage: python expected_update.py PREDICTIONS.parquet   (needs numpy, pyarrow)
"""
import sys

import numpy as np
import pyarrow.parquet as pq

LABELS = ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]
RIGHT, WRONG = 2.0, 4.0 / 3.0


def main(path):
    t = pq.read_table(path).to_pandas()
    p_all = np.array([np.exp(np.array(x) - np.logaddexp.reduce(x)) for x in t.label_logprobs])
    gold = np.array([LABELS.index(g) for g in t.gold])
    weight = np.array([1.0 / (gold == g).sum() for g in gold]) / len(LABELS)
    rng = np.random.default_rng(0)
    print("mean p(neutral) by gold class:", {LABELS[k]: round(float(p_all[gold == k, 0].mean()), 3) for k in range(7)})
    exact = sum(w * p * (np.where(np.arange(7) == g, RIGHT, WRONG) - p @ np.where(np.arange(7) == g, RIGHT, WRONG)) for p, g, w in zip(p_all, gold, weight))
    print(f"{'exact policy gradient':24s}", np.round(exact / abs(exact).max(), 3))
    for G in (4, 8, 16):
        for scale in ("none", "group"):
            total = np.zeros(7)
            for p, g, w in zip(p_all, gold, weight):
                ys = rng.choice(7, size=(2000, G), p=p)
                r = np.where(ys == g, RIGHT, WRONG)
                a = r - r.mean(1, keepdims=True)
                if scale == "group":
                    s = r.std(1, ddof=1, keepdims=True)
                    a = np.where(s > 0, a / np.maximum(s, 1e-12), 0.0)
                total += w * sum((a[:, i : i + 1] * (np.eye(7)[ys[:, i]] - p)).mean(0) for i in range(G)) / G
            print(f"G={G:2d} scale_rewards={scale:5s}", np.round(total / abs(total).max(), 3))
    print("columns:", LABELS, "(each row scaled by its largest entry)")


if __name__ == "__main__":
    main(sys.argv[1])
