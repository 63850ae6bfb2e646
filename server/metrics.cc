#include "server/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <chrono>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/clock.h"

namespace mercato::server {
namespace {

const char* const kCodeNames[17] = {
    "OK",      "CANCELLED",         "UNKNOWN",          "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS",  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",   "UNIMPLEMENTED",    "INTERNAL",
    "UNAVAILABLE", "DATA_LOSS",     "UNAUTHENTICATED"};

// Handling-time buckets, from 50 µs: most answers take well under 1 ms.
const prometheus::Histogram::BucketBoundaries kBuckets = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5};

class MethodMetrics;


prometheus::ClientMetric Gauge(double value, std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric m;
  m.gauge.value = value;
  m.label = std::move(labels);
  return m;
}

prometheus::ClientMetric CounterValue(double value) {
  prometheus::ClientMetric m;
  m.counter.value = value;
  return m;
}

prometheus::MetricFamily Family(std::string name, std::string help, prometheus::MetricType type,
                                std::vector<prometheus::ClientMetric> metrics) {
  return {std::move(name), std::move(help), type, std::move(metrics)};
}

// What the runtime knows, read at scrape time.
class RuntimeCollector final : public prometheus::Collectable {
 public:
  explicit RuntimeCollector(Runtime* rt) : rt_(rt) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    const auto snap = rt_->learner().snapshot();
    const uint64_t log_seq = rt_->store().LastSequence();
    const uint64_t lag = rt_->lag_events();
    const int64_t now = core::Clock::Real()->NowMs();
    std::vector<prometheus::ClientMetric> versions, ages, counts, gauges, retrains, retrain_ages;
    std::map<std::string, prometheus::MetricFamily> own;  // the models' own families
    for (const core::PublishedModel& m : snap->models) {
      for (core::MetricSample& x : m.view->Samples()) {
        prometheus::MetricFamily& f = own[x.family];
        f.name = x.family;
        f.help = std::move(x.help);
        f.type = prometheus::MetricType::Gauge;
        std::vector<prometheus::ClientMetric::Label> labels;
        for (auto& [name, value] : x.labels) labels.push_back({std::move(name), std::move(value)});
        f.metric.push_back(Gauge(x.value, std::move(labels)));
      }
      versions.push_back(Gauge(static_cast<double>(m.version), {{"model", m.name}}));
      ages.push_back(Gauge((now - m.published_at_ms) / 1000.0, {{"model", m.name}}));
      for (const auto& [name, value] : m.view->Counts()) {
        counts.push_back(Gauge(static_cast<double>(value), {{"model", m.name}, {"count", name}}));
      }
      for (const auto& [name, value] : {std::pair<const char*, uint64_t>{"waiting_events", m.waiting_events},
                                        {"applied_events", m.applied_events},
                                        {"apply_ns", m.apply_ns}}) {
        counts.push_back(Gauge(static_cast<double>(value), {{"model", m.name}, {"count", name}}));
      }
      for (const auto& [name, value] : m.view->Gauges()) {
        gauges.push_back(Gauge(value, {{"model", m.name}, {"gauge", name}}));
      }
      if (const std::optional<core::RetrainInfo> r = m.view->LastRetrain()) {
        retrains.push_back(Gauge(r->seconds, {{"model", m.name}}));
        retrain_ages.push_back(Gauge((now - r->finished_ms) / 1000.0, {{"model", m.name}}));
      }
    }
    const core::CheckpointInfo cp = rt_->checkpointer().last();
    const storage::StoreStats stats = rt_->store().Stats();
    std::vector<prometheus::MetricFamily> out;
    out.push_back(Family("mercato_ready", "1 once recovery has finished", MetricType::Gauge,
                         {Gauge(rt_->ready() ? 1 : 0)}));
    out.push_back(Family("mercato_log_sequence", "Highest durable event sequence number",
                         MetricType::Gauge, {Gauge(static_cast<double>(log_seq))}));
    out.push_back(Family("mercato_learner_lag_events",
                         "Events in the log (with a shared log: up to its head) not yet served",
                         MetricType::Gauge, {Gauge(static_cast<double>(lag))}));
    if (const storage::RedisLog* shared = rt_->shared_log()) {
      out.push_back(Family("mercato_shared_log_head",
                           "Highest sequence this replica knows the shared log to hold",
                           MetricType::Gauge, {Gauge(static_cast<double>(shared->head()))}));
      out.push_back(Family("mercato_shared_log_connected",
                           "1 while this replica's copy of the shared log reaches Redis",
                           MetricType::Gauge, {Gauge(shared->connected() ? 1 : 0)}));
    }
    out.push_back(Family("mercato_learner_lag_seconds",
                         "Age of the served snapshot while events wait, in seconds",
                         MetricType::Gauge,
                         {Gauge(lag == 0 ? 0 : (now - snap->published_at_ms) / 1000.0)}));
    out.push_back(Family("mercato_model_version", "Served version of each model",
                         MetricType::Gauge, versions));
    out.push_back(Family("mercato_model_age_seconds", "Time since each model was last published",
                         MetricType::Gauge, ages));
    out.push_back(Family("mercato_model_count",
                         "What each served model counts (as ModelStatus gives): rows, retrains, "
                         "waiting events, ...",
                         MetricType::Gauge, counts));
    out.push_back(Family("mercato_model_gauge",
                         "What each served model measures beyond counts (as ModelStatus gives), "
                         "e.g. the fraud model's Brier score",
                         MetricType::Gauge, gauges));
    for (auto& [name, family] : own) out.push_back(std::move(family));
    out.push_back(Family("mercato_snapshot_publishes_total", "Snapshot publications",
                         MetricType::Counter,
                         {CounterValue(static_cast<double>(rt_->learner().publishes()))}));
    out.push_back(Family("mercato_snapshot_publish_seconds_total",
                         "Time spent publishing snapshots", MetricType::Counter,
                         {CounterValue(rt_->learner().publish_seconds())}));
    out.push_back(Family("mercato_checkpoint_duration_seconds", "Duration of the last checkpoint",
                         MetricType::Gauge, {Gauge(cp.seconds)}));
    out.push_back(Family("mercato_checkpoint_age_seconds",
                         "Time since the last checkpoint was written or loaded", MetricType::Gauge,
                         {Gauge(cp.written_at_ms == 0 ? 0 : (now - cp.written_at_ms) / 1000.0)}));
    out.push_back(Family("mercato_retrain_duration_seconds", "Duration of each model's last retrain",
                         MetricType::Gauge, retrains));
    out.push_back(Family("mercato_retrain_age_seconds",
                         "Time since each model's last retrain (or background fit) finished",
                         MetricType::Gauge, retrain_ages));
    out.push_back(Family("mercato_rocksdb_live_bytes", "Estimated live data in RocksDB",
                         MetricType::Gauge, {Gauge(static_cast<double>(stats.live_data_bytes))}));
    out.push_back(Family("mercato_rocksdb_pending_compaction_bytes",
                         "Bytes RocksDB estimates it still has to compact", MetricType::Gauge,
                         {Gauge(static_cast<double>(stats.pending_compaction_bytes))}));
    return out;
  }

