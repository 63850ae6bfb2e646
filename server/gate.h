// Admission of every call by the access file (server/access.h): a bearer
// token in `authorization: Bearer <token>`, or with mutual TLS the client's
// certificate, must grant the scope of the method called. Each method's
// scope is declared where its service is registered (ServiceRegistrar);
// admin-scope calls are audited in the store and in the log.
//
// Without an access file and without mutual TLS every call is admitted
// (mercato-server allows that only on loopback, or when told
// --insecure_allow_unauthenticated). With mutual TLS and no file, every
// verified certificate may call everything.
//
// Thread-safe.
#ifndef MERCATO_SERVER_GATE_H_
#define MERCATO_SERVER_GATE_H_

#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/access.h"
#include "storage/store.h"

namespace mercato::server {

struct GateOptions {
  // The access file; empty = no tokens.
  std::string access_file;
  // Clients present verified certificates (--tls_client_ca_file).
  bool mutual_tls = false;
  // How often the file is checked for a change (it is also read again on
  // Reload, which mercato-server calls on SIGHUP).
  absl::Duration poll = absl::Seconds(1);
};

class Gate {
 public:
  // INVALID_ARGUMENT naming the file and line when it cannot be used.
  static absl::StatusOr<std::unique_ptr<Gate>> Open(const GateOptions& options);
  ~Gate();

  // Reads the access file again (nothing without one). When it cannot be
  // read or parsed the grants in force stay, and the error is returned.
  absl::Status Reload();

  // OK when the call may run, with the caller's name in `who`;
  // UNAUTHENTICATED without a known token or certificate, PERMISSION_DENIED
  // naming `scope` when the caller's grant lacks it.
  grpc::Status Admit(const grpc::ServerContext& ctx, Scope scope, std::string* who) const;

  // Whether `token` is granted `scope` (the metrics endpoint's basic auth).
  bool Grants(absl::string_view token, Scope scope) const;

  // Whether calls are checked at all.
  bool enforcing() const { return has_access_file() || options_.mutual_tls; }
  bool has_access_file() const { return !options_.access_file.empty(); }

 private:
  explicit Gate(const GateOptions& options) : options_(options) {}
  void Watch();
  std::shared_ptr<const AccessTable> table() const;

  const GateOptions options_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const AccessTable> table_ ABSL_GUARDED_BY(mu_);
  std::string file_stamp_ ABSL_GUARDED_BY(mu_);
  absl::Mutex stop_mu_;
  bool stop_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread watcher_;
};

// Keeps `record`, stamped with the time, in `store`'s audit records and as a
// structured log line; an error is logged, not returned (the call it
// records has its own outcome).
void KeepAudit(storage::Store& store, storage::AuditRecord record);

// One method's admission and audit, made where it is registered.
class MethodGate {
 public:
  // `gate` null = every call admitted. `audit`: the store that keeps the
  // audit records of calls with `scope` admin (null = none kept).
  MethodGate(const Gate* gate, Scope scope, std::string method, storage::Store* audit)
      : gate_(gate), scope_(scope), method_(std::move(method)), audit_(audit) {}

  grpc::Status Admit(const grpc::ServerContext& ctx, std::string* who) const {
    if (gate_ == nullptr || !gate_->enforcing()) return grpc::Status::OK;
    return gate_->Admit(ctx, scope_, who);
  }
  bool audited() const { return scope_ == Scope::kAdmin && audit_ != nullptr; }
  // Records an audited call (REQUIRES: audited()). `request` is kept as text
  // without any field named user_id, so an erasure's record does not name
  // whom it erased.
  void Record(absl::string_view who, const google::protobuf::Message* request,
              const grpc::Status& outcome) const;

 private:
  const Gate* gate_;
  Scope scope_;
  std::string method_;
  storage::Store* audit_;
};

}  // namespace mercato::server

#endif  // MERCATO_SERVER_GATE_H_
