// mercato-server: the only place flags are read. Starts listening at once
// (health NOT_SERVING), recovers the models from the newest checkpoint and
// the log tail, then serves. SIGTERM or SIGINT: stop accepting, drain
// in-flight calls, checkpoint, exit 0.
#include <google/protobuf/stubs/logging.h>
#include <signal.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "core/command_line.h"
#include "models/fraud/fraud_model.h"
#include "core/log.h"
#include "server/runtime.h"
#include "server/server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "host:port for gRPC; use 0.0.0.0:50051 in containers, port 0 for any free port");
ABSL_FLAG(std::string, data_dir, "mercato-data", "folder of the embedded RocksDB");
ABSL_FLAG(std::string, port_file, "", "if set, the chosen port is written here once listening");
ABSL_FLAG(bool, sync_writes, true,
          "fsync every ingest commit group before acknowledging it (turn off only for tests)");
ABSL_FLAG(int, publish_interval_ms, 50, "how often the learner publishes a new model version");
ABSL_FLAG(int64_t, publish_every_events, 100000, "publish also after this many applied events");
ABSL_FLAG(int, publish_gap_ms, 10,
          "once caught up, the learner publishes at once but no sooner than this after the last "
          "publication");
ABSL_FLAG(
    int, learner_nice, 10,
    "niceness (0..19) of the learner, background-append and checkpoint threads; higher yields "
    "more CPU to requests and lets learning lag under load");
ABSL_FLAG(int, checkpoint_interval_s, 60,
          "checkpoint the served models this often when changed (at least 10x the last "
          "checkpoint's duration apart)");
ABSL_FLAG(int64_t, checkpoint_every_events, 200000,
          "checkpoint also once this many events were applied since the last checkpoint, so "
          "that a restart replays a bounded log tail (0 = by time only)");
ABSL_FLAG(int, cq_threads, 1, "threads serving the model RPCs (completion queues)");
ABSL_FLAG(int, max_message_bytes, 16 << 20, "largest request accepted, in bytes");
ABSL_FLAG(std::string, log_level, "info",
          "least severe log level written: debug, info, warning, error");
ABSL_FLAG(int, drain_timeout_s, 10, "how long shutdown waits for in-flight calls");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9464",
          "host:port of the Prometheus /metrics endpoint (port 0 = any free port); empty = none");
ABSL_FLAG(std::string, metrics_port_file, "",
          "if set, the metrics port is written here once listening");
ABSL_FLAG(int, segments, 5, "number of customer segments (k of k-means)");
ABSL_FLAG(int64_t, segment_refit_purchases, 20000,
          "refit segments and customer value after this many purchases");
ABSL_FLAG(int, horizon_days, 90,
          "Segment: horizon of expected purchases and value when a request gives none");
ABSL_FLAG(double, discount_rate, 0.10, "Segment: yearly discount rate of customer value");
ABSL_FLAG(int, elasticity_period_hours, 24, "PriceElasticity: length of one observation period");
ABSL_FLAG(double, elasticity_forgetting, 1.0,
          "PriceElasticity: weight old periods keep at each new one (1 = never forget)");
ABSL_FLAG(double, fraud_review_threshold, 0.3, "Score: REVIEW from this fraud probability");
ABSL_FLAG(double, fraud_decline_threshold, 0.8, "Score: DECLINE from this fraud probability");
ABSL_FLAG(int, fraud_maturity_days, 30,
          "an order without a fraud label after this many days is legitimate");
ABSL_FLAG(double, ftrl_alpha, 0.1, "fraud model: FTRL-Proximal learning rate alpha");
ABSL_FLAG(double, ftrl_beta, 1.0, "fraud model: FTRL-Proximal beta");
ABSL_FLAG(double, ftrl_l1, 0.5, "fraud model: L1 strength");
ABSL_FLAG(double, ftrl_l2, 1.0, "fraud model: L2 strength");
ABSL_FLAG(int, rec_dim, 64, "Recommend: dimension of the iALS factors");
ABSL_FLAG(
    double, rec_unobserved_weight, 128,
    "Recommend: iALS unobserved weight of a whole row (each pair gets this / number of items)");
