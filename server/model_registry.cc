#include "server/model_registry.h"

#include <map>
#include <string>

#include "absl/strings/str_cat.h"

namespace mercato::server {

// The table: one line a model, M(Name, the models it reads...). NameModule()
// is defined in the model's folder, models/<folder>/service/.
#define MERCATO_MODEL_TABLE(M) \
  M(Recommend)                 \
  M(Segments)                  \
  M(Pricing, "segments")       \
  M(Fraud)                     \
  M(Forecast, "elasticity")    \
  M(Experiments)

#define MERCATO_DECLARE_MODULE(Name, ...) ModelModule Name##Module();
MERCATO_MODEL_TABLE(MERCATO_DECLARE_MODULE)

const std::vector<ModelModule>& ModelModules() {
  static const std::vector<ModelModule> modules = [] {
    std::vector<ModelModule> out;
#define MERCATO_ADD_MODULE(Name, ...) \
  out.push_back(Name##Module());      \
  out.back().depends_on = {__VA_ARGS__};
    MERCATO_MODEL_TABLE(MERCATO_ADD_MODULE)
    return out;
  }();
  return modules;
}

absl::Status ModuleOptionsFromFlags(ModuleOptions& options) {
  for (const ModelModule& m : ModelModules()) {
    if (absl::Status s = m.from_flags(options); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<RegisteredModels> MakeModels(const ModuleOptions& options) {
  const std::vector<ModelModule>& modules = ModelModules();
  std::map<std::string_view, const ModelModule*> by_name;
  for (const ModelModule& m : modules) by_name[m.name] = &m;
  std::map<std::string_view, size_t> made;
  std::map<std::string_view, bool> visiting;
  RegisteredModels out;
  // Depth first over depends_on, in table order: a model comes after what
  // it reads.
  std::function<absl::Status(const ModelModule&)> make = [&](const ModelModule& m) {
    if (made.contains(m.name)) return absl::OkStatus();
    if (visiting[m.name]) {
      return absl::InternalError(
          absl::StrCat("model ", std::string(m.name), ": circular dependency"));
    }
    visiting[m.name] = true;
    ModelDependencies deps;
    std::vector<size_t> reads;
    for (std::string_view d : m.depends_on) {
      auto it = by_name.find(d);
      if (it == by_name.end()) {
        return absl::InternalError(
            absl::StrCat("model ", std::string(m.name), ": no model named ", std::string(d)));
      }
      if (absl::Status s = make(*it->second); !s.ok()) return s;
      reads.push_back(made.at(d));
      deps.push_back(out.models[reads.back()].get());
    }
    made[m.name] = out.models.size();
    out.models.push_back(m.make(options, deps));
    out.reads.push_back(std::move(reads));
    return absl::OkStatus();
  };
  for (const ModelModule& m : modules) {
    if (absl::Status s = make(m); !s.ok()) return s;
  }
  return out;
}

}  // namespace mercato::server
