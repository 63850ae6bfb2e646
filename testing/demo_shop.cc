#include "testing/demo_shop.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace mercato::core {
namespace {

constexpr int64_t kDayMs = 24LL * 3600 * 1000;
const char* const kCountries[] = {"DE", "FR", "NL", "GB", "ES", "IT"};
const char* const kFarCountries[] = {"NG", "VN", "BR", "RU"};

// Per segment: chance of a visit per day while active, the part of the
// history it is active in (as fractions of the days), views per visit, and
// how eagerly it buys.
struct SegmentProfile {
  double visit;
  double active_from, active_to;
  double views_per_visit;
  double buy_boost;
};
constexpr SegmentProfile kProfiles[kNumDemoSegments] = {
    {0.40, 0.00, 1.00, 7, 2.0},  // champion: often, recently, buys much
    {0.15, 0.00, 1.00, 5, 1.2},  // loyal: steady
    {0.25, 0.75, 1.00, 5, 1.0},  // new: only in the last quarter
    {0.20, 0.00, 0.75, 5, 1.0},  // at risk: was active, stopped a while ago
    {0.06, 0.00, 0.50, 4, 0.6},  // hibernating: rare and long gone
};

// The weekly pattern of demand items, Monday first.
constexpr double kDemandWeekly[7] = {1.0, 0.9, 0.8, 1.0, 1.3, 1.6, 1.4};

}  // namespace

double DemoPlantedDemand(const DemoItem& item, int day, double price_factor) {
  const double smooth = std::max(0.0, item.level + item.trend * day) * kDemandWeekly[day % 7];
  switch (item.demand) {
    case DemoDemand::kNone:
      return 0;
    case DemoDemand::kSmooth:
      return smooth;
    case DemoDemand::kIntermittent:
      return item.level;
    case DemoDemand::kStops:
      return day < item.stop_day ? smooth : 0;
    case DemoDemand::kPriced:
      return smooth * std::pow(price_factor, item.elasticity);
  }
  return 0;
}

const char* DemoSegmentName(DemoSegment s) {
  static const char* const kNames[] = {"champions", "loyal", "new", "at_risk", "hibernating"};
  return kNames[static_cast<int>(s)];
}

