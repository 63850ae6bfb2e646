// What the server knows of a model, in one place: its module. A module
// lives in its model's folder (models/<folder>/service/), and defines
//   - the model's name (its checkpoint entry, Admin.Retrain's `model`);
//   - its flags, read into its options with their defaults (`from_flags`);
//   - how to make the model from its options and the models it reads;
//   - its gRPC services and their completion-queue methods (`serve`), with
//     any business metrics of its own.
// Status counts come from the model's view (core::ModelView::Counts), and
// notes on ingested events from ModelView::Note. The table of modules is
// server/model_registry.cc; nothing else in server/ names a model.
#ifndef MERCATO_SERVER_MODEL_MODULE_H_
#define MERCATO_SERVER_MODEL_MODULE_H_

#include <google/protobuf/descriptor.h>
#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/model.h"
#include "core/snapshot.h"
#include "server/access.h"
#include "server/async_unary.h"
#include "server/gate.h"
#include "server/metrics.h"
#include "server/module_options.h"
#include "server/runtime.h"

namespace mercato::server {

// UNAVAILABLE while the runtime recovers.
grpc::Status NotReady();

// Model `name` of `snap` as view type V, with its version. INTERNAL when
// the snapshot has no such model.
template <class V>
absl::StatusOr<std::pair<const V*, uint64_t>> ServedModel(const core::Snapshot& snap,
                                                          std::string_view name) {
  const core::PublishedModel* model = snap.Find(name);
  const V* view = model ? dynamic_cast<const V*>(model->view.get()) : nullptr;
  if (view == nullptr) {
    return absl::InternalError(absl::StrCat("no ", std::string(name), " model is served"));
  }
  return std::make_pair(view, model->version);
}

// OK when `ok`; otherwise INVALID_ARGUMENT "--<flag>: <requirement>", for
// ModelModule::from_flags.
inline absl::Status CheckFlag(bool ok, std::string_view flag, std::string_view requirement) {
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--", std::string(flag), ": ", std::string(requirement)));
}

// Where a module registers its services while the server is built. Not
// thread-safe; used only by MercatoServer::Start.
class ServiceRegistrar {
 public:
  // `gate` (may be null: every call admitted) must outlive the server.
  ServiceRegistrar(Runtime* runtime, Metrics* metrics, AsyncDispatcher* dispatcher,
                   const Gate* gate)
      : runtime_(runtime), metrics_(metrics), dispatcher_(dispatcher), gate_(gate) {}

  Runtime* runtime() const { return runtime_; }
  // Null when the server runs without metrics.
  Metrics* metrics() const { return metrics_; }
  const ModuleOptions& options() const { return runtime_->options().models; }

  // Keeps `service` (fully qualified name `full_name`) for the server's
  // life; it is registered with gRPC and answered by health. Each of its
  // methods needs `scope`; those with Scope::kAdmin are audited.
  template <class S>
  S* Serve(std::unique_ptr<S> service, std::string full_name, Scope scope) {
    S* raw = service.get();
    if constexpr (std::is_base_of_v<GatedMethods, S>) {
      const google::protobuf::ServiceDescriptor* d =
          google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(full_name);
      std::vector<std::unique_ptr<MethodGate>> gates;
      for (int i = 0; i < d->method_count(); ++i) {
        gates.push_back(GateFor(full_name, d->method(i)->name(), scope));
      }
      raw->SetGates(std::move(gates));
    }
    services_.push_back({std::move(service), std::move(full_name), scope});
    return raw;
  }

  // Serves `method` (a generated RequestX of the raw method `method_name`)
  // of `owner`, a service given to Serve, with `handler` on the completion
  // queues; its calls are counted in the metrics.
  template <class Owner, class Service, class Req, class Resp>
  void Unary(Owner* owner, RequestMethod<Service> method, std::string_view method_name,
             UnaryHandler<Req, Resp> handler) {
    const Served& served = Find(owner);
    CallObserver* observer =
        metrics_
            ? metrics_->ObserverFor(absl::StrCat("/", served.name, "/", std::string(method_name)))
            : nullptr;
    dispatcher_->Add(owner, method, std::move(handler),
                     GateFor(served.name, method_name, served.scope), observer);
  }

  struct Served {
    std::unique_ptr<grpc::Service> service;
    std::string name;
    Scope scope;
  };
  std::vector<Served>& services() { return services_; }

 private:
  // What `service` was given to Serve with.
  const Served& Find(const grpc::Service* service) const {
    for (const Served& s : services_) {
      if (s.service.get() == service) return s;
    }
    std::abort();  // REQUIRES: served
  }

  std::unique_ptr<MethodGate> GateFor(std::string_view service, std::string_view method,
                                      Scope scope) const {
    return std::make_unique<MethodGate>(
        gate_, scope, absl::StrCat("/", std::string(service), "/", std::string(method)),
        &runtime_->store());
  }

  Runtime* runtime_;
  Metrics* metrics_;
  AsyncDispatcher* dispatcher_;
  const Gate* gate_;
  std::vector<Served> services_;
};

// The models a module reads, made before it, in the order of its table
// line (server/model_registry.cc).
using ModelDependencies = std::vector<core::Model*>;

struct ModelModule {
  std::string_view name;
  // Reads the module's flags into `options`; INVALID_ARGUMENT naming the
  // flag when one is out of range.
  std::function<absl::Status(ModuleOptions& options)> from_flags;
  std::function<std::unique_ptr<core::Model>(const ModuleOptions&, const ModelDependencies&)>
      make;
  // Registers the module's services (may be empty: a model serving none).
  std::function<void(ServiceRegistrar&)> serve;
  // The models this one reads, from the table.
  std::vector<std::string_view> depends_on;
  // Calls its argument on each identifier of a customer that the model's
  // own records carry in their payload, which may change it (an erasure
  // replaces them; server/erasure.h). Empty: its records carry none.
  std::function<void(core::Event&, const std::function<void(std::string&)>&)> identifiers;
};

}  // namespace mercato::server

#endif  // MERCATO_SERVER_MODEL_MODULE_H_
