"""A thin Python client for Mercato.

Install it with `pip install ./clients/python` (see setup.py), which
generates the stubs from proto/ into the package; or put build/python (the
CMake build's stubs) and this folder on PYTHONPATH. Every call has a
deadline and is retried, with backoff, while the server answers UNAVAILABLE
(starting up, recovering, or briefly unreachable). Other errors are raised as
MercatoError with the gRPC code and the server's message, which names the
field at fault.
"""

import collections
import json
import os
import socket
import time

import grpc
from google.protobuf import json_format

from mercato.v1 import (admin_pb2, admin_pb2_grpc, catalog_pb2, catalog_pb2_grpc, fraud_pb2,
                        fraud_pb2_grpc, forecasting_pb2, forecasting_pb2_grpc, ingest_pb2, ingest_pb2_grpc, pricing_pb2,
                        pricing_pb2_grpc, recommender_pb2, recommender_pb2_grpc, segmenter_pb2,
                        segmenter_pb2_grpc)


def _address_list(replicas):
    """"ipv4:A:P,B:P" for host:port replicas, each resolved once: gRPC's
    static resolver takes addresses only."""
    addresses = []
    for replica in replicas:
        host, port = replica.strip().rsplit(":", 1)
        family, _, _, _, address = socket.getaddrinfo(host.strip("[]"), int(port),
                                                      type=socket.SOCK_STREAM)[0]
        addresses.append((family, address[0], port))
    if len({a[0] for a in addresses}) > 1:
        raise ValueError(f"{replicas}: give IPv4 or IPv6 replicas, not both")
    if addresses[0][0] == socket.AF_INET6:
        return "ipv6:" + ",".join(f"[{a}]:{p}" for _, a, p in addresses)
    return "ipv4:" + ",".join(f"{a}:{p}" for _, a, p in addresses)


class MercatoError(Exception):
    """A call that failed; `code` is the grpc.StatusCode."""

    def __init__(self, code, message):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class PublishRejected(MercatoError):
    """A Publish stream whose other events were stored, but some were
    rejected; `summary` lists them (index, event id, reason)."""

    def __init__(self, summary):
        reasons = "; ".join(f"[{r.index}] {r.reason}" for r in summary.rejections[:5])
        super().__init__(grpc.StatusCode.INVALID_ARGUMENT,
                         f"{summary.rejected} of {summary.accepted + summary.duplicates + summary.rejected} "
                         f"events rejected: {reasons}")
        self.summary = summary


