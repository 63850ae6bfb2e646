"""A checkout asking Mercato whether to take an order.

  /usr/bin/python3 clients/python/examples/checkout.py

with the client installed (`pip install ./clients/python`, see its setup.py).
"""
import sys
import time

from mercato_client import Mercato

target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
with Mercato(target, timeout=0.05, retries=2) as mercato:  # a checkout cannot wait long
    answer = mercato.score(order_id=f"checkout-{int(time.time() * 1000)}", user_id="user3",
                           amount=129.90, currency="EUR", payment_fingerprint="card-user3",
                           billing_country="DE", shipping_country="DE", ip_country="DE",
                           device_id="dev-user3", account_created_ms=1704067200000,
                           line_items=[{"item_id": "item7", "quantity": 1, "unit_price": 129.90}],
                           attributes={"payment_method": {"text": "card"},
                                       "device_score": {"number": 31.5}})
    decision = {1: "APPROVE", 2: "REVIEW", 3: "DECLINE"}[answer.decision]
    print(f"fraud probability {answer.probability:.3f}: {decision} ({answer.decided_by})")
    for reason in answer.reasons:
        print(f"  {reason.feature} = {reason.value:g} (+{reason.contribution:.2f} log-odds)")
