// Core event and catalogue types: what flows from the log into the models.
// Plain data; no validation here (the server validates at the edge).
#ifndef MERCATO_CORE_EVENT_H_
#define MERCATO_CORE_EVENT_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace mercato::core {

// Values match mercato.v1.EventType.
enum class EventType : uint8_t {
  kUnspecified = 0,
  kView = 1,
  kClick = 2,
  kAddToCart = 3,
  kRemoveFromCart = 4,
  kPurchase = 5,
  kRefund = 6,
  kRating = 7,
  kFraudLabel = 8,
  // Written by the catalogue on every upsert, so that the models see list
  // prices, costs, stock and categories in log order.
  kItemUpdate = 9,
  // Written by Admin.DeleteUser: every model forgets the user from here on.
  kUserDelete = 10,
  // Written by Fraud.Score: the order and its scoring-time features, which
  // the fraud model keeps until the order's label arrives.
  kOrderScored = 11,
  // Written by Catalog.DeleteItem: the item is recommended no more, until an
  // ITEM_UPDATE brings it back.
  kItemDelete = 12,
  // Written by Admin.Retrain: the model named in `payload` (every model that
  // has fits when empty) starts a background fit at this position.
  kRetrain = 13,
  // Written by the learner when a model's background fit has finished: the
  // fit of the model named in `payload` that started at sequence `value` is
  // adopted at this position (core/background_fit.h).
  kFitDone = 14,
  // Written by the server's eraser (server/erasure.h) to complete the
  // USER_DELETE at sequence `value`: the identifiers in `payload`
  // (EncodeErasedKeys), which that customer's events carried, are renamed
  // to their placeholders in every model.
  kEraseKeys = 15,
  // Written by the server about every second while Recommend answers: the
  // answers given since the last such record, per experiment arm and
  // source (`payload`, core/recommendation_ref.h).
  kRecommendationsServed = 16,
};
// The behaviour types, kUnspecified..kFraudLabel: what shoppers do.
inline constexpr int kNumEventTypes = 9;

const char* EventTypeName(EventType type);

// Whether an event's timestamp is shop time: what shoppers do, an order
// scored at checkout, a fraud label. The server's own records (catalogue
// changes, erasures, retrain requests) carry the wall clock and leave shop
// time where it is.
constexpr bool CarriesShopTime(EventType type) {
  return (type > EventType::kUnspecified && type <= EventType::kFraudLabel) ||
         type == EventType::kOrderScored;
}

struct Event {
  // Log position, assigned when the event becomes durable; 0 before that.
  uint64_t sequence = 0;
  EventType type = EventType::kUnspecified;
  std::string event_id;
  std::string user_id;
  std::string item_id;
  std::string session_id;
  std::string order_id;
  int64_t timestamp_ms = 0;
  double quantity = 0;
  double unit_price = 0;
  double value = 0;
  // ITEM_UPDATE only: the item's leaf category.
  std::string category;
  // ORDER_SCORED: the fraud model's record of the order. ITEM_UPDATE: the
  // whole category path, root first, joined by kCategoryPathSeparator.
  std::string payload;
  // The Recommend answer that led to this event, as it gave it (optional;
  // core/recommendation_ref.h).
  std::string recommendation_id;
  // ITEM_UPDATE only: the item's attributes, sorted by name.
  std::vector<std::pair<std::string, std::string>> attributes;
  // Shop time once this event is applied: the latest timestamp of the events
  // up to it that CarriesShopTime. Set by the learner, the one place that
  // decides it; not stored in the log.
  int64_t shop_time_ms = 0;

  bool operator==(const Event&) const = default;
};

struct Item {
  std::string item_id;
  std::vector<std::string> category_path;
  double price = 0;
  double unit_cost = 0;
  bool in_stock = true;
  int64_t created_at_ms = 0;
  std::map<std::string, std::string> attributes;

  bool operator==(const Item&) const = default;
};

inline constexpr char kCategoryPathSeparator = '\x1f';

// The category path of an ITEM_UPDATE event, root first (empty when none).
std::vector<std::string> CategoryPath(const Event& event);

// The ITEM_UPDATE event for `item`: list price in unit_price, unit cost in
// value, quantity 1 when in stock (0 when not), the leaf category, the path.
Event ItemUpdateEvent(const Item& item, int64_t timestamp_ms, std::string event_id);

// What an erasure leaves in place of a customer's id, and of the n-th
// (from 1) other identifier their events carried: "erased-<delete
// sequence>" and "erased-<delete sequence>-<n>".
std::string ErasedName(uint64_t delete_sequence, size_t n = 0);
// ERASE_KEYS payload: the identifiers, in order (the n-th is renamed to
// ErasedName(value, n)).
std::string EncodeErasedKeys(const std::vector<std::string>& keys);
std::vector<std::string> DecodeErasedKeys(std::string_view payload);

// An event as bytes, as the log stores it (format version byte, then
// core/bytes.h fields):
//   v1: type u8, event_id, user_id, item_id, session_id, order_id (str),
//       timestamp_ms i64, quantity f64, unit_price f64, value f64
//   v2: v1 followed by category str
//   v3: v2 followed by payload str
//   v4: v3 followed by recommendation_id str
// The sequence is not part of it.
std::string EncodeEvent(const Event& event);
absl::StatusOr<Event> DecodeEvent(std::string_view bytes);

}  // namespace mercato::core

#endif  // MERCATO_CORE_EVENT_H_
