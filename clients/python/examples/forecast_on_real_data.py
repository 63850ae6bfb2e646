"""Demand forecasts on real sales, through the API, against an offline ETS.

  /usr/bin/python3 clients/python/examples/forecast_on_real_data.py [TARGET] [CSV]

Needs a fresh mercato-server at TARGET (default 127.0.0.1:50051), the client
(build/python and clients/python on PYTHONPATH) and, for the reference,
Debian's python3-statsmodels (--no_reference skips it). CSV defaults to the
Online Retail II file in ../shared/data/online_retail_ii.

The sales before the last 28 days (purchases, and cancellations as refunds)
are published to the server; then each of the 200 best-selling products is
forecast 28 days ahead with 80% and 95% intervals. The reference fits
statsmodels' ETS on the same daily series, choosing by AICc among additive
error with no, additive or damped trend, with weekly additive seasonality.
Printed for both: the mean and median MASE over the 200 (held-out mean
absolute error over the in-sample mean absolute seasonal-naive difference)
and how many held-out days the intervals cover.
"""
import csv
import datetime
import gzip
import sys
import time
import warnings

import numpy as np

from mercato_client import Mercato

HOLD_OUT = 28
TOP = 200
DAY = datetime.timedelta(days=1)
EPOCH = datetime.datetime(1970, 1, 1)


def read_sales(path):
    """(time, stock code, quantity, invoice, row) for every sale and cancellation."""
    rows = []
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for n, r in enumerate(csv.DictReader(f)):
            try:
                price, qty = float(r["Price"]), int(r["Quantity"])
            except ValueError:
                continue
            if price <= 0 or qty == 0:
                continue
            t = datetime.datetime.strptime(r["InvoiceDate"], "%Y-%m-%d %H:%M:%S")
            rows.append((t, r["StockCode"], qty, r["Invoice"], n, price, r["Customer ID"]))
    return rows


def daily(rows, first, days):
    """Units per stock code and day, days counted from `first`."""
    out = {}
    for t, code, qty, *_ in rows:
        d = (t.date() - first).days
        if 0 <= d < days:
            out.setdefault(code, np.zeros(days))[d] += qty
    return out


def mase(actual, forecast, train):
    train = train[np.argmax(train > 0):]  # from the product's first sale
    scale = np.mean(np.abs(train[7:] - train[:-7])) if len(train) > 7 else np.nan
    return np.mean(np.abs(actual - forecast)) / scale if scale > 0 else np.nan


def coverage(actual, lower, upper):
    return np.mean((actual >= lower) & (actual <= upper))


def fit_count(mercato):
    for m in mercato.status().models:
        if m.name == "forecast":
            return m.counts["fits"]
    raise RuntimeError("the server has no forecast model")


def ets_reference(train):
    """statsmodels ETS chosen by AICc: mean and 80% / 95% bounds, 28 days."""
    import pandas as pd
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel
    y = pd.Series(train[np.argmax(train > 0):])
    best = None
    for trend, damped in ((None, False), ("add", False), ("add", True)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = ETSModel(y, error="add", trend=trend, damped_trend=damped,
                               seasonal="add" if len(y) >= 21 else None,
                               seasonal_periods=7).fit(disp=False)
        except Exception:  # noqa: BLE001 - a model that cannot be fitted is skipped
            continue
        if np.isfinite(fit.aicc) and (best is None or fit.aicc < best.aicc):
            best = fit
    pred = best.get_prediction(start=len(y), end=len(y) + HOLD_OUT - 1)
    frame80, frame95 = pred.summary_frame(alpha=0.2), pred.summary_frame(alpha=0.05)
    return (np.asarray(frame80["mean"]), np.asarray(frame80["pi_lower"]),
            np.asarray(frame80["pi_upper"]), np.asarray(frame95["pi_lower"]),
            np.asarray(frame95["pi_upper"]))


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
    path = (sys.argv[2] if len(sys.argv) > 2 else
            "../shared/data/online_retail_ii/online_retail_II_2009-2010.csv.gz")
    rows = read_sales(path)
    first = min(r[0] for r in rows).date()
    last = max(r[0] for r in rows).date()
    cutoff = last - datetime.timedelta(days=HOLD_OUT - 1)  # the first held-out day
    train_days = (cutoff - first).days
    series = daily(rows, first, train_days + HOLD_OUT)
    totals = sorted(((s[:train_days].sum(), code) for code, s in series.items()), reverse=True)
    top = [code for _, code in totals[:TOP]]

    with Mercato(target, timeout=60) as mercato:
        mercato.wait_ready()
        events = []
        for t, code, qty, invoice, n, price, customer in rows:
            if t.date() >= cutoff:
                continue
            events.append({"event_id": f"retail-{n}", "type": "REFUND" if qty < 0 else "PURCHASE",
                           "user_id": customer or f"guest-{invoice}", "item_id": code,
                           "order_id": invoice, "quantity": abs(qty), "unit_price": price,
                           "timestamp_ms": int((t - EPOCH).total_seconds() * 1000)})
        # The first held-out day opens: every training day is closed.
        events.append({"event_id": "retail-open", "type": "VIEW", "user_id": "clock",
                       "item_id": top[0],
                       "timestamp_ms": int((datetime.datetime.combine(cutoff, datetime.time())
                                            - EPOCH).total_seconds() * 1000)})
        summary = None
        for i in range(0, len(events), 5000):
            summary = mercato.publish(events[i:i + 5000])
        mercato.wait_applied(summary.last_sequence, seconds=600)
        # A fit over every training day, adopted before the forecasts.
        fits = fit_count(mercato)
        mercato.retrain("forecast")
        while fit_count(mercato) == fits:
            time.sleep(0.2)
        ours = {code: mercato.forecast_demand(item_id=code, horizon_days=HOLD_OUT) for code in top}

    results = {"mercato": [], "statsmodels ETS (AICc)": []}
    methods = {}
    for code in top:
        s = series[code]
        train, actual = s[:train_days], s[train_days:]
        f = ours[code]
        methods[f.method] = methods.get(f.method, 0) + 1
        results["mercato"].append((
            mase(actual, np.asarray(f.mean), train),
            coverage(actual, np.asarray(f.intervals[0].lower), np.asarray(f.intervals[0].upper)),
            coverage(actual, np.asarray(f.intervals[1].lower), np.asarray(f.intervals[1].upper))))
        if "--no_reference" in sys.argv:
            continue
        mean, lo80, hi80, lo95, hi95 = ets_reference(train)
        results["statsmodels ETS (AICc)"].append((
            mase(actual, mean, train), coverage(actual, lo80, hi80), coverage(actual, lo95, hi95)))
    print(f"Online Retail II: {len(top)} best-selling products, {train_days} training days, "
          f"the last {HOLD_OUT} days ({cutoff} to {last}) held out")
    print(f"  mercato's methods: {methods}")
    for name, r in results.items():
        if not r:
            continue
        a = np.array(r, dtype=float)
        print(f"  {name}: MASE mean {np.nanmean(a[:, 0]):.3f}, median {np.nanmedian(a[:, 0]):.3f}; "
              f"80% interval covers {np.nanmean(a[:, 1]):.3f}, 95% covers {np.nanmean(a[:, 2]):.3f}")


if __name__ == "__main__":
    main()