 private:
  Runtime* rt_;
};

}  // namespace

struct Metrics::Impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::shared_ptr<RuntimeCollector> runtime;
  std::unique_ptr<prometheus::Exposer> exposer;
  prometheus::Family<prometheus::Counter>& started =
      prometheus::BuildCounter().Name("grpc_server_started_total")
          .Help("RPCs started on the server").Register(*registry);
  prometheus::Family<prometheus::Counter>& handled =
      prometheus::BuildCounter().Name("grpc_server_handled_total")
          .Help("RPCs completed on the server, by status code").Register(*registry);
  prometheus::Family<prometheus::Histogram>& seconds =
      prometheus::BuildHistogram().Name("grpc_server_handling_seconds")
          .Help("Time from an RPC's start to its status, in seconds").Register(*registry);
  prometheus::Family<prometheus::Counter>& events =
      prometheus::BuildCounter().Name("mercato_events_total")
          .Help("Events received by Ingest, by outcome").Register(*registry);
  prometheus::Counter& accepted = events.Add({{"outcome", "accepted"}});
  prometheus::Counter& duplicate = events.Add({{"outcome", "duplicate"}});
  prometheus::Counter& rejected = events.Add({{"outcome", "rejected"}});
  // The modules' counter families, by name.
  std::map<std::string, prometheus::Family<prometheus::Counter>*> module_counters;

  absl::Mutex mu;
  absl::flat_hash_map<std::string, std::unique_ptr<MethodMetrics>> methods ABSL_GUARDED_BY(mu);
  // Methods whose calls their handlers report (Metrics::ObserverFor); the
  // interceptor leaves them alone. Fixed before the server starts.
  absl::flat_hash_set<std::string> observed_inline;

  MethodMetrics* For(std::string_view full_method);
};

