// A test double of a model: who did what to which item, counted per event
// type. The learner's tests run it; the server does not.
#ifndef MERCATO_TESTING_ACTIVITY_MODEL_H_
#define MERCATO_TESTING_ACTIVITY_MODEL_H_

#include <array>
#include <memory>
#include <optional>
#include <string>

#include "core/id_dictionary.h"
#include "core/model.h"
#include "core/row_block_matrix.h"

namespace mercato::core {

inline constexpr char kActivityModelName[] = "activity";

using TypeCounts = std::array<double, kNumEventTypes>;

class ActivityView final : public ModelView {
 public:
  std::string Encode() const override;
  std::vector<std::pair<std::string, uint64_t>> Counts() const override;
  // Events per type of a user or item; nullopt when never seen.
  std::optional<TypeCounts> UserCounts(std::string_view user_id) const;
  std::optional<TypeCounts> ItemCounts(std::string_view item_id) const;
  const TypeCounts& totals() const { return totals_; }

 private:
  friend class ActivityModel;
  IdDictionaryView users_, items_;
  RowBlockView<double> user_counts_, item_counts_;
  TypeCounts totals_{};
};

class ActivityModel final : public Model {
 public:
  ActivityModel();
  std::string_view name() const override { return kActivityModelName; }
  bool Apply(const Event& event) override;
  std::shared_ptr<const ModelView> Publish() override;
  absl::Status Decode(std::string_view bytes) override;

 private:
  IdDictionary users_, items_;
  RowBlockMatrix<double> user_counts_, item_counts_;
  TypeCounts totals_{};
};

}  // namespace mercato::core

#endif  // MERCATO_TESTING_ACTIVITY_MODEL_H_
