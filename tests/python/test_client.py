"""The Python client, as installed from clients/python (with its generated
stubs), against the real mercato-server (started here on a free port with its
data in a temporary folder)."""

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import grpc

from mercato.v1 import recommender_pb2
from mercato_client import Mercato, MercatoError, PublishRejected

NOW_MS = 1732280000000


def start_server(folder, *flags):
    """A mercato-server with its data in `folder`, on a free loopback port:
    the process and its target."""
    port_file = os.path.join(folder, "port")
    server = subprocess.Popen([
        os.environ["MERCATO_SERVER_BINARY"], "--listen=127.0.0.1:0",
        "--data_dir=" + os.path.join(folder, "data"), "--port_file=" + port_file,
        "--metrics_listen=", "--log_level=error", "--drain_timeout_s=2", *flags])
    deadline = time.time() + 30
    while not os.path.exists(port_file) and time.time() < deadline:
        time.sleep(0.02)
    with open(port_file) as f:
        return server, f"127.0.0.1:{int(f.read())}"


class ServerTest(unittest.TestCase):
    """A server per test, in a temporary folder (self.dir)."""

    def tearDown(self):
        self.server.terminate()
        self.server.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


class ClientTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="mercato-py-")
        cls.server, target = start_server(cls.dir)
        cls.client = Mercato(target, retries=20, backoff=0.05)
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

    # Named to run last: its sales would lead the popularity other tests read.
    def test_weeks_of_sales_give_a_forecast_and_a_plan(self):
        c = self.client
        # Three weeks after the days the other tests sell on, so none is late.
        events = [{"event_id": f"py-fc-{day}", "type": "PURCHASE", "user_id": "fc",
                   "item_id": "teapot", "order_id": f"py-fc-{day}", "quantity": 1 + day * 7 % 5,
                   "unit_price": 20, "timestamp_ms": NOW_MS + (30 + day) * 86400000} for day in range(21)]
        c.wait_applied(c.publish(events).last_sequence)
        f = c.forecast_demand(item_id="teapot", horizon_days=7, history_days=5)
        self.assertEqual(len(f.mean), 7)
        self.assertEqual(len(f.history), 5)
        self.assertEqual([i.level for i in f.intervals], [0.8, 0.95])
        self.assertTrue(f.method)
        p = c.plan_inventory("teapot", on_hand=5, lead_time_days=3, review_period_days=7,
                             cycle_service_level=0.9)
        self.assertGreater(p.order_up_to, p.protection_demand_mean)
        with self.assertRaises(MercatoError) as bad:
            c.forecast_demand(item_id="teapot", horizon_days=400)
        self.assertTrue(bad.exception.message.startswith("horizon_days:"), bad.exception.message)

    def test_recommendations_for_a_shopper_and_a_session(self):
        c = self.client
        c.upsert_items([{"item_id": f"book{i}", "category_path": ["books"], "price": 5 + i}
                        for i in range(6)] +
                       [{"item_id": f"pen{i}", "category_path": ["office"], "price": 1 + i}
                        for i in range(6)])
        events = []
        for u in range(12):
            kind = "book" if u % 2 else "pen"
            for i in range(4):
                events.append({"event_id": f"py-rec-{u}-{i}", "type": "PURCHASE",
                               "user_id": f"reader{u}", "item_id": f"{kind}{(u + i) % 6}",
                               "order_id": f"py-rec-{u}", "quantity": 1, "unit_price": 5,
                               "timestamp_ms": NOW_MS + u * 1000 + i})
        c.wait_applied(c.publish(events).last_sequence)
        r = c.recommend(user_id="reader1", count=3, explain=True, exclude_purchased=True)
        # The two books reader1 has not bought first.
        self.assertEqual(len(r.items), 3)
        self.assertEqual(sorted(i.item_id for i in r.items[:2]), ["book0", "book5"])
        self.assertEqual(r.items[0].source, recommender_pb2.PERSONAL)
        self.assertFalse(r.items[2].item_id.startswith("book"))  # the best of the rest
        self.assertTrue(r.items[0].because)
        session = c.recommend(context_item_ids=["pen0", "pen1"], count=2, categories=["office"])
        self.assertTrue(all(i.item_id.startswith("pen") for i in session.items))
        self.assertTrue(c.similar_items("book2", count=2).items)
        pairs = c.bought_together("book2", count=3, min_support=1)
        self.assertTrue(all(p.support >= 1 for p in pairs.items))
        with self.assertRaises(MercatoError) as bad:
            c.recommend(user_id="reader1", count=0)
        self.assertEqual(bad.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("count", bad.exception.message)

    def test_fraud_score_says_why(self):
        risky = self.client.score(order_id="py-o1", user_id="mallory", amount=1900, currency="EUR",
                                  billing_country="DE", shipping_country="NG", ip_country="NG",
                                  account_created_ms=NOW_MS - 60000, timestamp_ms=NOW_MS,
                                  line_items=[{"item_id": "mug", "quantity": 2, "unit_price": 950}],
                                  attributes={"payment_method": {"text": "crypto"},
                                              "device_score": {"number": 88}})
        self.assertGreater(risky.probability, 0.5)
        self.assertTrue(risky.reasons)
        self.assertTrue(risky.decided_by.startswith("probability "), risky.decided_by)

    def test_stream_reports_an_undecodable_message(self):
        c = self.client
        valid = [{"event_id": f"py-stream-{i}", "type": "VIEW", "user_id": "s1", "item_id": "mug",
                  "timestamp_ms": NOW_MS + i} for i in (0, 2)]
        messages = [valid[0], b"\xff\xff\xff\x01", valid[1]]
        with self.assertRaises(PublishRejected) as raised:
            c.publish_stream(messages)
        summary = raised.exception.summary
        self.assertEqual((summary.accepted, summary.rejected), (2, 1))
        self.assertEqual(summary.rejections[0].index, 1)
        self.assertIn("event[1]: bytes that are not a mercato.v1.Event", raised.exception.message)
        again = c.publish_stream(messages, allow_rejected=True)
        self.assertEqual((again.duplicates, again.rejected), (2, 1))

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


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class TlsClientTest(ServerTest):
    """Mutual TLS with certificates made by openssl here."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mercato-py-tls-")
        self.file = lambda name: os.path.join(self.dir, name)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=py-ca",
                "-keyout", self.file("ca.key"), "-out", self.file("ca.pem"))
        with open(self.file("san.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\n")
        for name in ("server", "client"):
            openssl("req", *ec, "-subj", f"/CN={name}", "-keyout", self.file(f"{name}.key"),
                    "-out", self.file(f"{name}.csr"))
            openssl("x509", "-req", "-days", "2", "-in", self.file(f"{name}.csr"),
                    "-CA", self.file("ca.pem"), "-CAkey", self.file("ca.key"), "-CAcreateserial",
                    "-extfile", self.file("san.ext"), "-out", self.file(f"{name}.pem"))
        self.server, self.target = start_server(
            self.dir, "--tls_cert_file=" + self.file("server.pem"),
            "--tls_key_file=" + self.file("server.key"), "--tls_client_ca_file=" + self.file("ca.pem"))

    def test_mutual_tls_needs_the_client_certificate(self):
        c = Mercato(self.target, retries=20, backoff=0.05, tls_ca_file=self.file("ca.pem"),
                    tls_cert_file=self.file("client.pem"), tls_key_file=self.file("client.key"))
        c.wait_ready()
        self.assertTrue(c.status().models)
        c.close()
        for anonymous in (Mercato(self.target, timeout=1, retries=1, tls_ca_file=self.file("ca.pem")),
                          Mercato(self.target, timeout=1, retries=1)):
            with self.assertRaises(MercatoError) as refused:
                anonymous.status()
            self.assertEqual(refused.exception.code, grpc.StatusCode.UNAVAILABLE)
            anonymous.close()


class TokenClientTest(ServerTest):
    """Bearer tokens against a server with an access file."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mercato-py-auth-")
        self.storefront, self.ops = "mct_py-storefront-token", "mct_py-ops-token"
        access = os.path.join(self.dir, "access")
        with open(access, "w") as f:
            for name, token, scopes in (("storefront", self.storefront, "recommend"),
                                        ("ops", self.ops, "admin ingest catalog")):
                f.write(f"token {name} {hashlib.sha256(token.encode()).hexdigest()} {scopes}\n")
        self.server, self.target = start_server(self.dir, "--auth_tokens_file=" + access)

    def test_tokens_grant_their_scopes(self):
        storefront = Mercato(self.target, retries=20, backoff=0.05, token=self.storefront)
        storefront.wait_ready()  # health needs no token
        storefront.recommend("nobody", count=3)  # raises MercatoError when refused
        with self.assertRaises(MercatoError) as denied:
            storefront.status()
        self.assertEqual(denied.exception.code, grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("'admin'", str(denied.exception))
        storefront.close()
        os.environ["MERCATO_TOKEN"] = self.ops
        try:
            ops = Mercato(self.target, retries=20, backoff=0.05)
            self.assertTrue(ops.status().ready)
            self.assertEqual(ops.publish_stream([]).accepted, 0)  # a stream carries it too
            ops.close()
        finally:
            del os.environ["MERCATO_TOKEN"]
        anonymous = Mercato(self.target, retries=1)
        with self.assertRaises(MercatoError) as refused:
            anonymous.recommend("nobody", count=3)
        self.assertEqual(refused.exception.code, grpc.StatusCode.UNAUTHENTICATED)
        anonymous.close()


class ReplicaClientTest(unittest.TestCase):
    """Two replicas sharing a real redis-server's stream, one client over both."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mercato-py-replicas-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.redis = subprocess.Popen([
            "/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", self.dir,
            "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile",
            os.path.join(self.dir, "redis.log")])
        flag = f"--event_log=redis://127.0.0.1:{port}/shop"
        self.servers, targets = [], []
        for name in ("a", "b"):
            os.makedirs(os.path.join(self.dir, name))
            server, target = start_server(os.path.join(self.dir, name), flag, "--sync_writes=false")
            self.servers.append(server)
            targets.append(target)
        self.client = Mercato(",".join(targets), retries=20, backoff=0.05, read_your_writes=True)
        self.client.wait_ready()

    def tearDown(self):
        self.client.close()
        for p in self.servers + [self.redis]:
            p.kill()
            p.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_reads_see_the_clients_writes_and_survive_a_replica(self):
        c = self.client
        events = []
        for day in range(20):
            price = [8.0, 10.0, 12.0][day % 3]
            events.append({"event_id": f"r-{day}", "type": "PURCHASE", "user_id": f"u{day % 4}",
                           "item_id": "mug", "order_id": f"o{day}", "quantity": round(1000 * price ** -2),
                           "unit_price": price, "timestamp_ms": NOW_MS + day * 86400000})
        self.assertEqual(c.publish(events).accepted, 20)
        self.assertEqual(c.publish(events).duplicates, 20)  # deduplicated across replicas
        # Whichever replica answers has the purchases: no wait_applied needed.
        for _ in range(4):
            self.assertTrue(c.price_elasticity(item_id="mug").has_estimate)
        self.servers[0].kill()
        self.servers[0].wait(timeout=30)
        for _ in range(4):
            self.assertTrue(c.price_elasticity(item_id="mug").has_estimate)


if __name__ == "__main__":
    unittest.main()
