#include "core/event.h"

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

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
  return e;
}

std::vector<std::string> CategoryPath(const Event& event) {
  if (event.payload.empty()) {
    return event.category.empty() ? std::vector<std::string>{}
                                  : std::vector<std::string>{event.category};
  }
  return absl::StrSplit(event.payload, kCategoryPathSeparator);
}

}  // namespace mercato::core
