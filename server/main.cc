// mercato-server: the only place the server's own flags are read (each
// model module reads its own, server/model_module.h). Starts listening at once
// (health NOT_SERVING), recovers the models from the newest checkpoint and
// the log tail, then serves. SIGTERM or SIGINT: stop accepting, drain
// in-flight calls, checkpoint, exit 0.
#include <google/protobuf/stubs/logging.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/command_line.h"
#include "core/log.h"
#include "server/gate.h"
#include "server/model_registry.h"
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
ABSL_FLAG(int64_t, max_waiting_events, 1000000,
          "events one model may hold back while a background fit it must adopt runs; beyond, "
          "learning pauses until the fit is done (the events wait in the log)");
ABSL_FLAG(int, checkpoint_interval_s, 60,
          "checkpoint the served models this often when changed (at least 10x the last "
          "checkpoint's duration apart)");
ABSL_FLAG(int64_t, checkpoint_every_events, 200000,
          "checkpoint also once this many events were applied since the last checkpoint, so "
          "that a restart replays a bounded log tail (0 = by time only)");
ABSL_FLAG(int, cq_threads, 1, "threads serving the model RPCs (completion queues)");
ABSL_FLAG(int, max_queued_calls, 1000,
          "model RPCs each serving thread holds before it refuses the oldest with "
          "RESOURCE_EXHAUSTED");
ABSL_FLAG(int, max_message_bytes, 16 << 20, "largest request accepted, in bytes");
ABSL_FLAG(std::string, log_level, "info",
          "least severe log level written: debug, info, warning, error");
ABSL_FLAG(int, drain_timeout_s, 10, "how long shutdown waits for in-flight calls");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9464",
          "host:port of the Prometheus /metrics endpoint (port 0 = any free port); empty = none");
ABSL_FLAG(std::string, metrics_port_file, "",
          "if set, the metrics port is written here once listening");
ABSL_FLAG(std::string, tls_cert_file, "",
          "TLS: the server's certificate chain (PEM); with --tls_key_file turns TLS on");
ABSL_FLAG(std::string, tls_key_file, "", "TLS: the server's private key (PEM)");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "mutual TLS: clients must present a certificate this CA (PEM) signed");
ABSL_FLAG(int, tls_reload_s, 60,
          "TLS: how often the certificate, key and client CA files are read again, so renewed "
          "ones take effect without a restart");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "access file granting scopes to tokens (by SHA-256) and client certificates; see "
          "`mercatoctl token new`. Read again on SIGHUP and when it changes");
ABSL_FLAG(bool, insecure_allow_unauthenticated, false,
          "serve every caller on a non-loopback --listen address without tokens or mutual TLS");
ABSL_FLAG(std::string, event_log, "",
          "empty: the log is the embedded store's own. redis://[:PASSWORD@]HOST:PORT/STREAM: a "
          "Redis stream that replicas share (run Redis with appendfsync always)");
ABSL_FLAG(std::string, redis_password_file, "",
          "shared log: a file holding the Redis password (instead of one in --event_log, which "
          "every local user can read in the process list)");
ABSL_FLAG(int64_t, redis_dedup_window_s, 86400,
          "shared log: how long an event_id is remembered for idempotency, in seconds");
ABSL_FLAG(int, redis_wait_replicas, 0,
          "shared log: each write waits (WAIT) until this many Redis replicas have it");
ABSL_FLAG(int64_t, redis_retain_events, 1000000,
          "shared log: the newest entries trimming always keeps");
ABSL_FLAG(int64_t, redis_replica_timeout_s, 3600,
          "shared log: a replica not heard from for this long no longer holds trimming back");
ABSL_FLAG(int, redis_position_interval_s, 5,
          "shared log: how often this replica records its position in Redis and trims the stream");
ABSL_FLAG(std::string, replica_name, "",
          "shared log: this replica's name among the positions in Redis (default: host name "
          "and data folder)");
ABSL_FLAG(int64_t, max_serving_lag_events, 100000,
          "shared log: health is NOT_SERVING while this replica lags the log's head by more "
          "events (0 = however far)");
ABSL_FLAG(std::string, backup_dir, "",
          "where Admin.Backup writes its folders (default: the data folder's path + .backups)");
