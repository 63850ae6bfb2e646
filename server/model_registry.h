// The table of model modules (server/model_module.h): the runtime makes
// every model from here, in the order their declared dependencies give; the
// server serves their services; mercato-server reads their flags; the
// determinism test runs every model listed here.
#ifndef MERCATO_SERVER_MODEL_REGISTRY_H_
#define MERCATO_SERVER_MODEL_REGISTRY_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/model.h"
#include "server/model_module.h"

namespace mercato::server {

// Every module, in table order, with its depends_on from the table.
const std::vector<ModelModule>& ModelModules();

struct RegisteredModels {
  // Each after the ones it depends on.
  std::vector<std::unique_ptr<core::Model>> models;
  // reads[i]: the indexes of the models model i depends on (Learner).
  std::vector<std::vector<size_t>> reads;
};

// Every registered model, made from `options`. INTERNAL for an unknown or
// circular dependency.
absl::StatusOr<RegisteredModels> MakeModels(const ModuleOptions& options);

// Reads every module's flags into `options`; the first error, naming its
// flag.
absl::Status ModuleOptionsFromFlags(ModuleOptions& options);

}  // namespace mercato::server

#endif  // MERCATO_SERVER_MODEL_REGISTRY_H_
