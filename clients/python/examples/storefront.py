"""A storefront backend asking Mercato what to show a shopper, and what it
knows about her.

  /usr/bin/python3 clients/python/examples/storefront.py user0

with the client installed (`pip install ./clients/python`, see its setup.py).
"""
import sys

import grpc

from mercato.v1 import recommender_pb2
from mercato_client import Mercato, MercatoError

user = sys.argv[1] if len(sys.argv) > 1 else "user0"
target = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1:50051"
with Mercato(target, timeout=0.1) as mercato:
    shown = mercato.recommend(user_id=user, count=5, in_stock_only=True, exclude_purchased=True,
                              explain=True)
    for item in shown.items:
        because = ", ".join(f"{b.item_id} {100 * b.contribution:.0f}%" for b in item.because)
        print(f"recommend {item.item_id} ({item.score:.3f}, "
              f"{recommender_pb2.RecommendationSource.Name(item.source)}) because of: {because}")
    if shown.items:
        top = shown.items[0].item_id
        print(f"similar to {top}:", [i.item_id for i in mercato.similar_items(top, count=3).items])
        print(f"bought with {top}:",
              [(p.item_id, round(p.lift, 2)) for p in mercato.bought_together(top, count=3).items])
    try:
        s = mercato.segment(user)
    except MercatoError as e:
        if e.code != grpc.StatusCode.NOT_FOUND:
            raise
        sys.exit(f"{user}: {e.message}")
    print(f"{user}: segment {s.segment_id} '{s.label}', {s.rfm.frequency:.0f} orders, "
          f"expected {s.expected_purchases:.1f} purchases worth {s.customer_value:.2f} "
          f"in {s.horizon_days} days (P(alive) {s.probability_alive:.2f})")