ABSL_FLAG(std::string, restore_from, "",
          "a backup (Admin.Backup) an empty --data_dir starts from; ignored when it holds a "
          "database");
namespace {

// The shared-log flags, when --event_log names one.
absl::Status SharedLogFromFlags(mercato::server::RuntimeOptions& options) {
  const std::string url = absl::GetFlag(FLAGS_event_log);
  if (url.empty()) return absl::OkStatus();
  absl::StatusOr<mercato::storage::RedisLogOptions> o =
      mercato::storage::ParseRedisUrl(url, "event_log");
  if (!o.ok()) return o.status();
  const int64_t window = absl::GetFlag(FLAGS_redis_dedup_window_s);
  const int64_t timeout = absl::GetFlag(FLAGS_redis_replica_timeout_s);
  if (window < 1) return absl::InvalidArgumentError("--redis_dedup_window_s: must be >= 1");
  if (timeout < 1) return absl::InvalidArgumentError("--redis_replica_timeout_s: must be >= 1");
  if (absl::GetFlag(FLAGS_redis_position_interval_s) < 1) {
    return absl::InvalidArgumentError("--redis_position_interval_s: must be >= 1");
  }
  o->position_interval = absl::Seconds(absl::GetFlag(FLAGS_redis_position_interval_s));
  if (absl::GetFlag(FLAGS_redis_wait_replicas) < 0) {
    return absl::InvalidArgumentError("--redis_wait_replicas: must be >= 0");
  }
  if (absl::GetFlag(FLAGS_redis_retain_events) < 0) {
    return absl::InvalidArgumentError("--redis_retain_events: must be >= 0");
  }
  if (const std::string file = absl::GetFlag(FLAGS_redis_password_file); !file.empty()) {
    std::ifstream in(file);
    std::string password;
    if (!in || !std::getline(in, password) || password.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--redis_password_file: cannot read a password from ", file));
    }
    if (!o->password.empty()) {
      return absl::InvalidArgumentError(
          "--redis_password_file: --event_log carries a password already; give one of them");
    }
    o->password = password;
  }
  o->dedup_window = absl::Seconds(window);
  o->replica_timeout = absl::Seconds(timeout);
  o->wait_replicas = absl::GetFlag(FLAGS_redis_wait_replicas);
  o->retain_events = static_cast<uint64_t>(absl::GetFlag(FLAGS_redis_retain_events));
  o->replica_name = absl::GetFlag(FLAGS_replica_name);
  if (o->replica_name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    std::error_code ec;
    o->replica_name =
        absl::StrCat(host, ":", std::filesystem::absolute(options.data_dir, ec).string());
  }
  options.shared_log = *std::move(o);
  return absl::OkStatus();
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

// The TLS flags into `options`: certificate and key together, a client CA
// only with them, every file readable.
absl::Status TlsFromFlags(mercato::server::ServerOptions& options) {
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  options.tls_reload_seconds = absl::GetFlag(FLAGS_tls_reload_s);
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert_file and --tls_key_file: give both or neither");
  }
  if (!options.tls_client_ca_file.empty() && options.tls_cert_file.empty()) {
    return absl::InvalidArgumentError("--tls_client_ca_file: needs --tls_cert_file and --tls_key_file");
  }
  if (options.tls_reload_seconds < 1) return absl::InvalidArgumentError("--tls_reload_s: must be >= 1");
  for (const auto& [flag, path] : {std::pair<const char*, const std::string&>{"tls_cert_file", options.tls_cert_file},
                                   {"tls_key_file", options.tls_key_file},
                                   {"tls_client_ca_file", options.tls_client_ca_file}}) {
    if (!path.empty() && !std::ifstream(path).good()) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": cannot read ", path));
    }
  }
  return absl::OkStatus();
}

