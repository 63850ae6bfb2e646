#include "testing/activity_model.h"

#include "core/bytes.h"
#include "core/table_codec.h"

namespace mercato::core {
namespace {

constexpr uint8_t kFormatVersion = 1;

void Add(IdDictionary& dict, RowBlockMatrix<double>& counts, std::string_view id, int type,
         double n) {
  if (id.empty()) return;
  const uint32_t row = dict.FindOrAdd(id);
  counts.Resize(dict.size());
  counts.MutableRow(row)[type] += n;
}

std::optional<TypeCounts> Lookup(const IdDictionaryView& dict, const RowBlockView<double>& counts,
                                 std::string_view id) {
  auto row = dict.Find(id);
  if (!row) return std::nullopt;
  TypeCounts out;
  const double* r = counts.Row(*row);
  std::copy(r, r + kNumEventTypes, out.begin());
  return out;
}

}  // namespace

ActivityModel::ActivityModel() : user_counts_(kNumEventTypes), item_counts_(kNumEventTypes) {}

bool ActivityModel::Apply(const Event& event) {
  const int type = static_cast<int>(event.type);
  if (type >= kNumEventTypes) return false;  // catalogue updates are not activity
  Add(users_, user_counts_, event.user_id, type, 1);
  Add(items_, item_counts_, event.item_id, type, 1);
  totals_[type] += 1;
  return true;
}

std::shared_ptr<const ModelView> ActivityModel::Publish() {
  auto view = std::make_shared<ActivityView>();
  view->users_ = users_.Freeze();
  view->items_ = items_.Freeze();
  view->user_counts_ = user_counts_.Freeze();
  view->item_counts_ = item_counts_.Freeze();
  view->totals_ = totals_;
  return view;
}

std::string ActivityView::Encode() const {
  std::string out;
  ByteWriter w(&out);
  w.U8(kFormatVersion);
  w.Raw(totals_.data(), sizeof(double) * kNumEventTypes);
  EncodeTable(w, users_, &user_counts_);
  EncodeTable(w, items_, &item_counts_);
  return out;
}

absl::Status ActivityModel::Decode(std::string_view bytes) {
  ByteReader r(bytes);
  if (const uint8_t v = r.U8(); v != kFormatVersion) {
    return absl::DataLossError("activity: unknown checkpoint format version");
  }
  ActivityModel fresh;
  r.Raw(fresh.totals_.data(), sizeof(double) * kNumEventTypes);
  DecodeTable(r, fresh.users_, &fresh.user_counts_);
  DecodeTable(r, fresh.items_, &fresh.item_counts_);
  if (!r.status().ok()) return r.status();
  if (!r.done()) return absl::DataLossError("activity: trailing bytes in checkpoint");
  *this = std::move(fresh);
  return absl::OkStatus();
}

std::vector<std::pair<std::string, uint64_t>> ActivityView::Counts() const {
  double events = 0;
  for (double t : totals_) events += t;
  return {{"users", users_.size()},
          {"items", items_.size()},
          {"events", static_cast<uint64_t>(events)}};
}

std::optional<TypeCounts> ActivityView::UserCounts(std::string_view user_id) const {
  return Lookup(users_, user_counts_, user_id);
}

std::optional<TypeCounts> ActivityView::ItemCounts(std::string_view item_id) const {
  return Lookup(items_, item_counts_, item_id);
}

}  // namespace mercato::core