ABSL_FLAG(double, rec_regularization, 0.05,
          "Recommend: iALS regularisation lambda (scaled by row frequency)");
ABSL_FLAG(int, rec_epochs, 8, "Recommend: epochs of a full retrain");
ABSL_FLAG(
    int64_t, rec_retrain_every, 200000,
    "Recommend: start a background retrain after this many interactions (0 = on request only)");
ABSL_FLAG(double, rec_decay_half_life_days, 90,
          "Recommend: an interaction's confidence halves over this age (0 = no decay)");
ABSL_FLAG(double, rec_popularity_half_life_days, 7, "Recommend: popularity halves over this long");
ABSL_FLAG(std::string, rec_event_weights,
          "view:1,click:1,add_to_cart:3,purchase:8,refund:-8,rating:2",
          "Recommend: confidence per event type (type:weight, comma separated; others 0)");
ABSL_FLAG(int, rec_min_support, 2,
          "BoughtTogether: fewest shared orders when a request gives none");
ABSL_FLAG(int64_t, rec_hnsw_min_items, 50000,
          "Recommend: use HNSW from this many items with factors (0 = exact scan only)");
ABSL_FLAG(int, rec_hnsw_ef, 32, "Recommend: HNSW search breadth (ef)");
ABSL_FLAG(int, rec_hnsw_ef_construction, 200,
          "Recommend: HNSW build breadth (also used when fold-in moves an item)");

namespace {

// Parses --rec_event_weights into `weights`; false on a malformed entry.
bool ParseEventWeights(const std::string& spec,
                       std::array<float, mercato::core::kNumEventTypes>& weights) {
  weights.fill(0);
  for (absl::string_view entry : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(entry, absl::MaxSplits(':', 1));
    float w = 0;
    int type = 0;
    while (type < mercato::core::kNumEventTypes &&
           kv.first != mercato::core::EventTypeName(static_cast<mercato::core::EventType>(type))) {
      ++type;
    }
    if (type == 0 || type >= mercato::core::kNumEventTypes || !absl::SimpleAtof(kv.second, &w) ||
        !std::isfinite(w)) {
      return false;
    }
    weights[type] = w;
  }
  return true;
}

// libprotobuf's own messages (for example about a request it could not
// parse) as records of the server's structured log, not bare stderr lines.
void LogFromProtobuf(google::protobuf::LogLevel level, const char* file, int line,
                     const std::string& message) {
  using L = mercato::core::LogLevel;
  const L ours = level == google::protobuf::LOGLEVEL_INFO      ? L::kInfo
                 : level == google::protobuf::LOGLEVEL_WARNING ? L::kWarning
                                                               : L::kError;
  if (ours < mercato::core::MinLogLevel()) return;
  mercato::core::LogRecord(ours, file, line).stream() << "protobuf: " << message;
}

// Writes `port` to `path` atomically (nothing when `path` is empty).
void WritePortFile(const std::string& path, int port) {
  if (path.empty()) return;
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp) << port << "\n";
  std::rename(tmp.c_str(), path.c_str());
}