DemoShop GenerateDemoShop(const DemoShopOptions& o) {
  std::mt19937_64 rng(o.seed);
  auto uniform = [&rng](double a, double b) {
    return std::uniform_real_distribution<double>(a, b)(rng);
  };
  auto pick = [&rng](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  DemoShop shop;

  for (int c = 0; c < o.categories; ++c) shop.categories.push_back(absl::StrCat("cat", c));
  // Items: a category elasticity plus an item deviation.
  std::vector<double> category_elasticity(o.categories);
  for (double& e : category_elasticity) e = uniform(-2.8, -0.8);
  std::vector<std::vector<int>> items_of(o.categories);
  for (int i = 0; i < o.items; ++i) {
    DemoItem it;
    it.category = i % o.categories;
    it.elasticity = std::min(-0.3, category_elasticity[it.category] + uniform(-0.4, 0.4));
    it.base_price = std::round(std::exp(uniform(std::log(3.0), std::log(200.0))) * 100) / 100;
    it.item.item_id = absl::StrCat("item", i);
    it.item.category_path = {"shop", shop.categories[it.category]};
    it.item.price = it.base_price;
    it.item.unit_cost = std::round(it.base_price * uniform(0.3, 0.6) * 100) / 100;
    it.item.in_stock = (i % 17) != 0;
    it.item.created_at_ms = o.start_ms;
    items_of[it.category].push_back(i);
    shop.items.push_back(std::move(it));
  }
  // Demand items, from a stream of their own.
  std::mt19937_64 demand_rng(o.seed ^ 0xde3a9d5eedULL);
  const auto demand_uniform = [&](double a, double b) {
    return std::uniform_real_distribution<double>(a, b)(demand_rng);
  };
  std::vector<int> demand_items;
  if (o.demand_items > 0) shop.categories.push_back("demand");
  for (int d = 0; d < o.demand_items; ++d) {
    DemoItem it;
    it.category = o.categories;
    it.demand = static_cast<DemoDemand>(1 + d % 4);
    it.level = it.demand == DemoDemand::kIntermittent ? demand_uniform(0.15, 0.5) : demand_uniform(4, 20);
    if (it.demand != DemoDemand::kIntermittent) it.trend = it.level * demand_uniform(-0.5, 1.0) / o.days;
    it.stop_day = static_cast<int>(o.days * demand_uniform(0.6, 0.8));
    it.elasticity = demand_uniform(-2.5, -1.0);
    it.base_price = std::round(demand_uniform(5, 50) * 100) / 100;
    it.item.item_id = absl::StrCat("demand", d);
    it.item.category_path = {"shop", "demand"};
    it.item.price = it.base_price;
    it.item.unit_cost = std::round(it.base_price * 0.5 * 100) / 100;
    it.item.in_stock = true;
    it.item.created_at_ms = o.start_ms;
    demand_items.push_back(static_cast<int>(shop.items.size()));
    shop.items.push_back(std::move(it));
  }
  // Users.
  for (int u = 0; u < o.users; ++u) {
    DemoUser user;
    user.user_id = absl::StrCat("user", u);
    user.segment = static_cast<DemoSegment>(u % kNumDemoSegments);
    const int first = static_cast<int>(pick(o.categories));
    user.favourite_categories = {first, (first + 1 + static_cast<int>(pick(o.categories - 1))) %
                                            o.categories};
    const int created_day = user.segment == DemoSegment::kNew
                                ? o.days * 3 / 4 - static_cast<int>(pick(7))
                                : 0;
    user.created_ms = o.start_ms + created_day * kDayMs - static_cast<int64_t>(pick(300)) * kDayMs *
                                                              (user.segment != DemoSegment::kNew);
    user.country = kCountries[pick(std::size(kCountries))];
    shop.users.push_back(std::move(user));
  }

  // The dearest tenth of the items, which high-value fraud goes for.
  std::vector<int> expensive(o.items);
  for (int i = 0; i < o.items; ++i) expensive[i] = i;
  std::sort(expensive.begin(), expensive.end(), [&](int a, int b) {
    return shop.items[a].base_price > shop.items[b].base_price;
  });
  expensive.resize(std::max(1, o.items / 10));

  uint64_t next_event = 0, next_order = 0;
  auto add_event = [&](EventType type, const std::string& user, const std::string& item,
                       int64_t ts) -> Event& {
    Event e;
    e.event_id = absl::StrCat("demo", o.seed, "-", next_event++);
    e.type = type;
    e.user_id = user;
    e.item_id = item;
    e.timestamp_ms = ts;
    shop.events.push_back(std::move(e));
    return shop.events.back();
  };
  std::vector<Event> labels;  // fraud labels, emitted a week after the order
  const auto label_fraud = [&](const DemoOrder& order) {
    Event label;
    label.event_id = absl::StrCat("demo", o.seed, "-label-", order.order_id);
    label.type = EventType::kFraudLabel;
    label.order_id = order.order_id;
    label.user_id = order.user_id;
    label.value = 1;
    label.timestamp_ms = order.timestamp_ms + 7 * kDayMs;
    labels.push_back(std::move(label));
  };
  // Attributes come from a stream of their own, so that the rest of the shop
  // is the same with them or without.
  std::mt19937_64 attribute_rng(o.seed ^ 0xa77e1b07e5ULL);
  const auto attribute_uniform = [&] {
    return std::uniform_real_distribution<double>(0, 1)(attribute_rng);
  };
  const int risky = o.categories - 1;
  absl::flat_hash_map<std::string, int> item_index;
  for (int i = 0; i < o.items; ++i) item_index[shop.items[i].item.item_id] = i;
  const auto PlantAttributeFraud = [&](DemoOrder& order) {
    const double u = attribute_uniform();
    const char* method = u < 0.6 ? "card" : u < 0.85 ? "paypal" : u < 0.96 ? "invoice" : "crypto";
    const double device_score =
        std::round((30 + 10 * std::normal_distribution<double>(0, 1)(attribute_rng)) * 10) / 10;
    static constexpr const char* kTiers[] = {"bronze", "silver", "gold"};
    const char* tier = kTiers[static_cast<size_t>(attribute_uniform() * 3) % 3];
    double risky_amount = 0;
    for (const FraudLine& line : order.lines) {
      const DemoItem& item = shop.items[item_index.at(line.item_id)];
      if (item.category == risky) risky_amount += line.quantity * line.unit_price;
    }
    order.attributes = {{"customer_tier", std::nullopt, tier},
                        {"device_score", device_score, ""},
                        {"payment_method", std::nullopt, method}};
    const double logit = DemoAttributeFraudLogit(std::string_view(method) == "crypto", device_score,
                                                 order.amount > 0 ? risky_amount / order.amount : 0);
    if (attribute_uniform() < 1 / (1 + std::exp(-logit))) {
      order.fraud = DemoFraud::kAttributes;
      label_fraud(order);
    }
  };
  std::vector<double> price_factor(o.items, 1.0);
  for (int day = 0; day < o.days; ++day) {
    if (day % 7 == 0) {
      static constexpr double kLevels[] = {0.8, 0.9, 1.0, 1.1, 1.25};
      for (double& f : price_factor) f = kLevels[pick(std::size(kLevels))];
    }
    const size_t day_begin = shop.events.size();
    const size_t orders_begin = shop.orders.size();
    const int64_t day_ms = o.start_ms + day * kDayMs;
    for (const DemoUser& user : shop.users) {
      const SegmentProfile& p = kProfiles[static_cast<int>(user.segment)];
      if (day_ms < user.created_ms) continue;
      if (day < p.active_from * o.days || day >= p.active_to * o.days) continue;
      if (uniform(0, 1) >= p.visit) continue;
      int64_t ts = day_ms + static_cast<int64_t>(uniform(0, kDayMs - 3600000));
      const std::string session = absl::StrCat(user.user_id, "-d", day);
      DemoOrder order;
      const int views = 1 + static_cast<int>(pick(static_cast<size_t>(p.views_per_visit * 2)));
      for (int v = 0; v < views; ++v) {
        // 85% of browsing within the user's tastes, mostly the first.
        int category;
        const double r = uniform(0, 1);
        if (r < 0.6) category = user.favourite_categories[0];
        else if (r < 0.85) category = user.favourite_categories[1];
        else category = static_cast<int>(pick(o.categories));
        const int item = items_of[category][pick(items_of[category].size())];
        const DemoItem& it = shop.items[item];
        ts += 5000 + static_cast<int64_t>(pick(60000));
        add_event(EventType::kView, user.user_id, it.item.item_id, ts).session_id = session;
        // Demand follows price: the chance to buy scales with factor^elasticity.
        const double buy = std::min(0.9, 0.12 * p.buy_boost * std::pow(price_factor[item], it.elasticity));
        if (uniform(0, 1) < buy * 1.6) {
          ts += 2000;
          add_event(EventType::kAddToCart, user.user_id, it.item.item_id, ts).session_id = session;
          if (uniform(0, 1) < 0.625) {
            const double price = std::round(it.base_price * price_factor[item] * 100) / 100;
            const double qty = 1 + static_cast<double>(pick(2));
            if (order.order_id.empty()) order.order_id = absl::StrCat("order", o.seed, "-", next_order++);
            Event& e = add_event(EventType::kPurchase, user.user_id, it.item.item_id, ts + 1000);
            e.session_id = session;
            e.order_id = order.order_id;
            e.quantity = qty;
            e.unit_price = price;
            order.amount += price * qty;
            order.lines.push_back({it.item.item_id, qty, price});
            order.timestamp_ms = ts + 1000;
          }
        }
      }
      if (!order.order_id.empty()) {
        order.user_id = user.user_id;
        order.payment_fingerprint = absl::StrCat("card-", user.user_id);
        order.billing_country = order.shipping_country = order.ip_country = user.country;
        order.device_id = absl::StrCat("dev-", user.user_id);
        order.shipping_address_hash = absl::StrCat("addr-", user.user_id);
        order.account_created_ms = user.created_ms;
        if (o.fraud_in_attributes) PlantAttributeFraud(order);
        shop.orders.push_back(std::move(order));
      }
    }
    // Planted fraud, a few cases a day.
    const int frauds = o.fraud_in_attributes ? 0 : 1 + static_cast<int>(pick(3));
    for (int f = 0; f < frauds; ++f) {
      const bool card_testing = uniform(0, 1) < 0.4;
      const std::string card = absl::StrCat("stolen-", day, "-", f);
      const int burst = card_testing ? 5 + static_cast<int>(pick(10)) : 1;
      int64_t ts = day_ms + static_cast<int64_t>(uniform(0, kDayMs - 7200000));
      for (int b = 0; b < burst; ++b) {
        DemoOrder order;
        order.order_id = absl::StrCat("order", o.seed, "-", next_order++);
        order.user_id = absl::StrCat("fraudster-", day, "-", f, card_testing ? "" : "-x", b);
        order.account_created_ms = ts - static_cast<int64_t>(pick(3600000));
        order.timestamp_ms = ts;
        order.payment_fingerprint = card;
        order.device_id = absl::StrCat("fdev-", day, "-", f);
        order.shipping_address_hash = absl::StrCat("faddr-", day, "-", f, "-", b);
        // Card testers buy small gift cards; the others buy expensive items
        // at their current price, in quantity.
        std::string item_id;
        double price, qty;
        if (card_testing) {
          order.fraud = DemoFraud::kCardTesting;
          item_id = "giftcard";
          price = std::round(uniform(0.5, 3.0) * 100) / 100;
          qty = 1;
          order.billing_country = order.shipping_country = order.ip_country =
              kCountries[pick(std::size(kCountries))];
        } else {
          order.fraud = DemoFraud::kNewAccountMismatch;
          const int i = expensive[pick(expensive.size())];
          item_id = shop.items[i].item.item_id;
          price = std::round(shop.items[i].base_price * price_factor[i] * 100) / 100;
          qty = std::ceil(uniform(400, 2500) / price);
          order.billing_country = kCountries[pick(std::size(kCountries))];
          order.shipping_country = kFarCountries[pick(std::size(kFarCountries))];
          order.ip_country = kFarCountries[pick(std::size(kFarCountries))];
        }
        order.amount = price * qty;
        order.lines.push_back({item_id, qty, price});
        Event& e = add_event(EventType::kPurchase, order.user_id, item_id, ts);
        e.order_id = order.order_id;
        e.quantity = qty;
        e.unit_price = price;
        label_fraud(order);
        shop.orders.push_back(std::move(order));
        ts += 20000 + static_cast<int64_t>(pick(60000));
      }
    }
    // Planted demand: a day's units as one purchase by a random user.
    for (int i : demand_items) {
      const DemoItem& it = shop.items[i];
      static constexpr double kPriceLevels[] = {0.8, 1.0, 1.2};
      const double factor = it.demand == DemoDemand::kPriced ? kPriceLevels[(day / 7) % 3] : 1.0;
      const double mean = DemoPlantedDemand(it, day, factor);
      const int units = mean > 0 ? std::poisson_distribution<int>(mean)(demand_rng) : 0;
      if (units == 0) continue;
      const DemoUser& user = shop.users[static_cast<size_t>(demand_uniform(0, 1) * shop.users.size())];
      const int64_t ts = day_ms + 8 * 3600000 + static_cast<int64_t>(demand_uniform(0, 12 * 3600000));
      // Ids of their own, so that the shop's other events keep theirs.
      Event e;
      e.event_id = absl::StrCat("demo", o.seed, "-demand-", day, "-", i);
      e.type = EventType::kPurchase;
      e.user_id = user.user_id;
      e.item_id = it.item.item_id;
      e.timestamp_ms = ts;
      e.order_id = absl::StrCat("dorder", o.seed, "-", day, "-", i);
      e.quantity = units;
      e.unit_price = std::round(it.base_price * factor * 100) / 100;
      shop.events.push_back(std::move(e));
    }
    // Labels whose time has come join this day's events.
    auto due = std::stable_partition(labels.begin(), labels.end(), [&](const Event& e) {
      return e.timestamp_ms >= day_ms + kDayMs;
    });
    for (auto it = due; it != labels.end(); ++it) shop.events.push_back(std::move(*it));
    labels.erase(due, labels.end());
    auto by_time = [](const auto& a, const auto& b) { return a.timestamp_ms < b.timestamp_ms; };
    std::stable_sort(shop.events.begin() + day_begin, shop.events.end(), by_time);
    std::stable_sort(shop.orders.begin() + orders_begin, shop.orders.end(), by_time);
  }
  return shop;
}

std::vector<Event> PlantedTasteEvents(int items, int tastes, int64_t end_ms, uint64_t seed) {
  const uint64_t users = std::max(1, items / 4);
  const uint64_t per_taste = std::max<uint64_t>(1, users / tastes);
  uint64_t rng = seed;
  const auto next = [&rng] {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return rng >> 33;
  };
  std::vector<Event> events;
  events.reserve(2 * static_cast<size_t>(items));
  for (int i = 0; i < items; ++i) {
    const uint64_t taste = static_cast<uint64_t>(i % tastes);
    for (EventType type : {EventType::kView, EventType::kPurchase}) {
      Event e;
      e.type = type;
      e.event_id = absl::StrCat("cat-", i, "-", static_cast<int>(type));
      e.user_id = absl::StrCat("cu", taste + tastes * (next() % per_taste));
      e.item_id = absl::StrCat("ci", i);
      e.timestamp_ms = end_ms - 2 * static_cast<int64_t>(items) + 2 * i + (type == EventType::kView ? 0 : 1);
      if (type == EventType::kPurchase) {
        e.quantity = 1;
        e.unit_price = 10;
        e.order_id = absl::StrCat("co-", i);
      }
      events.push_back(std::move(e));
    }
  }
  return events;
}

FraudOrder ToFraudOrder(const DemoOrder& d) {
  FraudOrder o;
  o.order_id = d.order_id;
  o.user_id = d.user_id;
  o.payment_fingerprint = d.payment_fingerprint;
  o.device_id = d.device_id;
  o.shipping_address_hash = d.shipping_address_hash;
  o.billing_country = d.billing_country;
  o.shipping_country = d.shipping_country;
  o.ip_country = d.ip_country;
  o.currency = d.currency;
  o.amount = d.amount;
  o.account_created_ms = d.account_created_ms;
  o.timestamp_ms = d.timestamp_ms;
  o.attributes = d.attributes;
  o.lines = d.lines;
  return o;
}

double DemoAttributeFraudLogit(bool crypto, double device_score, double risky_share) {
  return -6.5 + 4.0 * crypto + 2.0 * (device_score - 30) / 10 + 3.5 * (risky_share > 0.5);
}

std::vector<Event> DemoShopLog(const DemoShop& shop, int late_every) {
  std::vector<Event> log;
  const int64_t t0 = shop.events.front().timestamp_ms;
  for (const DemoItem& it : shop.items) {
    log.push_back(ItemUpdateEvent(it.item, t0, absl::StrCat("item/", it.item.item_id)));
  }
  FraudModel scorer;
  const auto view = std::dynamic_pointer_cast<const FraudView>(scorer.Publish());
  size_t next_order = 0;
  for (const Event& e : shop.events) {
    while (next_order < shop.orders.size() &&
           shop.orders[next_order].timestamp_ms <= e.timestamp_ms) {
      FraudOrder order = ToFraudOrder(shop.orders[next_order++]);
      if (late_every > 0 && next_order % late_every == 0) order.timestamp_ms -= 3 * 3600 * 1000;
      log.push_back(FraudView::RecordEvent(order, view->Score(order)));
    }
    log.push_back(e);
  }
  return log;
}

}  // namespace mercato::core