namespace {

// One method's metrics, created on its first call.
class MethodMetrics final : public CallObserver {
 public:
  MethodMetrics(Metrics::Impl* impl, std::string_view full_method) : impl_(impl) {
    // "/mercato.v1.Admin/ModelStatus" -> service, method.
    const size_t slash = full_method.rfind('/');
    labels_ = {{"grpc_service", std::string(full_method.substr(1, slash - 1))},
               {"grpc_method", std::string(full_method.substr(slash + 1))}};
    started_ = &impl->started.Add(labels_);
    seconds_ = &impl->seconds.Add(labels_, kBuckets);
  }

  void Started() override { started_->Increment(); }
  void Finished(grpc::StatusCode code, double seconds) override {
    Handled(std::clamp(static_cast<int>(code), 0, 16))->Increment();
    seconds_->Observe(seconds);
  }

 private:
  prometheus::Counter* Handled(int code) {
    prometheus::Counter* c = handled_[code].load(std::memory_order_acquire);
    if (c == nullptr) {
      auto labels = labels_;
      labels["grpc_code"] = kCodeNames[code];
      c = &impl_->handled.Add(labels);  // the family returns the same counter for the same labels
      handled_[code].store(c, std::memory_order_release);
    }
    return c;
  }

  Metrics::Impl* impl_;
  std::map<std::string, std::string> labels_;
  prometheus::Counter* started_ = nullptr;
  prometheus::Histogram* seconds_ = nullptr;
  std::array<std::atomic<prometheus::Counter*>, 17> handled_{};
};

}  // namespace

MethodMetrics* Metrics::Impl::For(std::string_view full_method) {
  absl::MutexLock lock(&mu);
  auto& slot = methods[std::string(full_method)];
  if (!slot) slot = std::make_unique<MethodMetrics>(this, full_method);
  return slot.get();
}


namespace {

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit MetricsInterceptor(MethodMetrics* method)
      : method_(method), start_(std::chrono::steady_clock::now()) {
    method_->Started();
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* batch) override {
    if (batch->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      method_->Finished(batch->GetSendStatus().error_code(),
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
                            .count());
    }
    batch->Proceed();
  }

 private:
  MethodMetrics* method_;
  std::chrono::steady_clock::time_point start_;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(Metrics::Impl* impl) : impl_(impl) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    if (impl_->observed_inline.contains(info->method())) return nullptr;
    return new MetricsInterceptor(impl_->For(info->method()));
  }

 private:
  Metrics::Impl* impl_;
};

}  // namespace

Metrics::Metrics(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Metrics::~Metrics() = default;

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Start(const std::string& listen, Runtime* rt,
                                                        const Gate* gate) {
  auto impl = std::make_unique<Impl>();
  impl->runtime = std::make_shared<RuntimeCollector>(rt);
  try {
    impl->exposer = std::make_unique<prometheus::Exposer>(listen);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("--metrics_listen: cannot serve metrics on ", listen, ": ", e.what()));
  }
  if (gate != nullptr && gate->has_access_file()) {
    impl->exposer->RegisterAuth(
        [gate](const std::string&, const std::string& password) {
          return gate->Grants(password, Scope::kMetrics);
        },
        "Mercato metrics: a token with the metrics scope as password");
  }
  impl->exposer->RegisterCollectable(impl->registry);
  impl->exposer->RegisterCollectable(impl->runtime);
  return std::unique_ptr<Metrics>(new Metrics(std::move(impl)));
}

int Metrics::port() const {
  const std::vector<int> ports = impl_->exposer->GetListeningPorts();
  return ports.empty() ? 0 : ports[0];
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> Metrics::InterceptorFactory() {
  return std::make_unique<MetricsInterceptorFactory>(impl_.get());
}

CallObserver* Metrics::ObserverFor(std::string_view full_method) {
  impl_->observed_inline.emplace(full_method);
  return impl_->For(full_method);
}

void Metrics::CountEvents(uint64_t accepted, uint64_t duplicates, uint64_t rejected) {
  impl_->accepted.Increment(static_cast<double>(accepted));
  impl_->duplicate.Increment(static_cast<double>(duplicates));
  impl_->rejected.Increment(static_cast<double>(rejected));
}

prometheus::Counter& Metrics::AddCounter(const std::string& name, const std::string& help,
                                         const std::map<std::string, std::string>& labels) {
  prometheus::Family<prometheus::Counter>*& family = impl_->module_counters[name];
  if (family == nullptr) {
    family = &prometheus::BuildCounter().Name(name).Help(help).Register(*impl_->registry);
  }
  return family->Add(labels);
}

}  // namespace mercato::server
