#include "server/model_registry.h"

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "models/pricing/elasticity_model.h"
#include "models/fraud/fraud_model.h"
#include "models/recommend/recommend_model.h"
#include "models/segments/segment_model.h"
#include "server/runtime.h"

namespace mercato::server {

using ModelPtr = std::unique_ptr<core::Model>;

const std::vector<ModelModule>& ModelModules() {
  using core::kElasticityModelName, core::kFraudModelName, core::kRecommendModelName,
      core::kSegmentModelName;
  using O = RuntimeOptions;
  using D = ModelDependencies;
  static const std::vector<ModelModule> modules = {
      {kElasticityModelName, {kSegmentModelName}, [](const O& o, const D& d) -> ModelPtr {
         return std::make_unique<core::ElasticityModel>(
             o.elasticity, dynamic_cast<core::SegmentModel*>(d[0]));
       }},
      {kFraudModelName, {}, [](const O& o, const D&) -> ModelPtr {
         return std::make_unique<core::FraudModel>(o.fraud);
       }},
      {kRecommendModelName, {}, [](const O& o, const D&) -> ModelPtr {
         return std::make_unique<core::RecommendModel>(o.recommend);
       }},
      {kSegmentModelName, {}, [](const O& o, const D&) -> ModelPtr {
         return std::make_unique<core::SegmentModel>(o.segments);
       }},
  };
  return modules;
}

absl::StatusOr<RegisteredModels> MakeModels(const RuntimeOptions& options) {
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
      return absl::InternalError(absl::StrCat("model ", std::string(m.name), ": circular dependency"));
    }
    visiting[m.name] = true;
    ModelDependencies deps;
    std::vector<size_t> reads;
    for (std::string_view d : m.depends_on) {
      auto it = by_name.find(d);
      if (it == by_name.end()) {
        return absl::InternalError(absl::StrCat("model ", std::string(m.name), ": no model named ", std::string(d)));
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