class _CallDetails(collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                         "compression")), grpc.ClientCallDetails):
    pass


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call; works on plaintext
    channels too, where gRPC refuses call credentials."""

    def __init__(self, token):
        self._header = ("authorization", "Bearer " + token)

    def _with_token(self, d):
        return _CallDetails(d.method, d.timeout, list(d.metadata or []) + [self._header],
                            d.credentials, d.wait_for_ready, d.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._with_token(details), request_iterator)


class Mercato:
    """One channel to a Mercato server and a typed helper per RPC."""

    def __init__(self, target="127.0.0.1:50051", timeout=5.0, retries=5, backoff=0.2,
                 tls_ca_file=None, tls_cert_file=None, tls_key_file=None, token=None,
                 read_your_writes=False):
        """`target` may list replicas ("host:port,host:port" or a list): calls
        then go round robin to those whose grpc.health reports SERVING. With
        tls_ca_file, TLS verifying the server against that CA (PEM); with
        tls_cert_file and tls_key_file too, mutual TLS. `token` (default:
        $MERCATO_TOKEN) is sent with every call as `authorization: Bearer`.
        With `read_your_writes`, every model read carries the highest
        sequence this client's writes got (metadata mercato-min-sequence), so
        a replica answers only once it has them."""
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.read_your_writes = read_your_writes
        self.written_sequence = 0
        options = []
        replicas = target if isinstance(target, (list, tuple)) else target.split(",")
        if len(replicas) > 1:
            target = _address_list(replicas)
            options = [("grpc.service_config", json.dumps({
                "loadBalancingConfig": [{"round_robin": {}}],
                "healthCheckConfig": {"serviceName": ""}})),
                ("grpc.default_authority", replicas[0].rsplit(":", 1)[0])]
        if tls_ca_file:
            def read(path):
                with open(path, "rb") as f:
                    return f.read()
            credentials = grpc.ssl_channel_credentials(
                root_certificates=read(tls_ca_file),
                private_key=read(tls_key_file) if tls_key_file else None,
                certificate_chain=read(tls_cert_file) if tls_cert_file else None)
            self.channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        token = token if token is not None else os.environ.get("MERCATO_TOKEN", "")
        if token.strip():
            self.channel = grpc.intercept_channel(self.channel, _BearerToken(token.strip()))
        self._ingest = ingest_pb2_grpc.IngestStub(self.channel)
        self._catalog = catalog_pb2_grpc.CatalogStub(self.channel)
        self._recommender = recommender_pb2_grpc.RecommenderStub(self.channel)
        self._segmenter = segmenter_pb2_grpc.SegmenterStub(self.channel)
        self._pricing = pricing_pb2_grpc.PricingStub(self.channel)
        self._fraud = fraud_pb2_grpc.FraudStub(self.channel)
        self._forecasting = forecasting_pb2_grpc.ForecastingStub(self.channel)
        self._admin = admin_pb2_grpc.AdminStub(self.channel)

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request, read=False):
        delay = self.backoff
        metadata = None
        if read and self.read_your_writes and self.written_sequence:
            metadata = [("mercato-min-sequence", str(self.written_sequence))]
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=self.timeout, metadata=metadata)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAVAILABLE and attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise MercatoError(e.code(), e.details()) from None
        raise AssertionError("unreachable")

    # Operations.
    def ready(self):
        """True once the server has recovered and serves: grpc.health.v1,
        which needs no token, answers SERVING."""
        check = self.channel.unary_unary("/grpc.health.v1.Health/Check",
                                         request_serializer=bytes, response_deserializer=bytes)
        try:
            # HealthCheckRequest{} is empty; HealthCheckResponse{status: SERVING} is 08 01.
            return check(b"", timeout=self.timeout) == b"\x08\x01"
        except grpc.RpcError:
            return False

    def wait_ready(self, seconds=30.0):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.ready():
                return
            time.sleep(0.05)
        raise MercatoError(grpc.StatusCode.UNAVAILABLE, f"not ready after {seconds} s")

    def status(self):
        return self._call(self._admin.ModelStatus, admin_pb2.ModelStatusRequest())

    def retrain(self, model=""):
        """Admin.Retrain: starts a fit of `model` (every model with fits when empty)."""
        return self._call(self._admin.Retrain, admin_pb2.RetrainRequest(model=model))

    def wait_applied(self, sequence, seconds=30.0):
        """Waits until the served models include log position `sequence`."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.status().applied_sequence >= sequence:
                return
            time.sleep(0.02)
        raise MercatoError(grpc.StatusCode.DEADLINE_EXCEEDED, f"sequence {sequence} not applied")

    # Ingest and catalogue.
    def publish(self, events):
        """Publishes dicts or ingest_pb2.Event; returns the PublishSummary."""
        batch = ingest_pb2.EventBatch(
            events=[e if isinstance(e, ingest_pb2.Event) else ingest_pb2.Event(**e) for e in events])
        return self._wrote(self._call(self._ingest.PublishBatch, batch))

    def _wrote(self, summary):
        self.written_sequence = max(self.written_sequence, summary.last_sequence)
        return summary

    def publish_stream(self, events, allow_rejected=False):
        """Publishes dicts, ingest_pb2.Event or already serialized bytes over
        one Publish stream (not retried: the stream is consumed); returns the
        PublishSummary. Unless `allow_rejected`, raises PublishRejected when
        the server rejected any message, after the others were stored."""
        def serialize(e):
            if isinstance(e, bytes):
                return e
            return (e if isinstance(e, ingest_pb2.Event) else ingest_pb2.Event(**e)).SerializeToString()
        call = self.channel.stream_unary(
            "/mercato.v1.Ingest/Publish", request_serializer=serialize,
            response_deserializer=ingest_pb2.PublishSummary.FromString)
        try:
            summary = call(iter(events), timeout=self.timeout)
        except grpc.RpcError as e:
            raise MercatoError(e.code(), e.details()) from None
        if summary.rejected and not allow_rejected:
            raise PublishRejected(summary)
        return self._wrote(summary)

    def upsert_items(self, items):
        request = catalog_pb2.UpsertItemsRequest(
            items=[i if isinstance(i, catalog_pb2.Item) else catalog_pb2.Item(**i) for i in items])
        return self._call(self._catalog.UpsertItems, request)

    # Models.
    def recommend(self, user_id="", count=10, context_item_ids=(), explain=False, **filters):
        request = recommender_pb2.RecommendRequest(
            user_id=user_id, count=count, context_item_ids=list(context_item_ids), explain=explain,
            filter=recommender_pb2.ItemFilter(**filters))
        return self._call(self._recommender.Recommend, request, read=True)

    def similar_items(self, item_id, count=10, **filters):
        request = recommender_pb2.SimilarItemsRequest(
            item_id=item_id, count=count, filter=recommender_pb2.ItemFilter(**filters))
        return self._call(self._recommender.SimilarItems, request, read=True)

    def bought_together(self, item_id, count=10, min_support=0):
        request = recommender_pb2.BoughtTogetherRequest(
            item_id=item_id, count=count, min_support=min_support)
        return self._call(self._recommender.BoughtTogether, request, read=True)

    def segment(self, user_id, horizon_days=0):
        return self._call(self._segmenter.Segment,
                          segmenter_pb2.SegmentRequest(user_id=user_id, horizon_days=horizon_days),
                          read=True)

    def segments(self):
        return self._call(self._segmenter.ListSegments, segmenter_pb2.ListSegmentsRequest(),
                          read=True)

    def price_elasticity(self, item_id="", category="", segment_id=None, unit_cost=0.0,
                         candidate_prices=()):
        request = pricing_pb2.PriceElasticityRequest(
            item_id=item_id, category=category, unit_cost=unit_cost,
            candidate_prices=list(candidate_prices))
        if segment_id is not None:
            request.segment_id = segment_id
        return self._call(self._pricing.PriceElasticity, request, read=True)

    def score(self, **order):
        """Fraud.Score of an order given as keyword fields of mercato.v1.Order;
        line_items as a list of dicts, attributes as a dict of name to
        {"text": ...} or {"number": ...}."""
        return self._call(self._fraud.Score,
                          json_format.ParseDict(order, fraud_pb2.Order()), read=True)

    def forecast_demand(self, item_id="", category="", horizon_days=28, interval_levels=(),
                        history_days=0):
        """Forecasting.ForecastDemand: daily means, intervals, the method and its MASE."""
        return self._call(self._forecasting.ForecastDemand, forecasting_pb2.ForecastDemandRequest(
            item_id=item_id, category=category, horizon_days=horizon_days,
            interval_levels=list(interval_levels), history_days=history_days), read=True)

    def plan_inventory(self, item_id, **request):
        """Forecasting.PlanInventory; the other fields of PlanInventoryRequest as keywords."""
        return self._call(self._forecasting.PlanInventory,
                          forecasting_pb2.PlanInventoryRequest(item_id=item_id, **request),
                          read=True)
