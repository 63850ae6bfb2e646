"""The Python client against the real mercato-server (started here on a free
port with its data in a temporary folder)."""

import os
import shutil
import subprocess
import tempfile
import time
import unittest

import grpc

from mercato_client import Mercato, MercatoError

NOW_MS = 1732280000000


class ClientTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="mercato-py-")
        port_file = os.path.join(cls.dir, "port")
        cls.server = subprocess.Popen([
            os.environ["MERCATO_SERVER_BINARY"], "--listen=127.0.0.1:0",
            "--data_dir=" + os.path.join(cls.dir, "data"), "--port_file=" + port_file,
            "--metrics_listen=", "--log_level=warning", "--drain_timeout_s=2"])
        deadline = time.time() + 30
        while not os.path.exists(port_file) and time.time() < deadline:
            time.sleep(0.02)
        with open(port_file) as f:
            cls.client = Mercato(f"127.0.0.1:{int(f.read())}", retries=20, backoff=0.05)
        cls.client.wait_ready()

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.server.terminate()
        cls.server.wait(timeout=30)
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_catalogue_events_and_elasticity(self):
        c = self.client
        self.assertEqual(c.upsert_items([
            {"item_id": "mug", "category_path": ["kitchen"], "price": 10, "unit_cost": 4}]).upserted, 1)
        events = []
        for day in range(20):
            price = [8.0, 10.0, 12.0][day % 3]
            events.append({"event_id": f"py-{day}", "type": "PURCHASE", "user_id": f"u{day % 4}",
                           "item_id": "mug", "order_id": f"o{day}", "quantity": round(1000 * price ** -2),
                           "unit_price": price, "timestamp_ms": NOW_MS + day * 86400000})
        summary = c.publish(events)
        self.assertEqual(summary.accepted, 20)
        self.assertEqual(c.publish(events).duplicates, 20)  # idempotent by event_id
        c.wait_applied(summary.last_sequence)
        e = c.price_elasticity(item_id="mug", candidate_prices=[9, 11])
        self.assertTrue(e.has_estimate, e.note)
        self.assertAlmostEqual(e.elasticity, -2.0, delta=0.1)
        self.assertEqual(len(e.candidates), 2)

    def test_fraud_score_says_why(self):
        risky = self.client.score(order_id="py-o1", user_id="mallory", amount=1900, currency="EUR",
                                  billing_country="DE", shipping_country="NG", ip_country="NG",
                                  account_created_ms=NOW_MS - 60000, timestamp_ms=NOW_MS)
        self.assertGreater(risky.probability, 0.5)
        self.assertTrue(risky.reasons)

    def test_errors_name_the_field(self):
        with self.assertRaises(MercatoError) as bad:
            self.client.score(order_id="py-o2", user_id="x", amount=-1, currency="EUR")
        self.assertEqual(bad.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertTrue(bad.exception.message.startswith("amount:"), bad.exception.message)
        with self.assertRaises(MercatoError) as missing:
            self.client.segment("nobody")
        self.assertEqual(missing.exception.code, grpc.StatusCode.NOT_FOUND)

    def test_unavailable_is_retried_then_raised(self):
        c = Mercato("127.0.0.1:1", timeout=0.2, retries=2, backoff=0.01)
        start = time.time()
        with self.assertRaises(MercatoError) as down:
            c.status()
        self.assertEqual(down.exception.code, grpc.StatusCode.UNAVAILABLE)
        self.assertLess(time.time() - start, 5)
        c.close()


if __name__ == "__main__":
    unittest.main()
