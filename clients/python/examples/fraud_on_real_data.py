"""The fraud model on a real labelled data set, through the API only.

  /usr/bin/python3 clients/python/examples/fraud_on_real_data.py [TARGET]

Needs a fresh mercato-server at TARGET (default 127.0.0.1:50051), the client
(`pip install ./clients/python`, or build/python and clients/python on
PYTHONPATH) and Debian's python3-sklearn for the data: the Wisconsin
diagnostic breast cancer set (569 cases, 30 numeric columns, 212 malignant),
shipped inside the package, so nothing is downloaded. Malignant is "bad".

Each case of a seeded 4/5 is scored as an order whose attributes are the 30
columns, then labelled (FRAUD_LABEL, one pass, in order); the other fifth is
scored once everything is applied. The AUC is printed next to that of a batch
logistic regression (L2, on standardised columns) fitted offline by scipy on
the same split.
"""
import sys

import numpy as np
from scipy.optimize import minimize
from sklearn.datasets import load_breast_cancer

from mercato_client import Mercato

NOW_MS = 1735689600000  # 2025-01-01


def auc(scores, labels):
    """The chance that a random bad case outscores a random good one."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    bad = labels == 1
    n_bad, n_good = bad.sum(), (~bad).sum()
    return (ranks[bad].sum() - n_bad * (n_bad + 1) / 2) / (n_bad * n_good)


def batch_logistic_regression(x, y, l2=1.0):
    """Weights (bias first) minimising the L2-penalised log loss."""
    xb = np.hstack([np.ones((len(x), 1)), x])

    def loss(w):
        z = xb @ w
        penalty = 0.5 * l2 * (w[1:] @ w[1:])
        return np.sum(np.logaddexp(0, z) - y * z) + penalty, \
            xb.T @ (1 / (1 + np.exp(-z)) - y) + l2 * np.r_[0, w[1:]]

    return minimize(loss, np.zeros(xb.shape[1]), jac=True, method="L-BFGS-B").x


def order(case_id, columns, row, t):
    return dict(order_id=case_id, user_id=f"patient-{case_id}", amount=100, currency="EUR",
                billing_country="DE", shipping_country="DE", ip_country="DE",
                account_created_ms=NOW_MS - 400 * 86400000, timestamp_ms=t,
                attributes={name: {"number": float(v)} for name, v in zip(columns, row)})


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
    data = load_breast_cancer()
    x = data.data
    y = (data.target == 0).astype(float)  # 0 = malignant in sklearn's coding
    columns = [name.replace(" ", "_") for name in data.feature_names]
    perm = np.random.default_rng(7).permutation(len(y))
    train, test = perm[: len(y) * 4 // 5], perm[len(y) * 4 // 5:]

    with Mercato(target) as mercato:
        mercato.wait_ready()
        t = NOW_MS
        for i in train:
            t += 60000
            mercato.score(**order(f"case-{i}", columns, x[i], t))
            summary = mercato.publish([{"event_id": f"label-{i}", "type": "FRAUD_LABEL",
                                        "order_id": f"case-{i}", "value": y[i],
                                        "timestamp_ms": t + 1}])
        mercato.wait_applied(summary.last_sequence, seconds=60)
        served = np.array([mercato.score(**order(f"case-{i}", columns, x[i], t + 1000)).probability
                           for i in test])
    mean, sd = x[train].mean(axis=0), x[train].std(axis=0)
    w = batch_logistic_regression((x[train] - mean) / sd, y[train])
    offline = np.hstack([np.ones((len(test), 1)), (x[test] - mean) / sd]) @ w
    print(f"breast cancer (Wisconsin): {len(train)} cases trained on, {len(test)} held out, "
          f"{int(y[test].sum())} of them bad")
    print(f"  mercato, one pass through the API: AUC {auc(served, y[test]):.4f}")
    print(f"  batch logistic regression (scipy, L2 = 1): AUC {auc(offline, y[test]):.4f}")


if __name__ == "__main__":
    main()