// Whether `listen` (host:port) is reachable from this machine only.
bool IsLoopback(absl::string_view listen) {
  absl::string_view host = listen.substr(0, listen.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

// Refuses to serve the network unauthenticated unless told to.
absl::Status CheckSecureListen(const std::string& listen, const std::string& metrics_listen,
                               const mercato::server::GateOptions& gate) {
  if (absl::GetFlag(FLAGS_insecure_allow_unauthenticated)) return absl::OkStatus();
  if (!IsLoopback(listen) && gate.access_file.empty() && !gate.mutual_tls) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--listen=", listen,
        " is reachable from other machines, and no caller would be authenticated: give "
        "--auth_tokens_file (tokens from `mercatoctl token new`), or mutual TLS "
        "(--tls_cert_file, --tls_key_file, --tls_client_ca_file), or, on a network you trust "
        "entirely, --insecure_allow_unauthenticated"));
  }
  if (!metrics_listen.empty() && !IsLoopback(metrics_listen) && gate.access_file.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--metrics_listen=", metrics_listen,
        " is reachable from other machines without authentication: give --auth_tokens_file "
        "(scrapes then need basic auth with a token of the metrics scope as password), keep it "
        "on 127.0.0.1, or, on a network you trust entirely, --insecure_allow_unauthenticated"));
  }
  return absl::OkStatus();
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
  sigaddset(&signals, SIGHUP);
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
  rt_options.learner.max_waiting_events =
      static_cast<size_t>(std::max<int64_t>(1, absl::GetFlag(FLAGS_max_waiting_events)));
  rt_options.checkpoint_interval = absl::Seconds(absl::GetFlag(FLAGS_checkpoint_interval_s));
  rt_options.checkpoint_every_events =
      static_cast<uint64_t>(std::max<int64_t>(0, absl::GetFlag(FLAGS_checkpoint_every_events)));
  rt_options.restore_from = absl::GetFlag(FLAGS_restore_from);
  rt_options.backup_dir = absl::GetFlag(FLAGS_backup_dir);
  if (rt_options.backup_dir.empty()) rt_options.backup_dir = rt_options.data_dir + ".backups";
  mercato::server::ServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.max_serving_lag_events =
      static_cast<uint64_t>(std::max<int64_t>(0, absl::GetFlag(FLAGS_max_serving_lag_events)));
  absl::Status flags = mercato::server::ModuleOptionsFromFlags(rt_options.models);
  if (flags.ok()) flags = SharedLogFromFlags(rt_options);
  if (flags.ok()) flags = TlsFromFlags(options);
  options.cq_threads = absl::GetFlag(FLAGS_cq_threads);
  options.max_queued_calls = absl::GetFlag(FLAGS_max_queued_calls);
  if (flags.ok() && options.cq_threads < 1) {
    flags = absl::InvalidArgumentError("--cq_threads: must be >= 1");
  }
  if (flags.ok() && options.max_queued_calls < 1) {
    flags = absl::InvalidArgumentError("--max_queued_calls: must be >= 1");
  }
  mercato::server::GateOptions gate_options;
  gate_options.access_file = absl::GetFlag(FLAGS_auth_tokens_file);
  gate_options.mutual_tls = !options.tls_client_ca_file.empty();
  if (flags.ok()) {
    flags = CheckSecureListen(options.listen, absl::GetFlag(FLAGS_metrics_listen), gate_options);
  }
  absl::StatusOr<std::unique_ptr<mercato::server::Gate>> gate =
      flags.ok() ? mercato::server::Gate::Open(gate_options) : flags;
  if (!gate.ok()) {
    std::fprintf(stderr, "%s\n", std::string(gate.status().message()).c_str());
    return 2;
  }
  options.gate = gate->get();
  auto runtime = mercato::server::Runtime::Open(rt_options);
  if (!runtime.ok()) {
    MERCATO_LOG(kError) << runtime.status();
    return 1;
  }

  std::unique_ptr<mercato::server::Metrics> metrics;
  if (const std::string listen = absl::GetFlag(FLAGS_metrics_listen); !listen.empty()) {
    auto started = mercato::server::Metrics::Start(listen, runtime->get(), gate->get());
    if (!started.ok()) {
      MERCATO_LOG(kError) << started.status();
      return 1;
    }
    metrics = *std::move(started);
    MERCATO_LOG(kInfo) << "metrics on port " << metrics->port();
    WritePortFile(absl::GetFlag(FLAGS_metrics_port_file), metrics->port());
  }

  options.metrics = metrics.get();
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
    while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
      if (absl::Status s = (*gate)->Reload(); !s.ok()) {
        MERCATO_LOG(kError) << "SIGHUP: access file not used, the previous grants stay: " << s;
      }
    }
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
