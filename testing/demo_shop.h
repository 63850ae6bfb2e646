// A seeded synthetic shop with planted truth, for tests, benchmarks and the
// demo: users with segments and category tastes, items with prices and
// demand elasticities, and orders with fraud patterns. Same options, same
// shop, byte for byte.
#ifndef MERCATO_TESTING_DEMO_SHOP_H_
#define MERCATO_TESTING_DEMO_SHOP_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/event.h"
#include "models/fraud/fraud_model.h"

namespace mercato::core {

struct DemoShopOptions {
  uint64_t seed = 42;
  int users = 2000;
  int items = 400;
  int categories = 8;
  // Days of history; prices change weekly.
  int days = 120;
  // Event time of day 0, ms since the epoch (2024-01-01).
  int64_t start_ms = 1704067200000;
  // Orders carry attributes (payment_method, device_score, customer_tier)
  // and fraud depends on them and on the basket alone: fraud is planted on
  // ordinary customers' orders, with a chance that grows with a crypto
  // payment, a high device score and a basket mostly of the last category;
  // nothing the built-in features see tells it. The
  // rest of the shop stays as without.
  bool fraud_in_attributes = false;
  // Items with planted daily demand, bought by random users besides the
  // shop's own sales, in a category of their own ("demand"): in turn smooth
  // (a weekly pattern times a level with a linear trend), intermittent
  // (Poisson at under one a day), stopping (smooth until a day, then none)
  // and priced (smooth times the weekly price factor^elasticity). From a
  // random stream of their own: the rest of the shop stays as without.
  int demand_items = 0;
};

enum class DemoDemand : int { kNone = 0, kSmooth, kIntermittent, kStops, kPriced };

// With fraud_in_attributes: the log-odds of fraud of an order.
double DemoAttributeFraudLogit(bool crypto, double device_score, double risky_share);

// Planted customer segments, in a fixed order.
enum class DemoSegment : int { kChampion = 0, kLoyal, kNew, kAtRisk, kHibernating };
inline constexpr int kNumDemoSegments = 5;
const char* DemoSegmentName(DemoSegment s);

struct DemoUser {
  std::string user_id;
  DemoSegment segment;
  // Categories this user mostly browses and buys, most liked first.
  std::vector<int> favourite_categories;
  int64_t created_ms = 0;
  std::string country;
};

struct DemoItem {
  Item item;
  int category = 0;
  // Planted constant price elasticity of demand (< 0).
  double elasticity = 0;
  double base_price = 0;
  // A demand item's planted demand: units a day at day 0 (at the base
  // price), their change a day, and the day a stopping item stops.
  DemoDemand demand = DemoDemand::kNone;
  double level = 0, trend = 0;
  int stop_day = 0;
};

// The expected units of a demand item on `day` at `price_factor` times its
// base price; the weekday pattern is Monday first, day 0 a Monday.
double DemoPlantedDemand(const DemoItem& item, int day, double price_factor);

enum class DemoFraud : int { kNone = 0, kNewAccountMismatch, kCardTesting, kAttributes };

struct DemoOrder {
  std::string order_id;
  std::string user_id;
  double amount = 0;
  std::string currency = "EUR";
  std::string payment_fingerprint;
  std::string billing_country, shipping_country, ip_country;
  std::string device_id;
  std::string shipping_address_hash;
  int64_t account_created_ms = 0;
  int64_t timestamp_ms = 0;
  std::vector<FraudLine> lines;
  // Sorted by name; only with fraud_in_attributes.
  std::vector<FraudAttribute> attributes;
  DemoFraud fraud = DemoFraud::kNone;
};

struct DemoShop {
  std::vector<std::string> categories;
  std::vector<DemoUser> users;
  std::vector<DemoItem> items;
  // Views, carts, purchases and fraud labels, in time order, with unique
  // deterministic event ids. A purchase carries its order id.
  std::vector<Event> events;
  // Every order, in time order; fraud ones also get a FRAUD_LABEL event a
  // week later.
  std::vector<DemoOrder> orders;
};

DemoShop GenerateDemoShop(const DemoShopOptions& options);

// The order as Fraud.Score would receive it.
FraudOrder ToFraudOrder(const DemoOrder& order);

// The shop's log as the server writes it: an upsert of every item at the
// first event's time, then the shopper events with each order's
// ORDER_SCORED record (scored by an untrained fraud model) before the first
// event at or after it; every `late_every`-th record (0 = none) is stamped
// three hours early, as a scored order logged late is.
std::vector<Event> DemoShopLog(const DemoShop& shop, int late_every = 0);

// A large catalogue with planted tastes, for retrieval benchmarks: item i
// belongs to taste i % tastes and gets a view and a purchase (order
// "co-<i>") from two random users of that taste, "cu<n>" with n % tastes the
// taste; there are items / 4 users. Events end at `end_ms`, 1 ms apart.
std::vector<Event> PlantedTasteEvents(int items, int tastes, int64_t end_ms, uint64_t seed = 42);

}  // namespace mercato::core

#endif  // MERCATO_TESTING_DEMO_SHOP_H_