int Run() {
  // Signals go to one waiting thread, not to whichever thread runs.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  mercato::server::RuntimeOptions rt_options;
  rt_options.data_dir = absl::GetFlag(FLAGS_data_dir);
  rt_options.sync_writes = absl::GetFlag(FLAGS_sync_writes);
  rt_options.learner.publish_interval =
      absl::Milliseconds(absl::GetFlag(FLAGS_publish_interval_ms));
  rt_options.learner.publish_every_events = absl::GetFlag(FLAGS_publish_every_events);
  rt_options.learner.publish_gap =
      absl::Milliseconds(std::max(0, absl::GetFlag(FLAGS_publish_gap_ms)));
  rt_options.learner.nice = std::clamp(absl::GetFlag(FLAGS_learner_nice), 0, 19);
  rt_options.checkpoint_interval = absl::Seconds(absl::GetFlag(FLAGS_checkpoint_interval_s));
  rt_options.checkpoint_every_events =
      static_cast<uint64_t>(std::max<int64_t>(0, absl::GetFlag(FLAGS_checkpoint_every_events)));
  rt_options.segments.k = absl::GetFlag(FLAGS_segments);
  rt_options.segments.refit_every_purchases = absl::GetFlag(FLAGS_segment_refit_purchases);
  rt_options.horizon_days = absl::GetFlag(FLAGS_horizon_days);
  rt_options.annual_discount_rate = absl::GetFlag(FLAGS_discount_rate);
  rt_options.elasticity.period_ms = int64_t{3600000} * absl::GetFlag(FLAGS_elasticity_period_hours);
  rt_options.elasticity.forgetting = absl::GetFlag(FLAGS_elasticity_forgetting);
  rt_options.fraud.review_threshold = absl::GetFlag(FLAGS_fraud_review_threshold);
  rt_options.fraud.decline_threshold = absl::GetFlag(FLAGS_fraud_decline_threshold);
  rt_options.fraud.maturity_ms =
      int64_t{24 * 3600 * 1000} * absl::GetFlag(FLAGS_fraud_maturity_days);
  rt_options.fraud.alpha = absl::GetFlag(FLAGS_ftrl_alpha);
  rt_options.fraud.beta = absl::GetFlag(FLAGS_ftrl_beta);
  rt_options.fraud.l1 = absl::GetFlag(FLAGS_ftrl_l1);
  rt_options.fraud.l2 = absl::GetFlag(FLAGS_ftrl_l2);
  const mercato::core::FraudOptions& f = rt_options.fraud;
  if (!(0 < f.review_threshold && f.review_threshold <= f.decline_threshold &&
        f.decline_threshold <= 1) ||
      f.maturity_ms <= 0 || f.alpha <= 0 || f.beta < 0 || f.l1 < 0 || f.l2 < 0) {
    std::fprintf(stderr,
                 "--fraud_review_threshold and --fraud_decline_threshold must satisfy 0 < review "
                 "<= decline <= 1; --fraud_maturity_days >= 1; --ftrl_alpha > 0; beta, l1, l2 "
                 ">= 0\n");
    return 2;
  }
  if (rt_options.segments.k < 1 || rt_options.segments.k > 64 || rt_options.horizon_days < 1 ||
      rt_options.elasticity.period_ms <= 0 || rt_options.elasticity.forgetting <= 0 ||
      rt_options.elasticity.forgetting > 1 || rt_options.annual_discount_rate < 0) {
    std::fprintf(stderr,
                 "--segments must be 1..64, --horizon_days >= 1, --elasticity_period_hours >= 1, "
                 "--elasticity_forgetting in (0, 1], --discount_rate >= 0\n");
    return 2;
  }
  mercato::core::RecommendOptions& r = rt_options.recommend;
  r.ials.dim = absl::GetFlag(FLAGS_rec_dim);
  r.ials.unobserved_weight = absl::GetFlag(FLAGS_rec_unobserved_weight);
  r.ials.regularization = absl::GetFlag(FLAGS_rec_regularization);
  r.ials.epochs = absl::GetFlag(FLAGS_rec_epochs);
  r.ials.decay_half_life_days = absl::GetFlag(FLAGS_rec_decay_half_life_days);
  r.retrain_every =
      static_cast<uint64_t>(std::max<int64_t>(0, absl::GetFlag(FLAGS_rec_retrain_every)));
  r.popularity_half_life_days = absl::GetFlag(FLAGS_rec_popularity_half_life_days);
  r.min_support = static_cast<uint32_t>(std::max(1, absl::GetFlag(FLAGS_rec_min_support)));
  r.hnsw_min_items =
      static_cast<size_t>(std::max<int64_t>(0, absl::GetFlag(FLAGS_rec_hnsw_min_items)));
  r.hnsw.ef_search = absl::GetFlag(FLAGS_rec_hnsw_ef);
  r.hnsw.ef_construction = absl::GetFlag(FLAGS_rec_hnsw_ef_construction);
  if (!ParseEventWeights(absl::GetFlag(FLAGS_rec_event_weights), r.weights) || r.ials.dim < 1 ||
      r.ials.dim > 1024 || !(r.ials.unobserved_weight >= 0) || !(r.ials.regularization > 0) ||
      r.ials.epochs < 1 || !(r.ials.decay_half_life_days >= 0) ||
      !(r.popularity_half_life_days > 0) || r.hnsw.ef_search < 1 || r.hnsw.ef_construction < 1) {
    std::fprintf(stderr,
                 "--rec_event_weights must be type:weight pairs of view, click, add_to_cart, "
                 "remove_from_cart, purchase, refund, rating; --rec_dim 1..1024; "
                 "--rec_unobserved_weight >= 0; --rec_regularization > 0; --rec_epochs >= 1; "
                 "--rec_decay_half_life_days >= 0; --rec_popularity_half_life_days > 0; "
                 "--rec_hnsw_ef and --rec_hnsw_ef_construction >= 1\n");
    return 2;
  }
  auto runtime = mercato::server::Runtime::Open(rt_options);
  if (!runtime.ok()) {
    MERCATO_LOG(kError) << runtime.status();
    return 1;
  }

  std::unique_ptr<mercato::server::Metrics> metrics;
  if (const std::string listen = absl::GetFlag(FLAGS_metrics_listen); !listen.empty()) {
    auto started = mercato::server::Metrics::Start(listen, runtime->get());
    if (!started.ok()) {
      MERCATO_LOG(kError) << started.status();
      return 1;
    }
    metrics = *std::move(started);
    MERCATO_LOG(kInfo) << "metrics on port " << metrics->port();
    WritePortFile(absl::GetFlag(FLAGS_metrics_port_file), metrics->port());
  }

  mercato::server::ServerOptions options;
  options.metrics = metrics.get();
  options.listen = absl::GetFlag(FLAGS_listen);
  options.cq_threads = absl::GetFlag(FLAGS_cq_threads);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.drain_timeout = absl::Seconds(absl::GetFlag(FLAGS_drain_timeout_s));
  auto server = mercato::server::MercatoServer::Start(options, runtime->get());
  if (!server.ok()) {
    MERCATO_LOG(kError) << server.status();
    return 1;
  }
  MERCATO_LOG(kInfo) << "listening on port " << (*server)->port() << ", data in "
                     << rt_options.data_dir;
  WritePortFile(absl::GetFlag(FLAGS_port_file), (*server)->port());

  std::thread signal_waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    MERCATO_LOG(kInfo) << "signal " << sig << ": draining";
    (*server)->Shutdown();
  });

  if (absl::Status s = (*runtime)->Recover(); !s.ok()) {
    MERCATO_LOG(kError) << "recovery failed: " << s;
    kill(getpid(), SIGTERM);
    signal_waiter.join();
    return 1;
  }
  (*server)->MarkReady();
  MERCATO_LOG(kInfo) << "ready";
  (*server)->Wait();
  signal_waiter.join();
  MERCATO_LOG(kInfo) << "drained; checkpointing what changed";
  if (absl::Status s = (*runtime)->Shutdown(); !s.ok()) {
    MERCATO_LOG(kError) << "final checkpoint failed: " << s;
    return 1;
  }
  MERCATO_LOG(kInfo) << "checkpoint current; bye";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  mercato::core::ParseCommandLine(argc, argv, "Mercato recommendation and scoring server");
  // Debian's Abseil is built without NDEBUG, which leaves Mutex deadlock
  // detection on: a global lock-graph update on every lock and unlock of a
  // serving path. The tests keep it on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  mercato::core::LogLevel level;
  if (!mercato::core::ParseLogLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    std::fprintf(stderr, "--log_level: must be debug, info, warning or error\n");
    return 2;
  }
  mercato::core::SetMinLogLevel(level);
  google::protobuf::SetLogHandler(&LogFromProtobuf);
  return Run();
}
