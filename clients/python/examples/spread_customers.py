#!/usr/bin/env python3
"""Online Retail II with each customer's purchases moved in time, in the
generic format mercato-eval and mercato-replay read
(user,item,timestamp_ms,price,quantity,order).

The result has the shape of rating benchmarks such as MovieLens rather than
a shop's: every customer's year of orders is squeezed into about a week
(kept in order), and customers arrive over three years, most of them in the
first eight months. The season and the items' recent popularity no longer
say anything; the customers' tastes still do. Seeded, so one input gives one
output.

    python3 clients/python/examples/spread_customers.py \\
        ../shared/data/online_retail_ii/online_retail_II_2009-2010.csv.gz > spread.csv
    ./build/mercato-eval --format=generic --data=spread.csv
"""
import csv
import datetime
import gzip
import random
import sys

DAY_MS = 86400000
SQUEEZE = 0.02  # a year becomes about a week


def ms(text):
    t = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    return int(t.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


def main(path, seed=7):
    rows = []
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        next(reader)
        for invoice, code, _, quantity, date, price, customer, _ in reader:
            try:
                q, p = float(quantity), float(price)
            except ValueError:
                continue
            if not customer or q <= 0 or p <= 0 or invoice.startswith("C"):
                continue
            rows.append((customer, code, ms(date), p, q, invoice))
    first = {}
    for customer, _, t, *_ in rows:
        first[customer] = min(first.get(customer, t), t)
    rng = random.Random(seed)
    start = ms("2000-04-25 00:00:00")
    arrival = {}
    for customer in sorted(first):
        days = rng.uniform(0, 240) if rng.random() < 0.85 else rng.uniform(240, 1000)
        arrival[customer] = start + days * DAY_MS
    out = csv.writer(sys.stdout, lineterminator="\n")
    for customer, code, t, p, q, invoice in rows:
        moved = int(arrival[customer] + (t - first[customer]) * SQUEEZE)
        out.writerow([f"u{customer}", code, moved, p, q, invoice])


if __name__ == "__main__":
    main(sys.argv[1])
