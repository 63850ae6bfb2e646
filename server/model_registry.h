// The table of model modules: each model's name, the models it reads, and
// how to make it from the service's options. The runtime makes every model
// from here, in the order the declared dependencies give, and the
// determinism test runs every model listed here.
#ifndef MERCATO_SERVER_MODEL_REGISTRY_H_
#define MERCATO_SERVER_MODEL_REGISTRY_H_

#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model.h"

namespace mercato::server {

struct RuntimeOptions;

// The models a module reads, made before it, in the order of depends_on.
using ModelDependencies = std::vector<core::Model*>;

struct ModelModule {
  std::string_view name;
  std::vector<std::string_view> depends_on;
  std::function<std::unique_ptr<core::Model>(const RuntimeOptions&, const ModelDependencies&)>
      make;
};

// Every module, one line each (server/model_registry.cc).
const std::vector<ModelModule>& ModelModules();

struct RegisteredModels {
  // Each after the ones it depends on.
  std::vector<std::unique_ptr<core::Model>> models;
  // reads[i]: the indexes of the models model i depends on (Learner).
  std::vector<std::vector<size_t>> reads;
};

// Every registered model. INTERNAL for an unknown or circular dependency.
absl::StatusOr<RegisteredModels> MakeModels(const RuntimeOptions& options);

}  // namespace mercato::server

#endif  // MERCATO_SERVER_MODEL_REGISTRY_H_
