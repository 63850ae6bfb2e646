"""A storefront backend asking Mercato what to show a shopper, and what it
knows about her.

  PYTHONPATH=build/python:clients/python /usr/bin/python3 clients/python/examples/storefront.py user0
"""
import sys

import grpc

from mercato_client import Mercato, MercatoError

user = sys.argv[1] if len(sys.argv) > 1 else "user0"
target = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1:50051"
with Mercato(target, timeout=0.1) as mercato:
    try:
        for item in mercato.recommend(user_id=user, count=5, in_stock_only=True).items:
            print(f"recommend {item.item_id} ({item.score:.3f})")
    except MercatoError as e:
        if e.code != grpc.StatusCode.UNIMPLEMENTED:
            raise
        print(f"recommendations: {e.message}")
    s = mercato.segment(user)
    print(f"{user}: segment {s.segment_id} '{s.label}', {s.rfm.frequency:.0f} orders, "
          f"expected {s.expected_purchases:.1f} purchases worth {s.customer_value:.2f} "
          f"in {s.horizon_days} days (P(alive) {s.probability_alive:.2f})")
