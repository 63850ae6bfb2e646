#include "core/event.h"

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
    case EventType::kUnspecified: break;
  }
  return "unspecified";
}

}  // namespace mercato::core
