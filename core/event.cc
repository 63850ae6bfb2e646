#include "core/event.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/bytes.h"

namespace mercato::core {

const char* EventTypeName(EventType type) {
  switch (type) {
    case EventType::kView: return "view";
    case EventType::kClick: return "click";
    case EventType::kAddToCart: return "add_to_cart";
    case EventType::kRemoveFromCart: return "remove_from_cart";
    case EventType::kPurchase: return "purchase";
    case EventType::kRefund: return "refund";
    case EventType::kRating: return "rating";
    case EventType::kFraudLabel: return "fraud_label";
    case EventType::kItemUpdate: return "item_update";
    case EventType::kUserDelete: return "user_delete";
    case EventType::kOrderScored: return "order_scored";
    case EventType::kItemDelete: return "item_delete";
    case EventType::kRetrain: return "retrain";
    case EventType::kFitDone: return "fit_done";
    case EventType::kEraseKeys:
      return "erase_keys";
    case EventType::kRecommendationsServed:
      return "recommendations_served";
    case EventType::kUnspecified: break;
  }
  return "unspecified";
}

Event ItemUpdateEvent(const Item& item, int64_t timestamp_ms, std::string event_id) {
  Event e;
  e.type = EventType::kItemUpdate;
  e.event_id = std::move(event_id);
  e.item_id = item.item_id;
  e.timestamp_ms = timestamp_ms;
  e.unit_price = item.price;
  e.value = item.unit_cost;
  e.quantity = item.in_stock ? 1 : 0;
  if (!item.category_path.empty()) e.category = item.category_path.back();
  e.payload = absl::StrJoin(item.category_path, std::string(1, kCategoryPathSeparator));
  e.attributes.assign(item.attributes.begin(), item.attributes.end());
  return e;
}

std::vector<std::string> CategoryPath(const Event& event) {
  if (event.payload.empty()) {
    return event.category.empty() ? std::vector<std::string>{}
                                  : std::vector<std::string>{event.category};
  }
  return absl::StrSplit(event.payload, kCategoryPathSeparator);
}

// v2 appends the category, v3 the payload, v4 the recommendation id, v5 the
// attributes; older values are still read.
constexpr uint8_t kEventFormat = 5;

std::string EncodeEvent(const Event& e) {
  std::string out;
  out.reserve(64 + e.event_id.size() + e.user_id.size() + e.item_id.size());
  ByteWriter w(&out);
  w.U8(kEventFormat);
  w.U8(static_cast<uint8_t>(e.type));
  w.Str(e.event_id);
  w.Str(e.user_id);
  w.Str(e.item_id);
  w.Str(e.session_id);
  w.Str(e.order_id);
  w.I64(e.timestamp_ms);
  w.F64(e.quantity);
  w.F64(e.unit_price);
  w.F64(e.value);
  w.Str(e.category);
  w.Str(e.payload);
  w.Str(e.recommendation_id);
  w.Varint(e.attributes.size());
  for (const auto& [name, value] : e.attributes) {
    w.Str(name);
    w.Str(value);
  }
  return out;
}

absl::StatusOr<Event> DecodeEvent(std::string_view bytes) {
  ByteReader r(bytes);
  const uint8_t format = r.U8();
  if (format < 1 || format > kEventFormat) {
    return absl::DataLossError("event: unknown format version");
  }
  Event e;
  e.type = static_cast<EventType>(r.U8());
  e.event_id = r.Str();
  e.user_id = r.Str();
  e.item_id = r.Str();
  e.session_id = r.Str();
  e.order_id = r.Str();
  e.timestamp_ms = r.I64();
  e.quantity = r.F64();
  e.unit_price = r.F64();
  e.value = r.F64();
  if (format >= 2) e.category = r.Str();
  if (format >= 3) e.payload = r.Str();
  if (format >= 4) e.recommendation_id = r.Str();
  for (uint64_t n = format >= 5 ? r.Varint() : 0; n > 0 && r.status().ok(); --n) {
    std::string name = r.Str();
    e.attributes.emplace_back(std::move(name), r.Str());
  }
  if (!r.status().ok()) return r.status();
  if (!r.done()) return absl::DataLossError("event: trailing bytes");
  return e;
}

std::string ErasedName(uint64_t delete_sequence, size_t n) {
  return n == 0 ? absl::StrCat("erased-", delete_sequence)
                : absl::StrCat("erased-", delete_sequence, "-", n);
}

std::string EncodeErasedKeys(const std::vector<std::string>& keys) {
  std::string out;
  ByteWriter w(&out);
  w.Varint(keys.size());
  for (const std::string& k : keys) w.Str(k);
  return out;
}

std::vector<std::string> DecodeErasedKeys(std::string_view payload) {
  ByteReader r(payload);
  std::vector<std::string> keys;
  for (uint64_t n = r.Varint(); n > 0 && r.status().ok(); --n) keys.push_back(r.Str());
  if (!r.status().ok()) keys.clear();
  return keys;
}

}  // namespace mercato::core
