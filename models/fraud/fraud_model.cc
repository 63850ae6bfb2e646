#include "models/fraud/fraud_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "core/bytes.h"
#include "core/log.h"
#include "core/stable_hash.h"
#include "core/table_codec.h"

namespace mercato::core {

const char* const kFraudFeatureNames[kNumDenseFraudFeatures] = {
    "base rate",
    "order amount (log)",
    "amount against the customer's usual (z-score)",
    "account age in days (log)",
    "account younger than a day",
    "customer's orders in the last hour",
    "customer's orders in the last day",
    "other cards the customer used in the last day",
    "orders on this card in the last day",
    "orders on this card in the last hour",
    "orders from this device in the last day",
    "billing and shipping countries differ",
    "billing and IP countries differ",
    "shipping and IP countries differ",
    "device new for this customer",
    "shipping address new for this customer",
    "first order of this customer",
    "placed between midnight and 6:00 UTC",
    "units in the basket (log)",
    "distinct items in the basket (log)",
    "dearest unit price in the basket (log)",
    "basket holds an item the customer bought before",
};

namespace {

// 3: hashed and numeric attribute features, the basket, the catalogue's
// top-level categories and the calibration window; 4: the same with stable
// hashes (core/stable_hash.h; earlier ones were seeded per process) and the
// labels that came before their order's record.
// Earlier formats are rebuilt from the log.
constexpr uint8_t kFormatVersion = 4;
// Labels held for orders whose record has not come yet.
constexpr size_t kMaxEarlyLabels = 10000;
// ORDER_SCORED payloads: 1 (18 dense features, 4 cross buckets), 2 (this
// layout: dense, probability, hashed and numeric features).
constexpr uint8_t kPayloadVersion = 2;
constexpr int kDenseV1 = 18, kCrossesV1 = 4, kBucketsV1 = 4096;
constexpr int kRing = 16;        // order times kept per customer, card and device
constexpr int kKnown = 8;        // devices and addresses remembered per customer
constexpr int kKnownItems = 32;  // items remembered per customer
constexpr int kKeyRowsPerBlock = 32;
// Category path levels the basket is shared out over (a catalogue's top
// level is often one root shared by every item).
constexpr int kCategoryLevels = 2;
constexpr int64_t kHourMs = 3600LL * 1000, kDayMs = 24 * kHourMs;
constexpr double kMaxZ = 5;
const char* const kCrossNames[] = {"shipping x IP country", "billing country x first order",
                                   "currency x amount band", "IP country"};

// Shipped prior weights, in log-odds per unit of each dense feature: a fraud
// rate near 2% for an established customer, and the classic signals. The
// basket's have none: what they mean depends on the shop.
constexpr std::array<double, kNumDenseFraudFeatures> kPrior = {
    -4.0, 0.2, 0.3, -0.2, 1.5, 0.3, 0.1, 0.8, 0.4, 0.6, 0.2,
    1.0,  1.0, 0.5, 0.3,  0.3, 0.5, 0.2, 0,   0,   0,   0};

// Customer rows.
enum UserCol : int {
  kUserOrders,
  kAmountMean,
  kAmountM2,
  kUserRingPos,
  kUserTimes,                         // kRing order times
  kUserCards = kUserTimes + kRing,    // kRing card hashes, parallel to the times
  kDevices = kUserCards + kRing,      // kKnown device hashes
  kAddresses = kDevices + kKnown,     // kKnown address hashes
  kBoughtPos = kAddresses + kKnown,   // next slot of kBought
  kBought,                            // kKnownItems item hashes
  kUserCols = kBought + kKnownItems
};
// Card and device rows: a ring of order times.
enum KeyCol : int { kKeyRingPos, kKeyTimes, kKeyCols = kKeyTimes + kRing };
// Order rows: the scoring-time dense features and probability, the order
// time and its state.
enum OrderCol : int {
  kDense,
  kScoredProbability = kDense + kNumDenseFraudFeatures,
  kOrderTime,
  kOrderState,  // one of the order states below
  kOrderCols
};
// Numeric attribute rows: Welford's count, mean and M2.
enum StatCol : int { kStatCount, kStatMean, kStatM2, kStatCols };

// What an order row has been trained on (kept in its double column).
constexpr double kAwaiting = 0;
constexpr double kMatured = 2;  // no label within the maturity: trained as legitimate
constexpr double kLabelledLegitimate = 3;
constexpr double kLabelledFraud = 4;

int Buckets(const FraudOptions& o) { return 1 << o.hash_bits; }

// Weight index of a hashed feature and of a numeric attribute slot.
int HashedIndex(const FraudOptions& o, uint64_t key) {
  return kNumDenseFraudFeatures + o.max_attribute_names + static_cast<int>(key % Buckets(o));
}
int SlotIndex(uint32_t slot) { return kNumDenseFraudFeatures + static_cast<int>(slot); }

// A 48-bit hash, exact in a double; never 0 (0 marks an empty slot).
double Hash48(std::string_view s) { return static_cast<double>((StableHash(s) >> 16) | 1); }

// A hashed feature's key; never 0.
template <class... T>
uint64_t Key(const T&... values) {
  return StableHash(values...) | 1;
}

int CountSince(const double* times, double since) {
  int n = 0;
  for (int i = 0; i < kRing; ++i) n += times[i] > since;
  return n;
}

void Push(double* ring, double* pos, double value, int size = kRing) {
  ring[static_cast<int>(*pos) % size] = value;
  *pos = static_cast<double>((static_cast<int>(*pos) + 1) % size);
}

bool Contains(const double* set, double h, int size = kKnown) {
  return std::find(set, set + size, h) != set + size;
}

void Remember(double* set, double h) {
  if (Contains(set, h)) return;
  double* empty = std::find(set, set + kKnown, 0.0);
  if (empty == set + kKnown) {
    std::move(set + 1, set + kKnown, set);  // forget the oldest
    empty = set + kKnown - 1;
  }
  *empty = h;
}

template <class T>
const T* RowOf(const IdDictionaryView& dict, const RowBlockView<T>& rows, std::string_view id) {
  if (id.empty()) return nullptr;
  const std::optional<uint32_t> r = dict.Find(id);
  return r && *r < rows.rows() ? rows.Row(*r) : nullptr;
}

double Sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

// `x` with `digits` (0..3) decimals, as "%.*f" writes it but for ties,
// without printf's cost on the scoring path.
std::string Rounded(double x, int digits) {
  constexpr int64_t kScale[] = {1, 10, 100, 1000};
  const int64_t scale = kScale[std::clamp(digits, 0, 3)];
  if (!(std::abs(x) * static_cast<double>(scale) < 1e15)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", digits, x);
    return buf;
  }
  const int64_t scaled = std::llround(std::abs(x) * static_cast<double>(scale));
  std::string out = absl::StrCat(x < 0 && scaled > 0 ? "-" : "", scaled / scale);
  if (scale > 1) {
    const std::string fraction = absl::StrCat(scale + scaled % scale);  // "1" and the digits
    absl::StrAppend(&out, ".", absl::string_view(fraction).substr(1));
  }
  return out;
}

}  // namespace

std::optional<uint32_t> FraudView::SlotOf(std::string_view attribute) const {
  const std::optional<uint32_t> slot = attribute_names_.Find(attribute);
  if (!slot || *slot >= attribute_stats_.rows()) return std::nullopt;
  return slot;
}

FraudFeatures FraudView::Compute(const FraudOrder& o, std::vector<FeatureName>* names) const {
  FraudFeatures f;
  // Four crosses, a category share per line and level, an attribute each.
  f.hashed.reserve(4 + o.lines.size() * kCategoryLevels + o.attributes.size());
  f.numeric.reserve(o.attributes.size());
  if (names) names->reserve(f.hashed.capacity());
  auto& x = f.dense;
  const double t = static_cast<double>(o.timestamp_ms);
  const double* user = RowOf(users_, user_rows_, o.user_id);
  const double* card = RowOf(cards_, card_rows_, o.payment_fingerprint);
  const double* device = RowOf(devices_, device_rows_, o.device_id);
  x[0] = 1;
  x[1] = std::log1p(o.amount);
  if (user && user[kUserOrders] >= 2) {
    const double sd = std::sqrt(user[kAmountM2] / (user[kUserOrders] - 1));
    x[2] = std::clamp((o.amount - user[kAmountMean]) / std::max(sd, 1.0), -kMaxZ, kMaxZ);
  }
  const double age_days = std::max(0.0, (t - static_cast<double>(o.account_created_ms)) / kDayMs);
  x[3] = std::log1p(age_days);
  x[4] = age_days < 1;
  if (user) {
    x[5] = CountSince(user + kUserTimes, t - kHourMs);
    x[6] = CountSince(user + kUserTimes, t - kDayMs);
    const double this_card = Hash48(o.payment_fingerprint);
    absl::InlinedVector<double, kRing> others;
    for (int i = 0; i < kRing; ++i) {
      const double c = user[kUserCards + i];
      if (user[kUserTimes + i] > t - kDayMs && c != 0 && c != this_card &&
          std::find(others.begin(), others.end(), c) == others.end()) {
        others.push_back(c);
      }
    }
    x[7] = static_cast<double>(others.size());
  }
  if (card) {
    x[8] = CountSince(card + kKeyTimes, t - kDayMs);
    x[9] = CountSince(card + kKeyTimes, t - kHourMs);
  }
  if (device) x[10] = CountSince(device + kKeyTimes, t - kDayMs);
  auto differ = [](const std::string& a, const std::string& b) {
    return !a.empty() && !b.empty() && a != b;
  };
  x[11] = differ(o.billing_country, o.shipping_country);
  x[12] = differ(o.billing_country, o.ip_country);
  x[13] = differ(o.shipping_country, o.ip_country);
  const bool first = user == nullptr || user[kUserOrders] == 0;
  x[14] = !o.device_id.empty() && (first || !Contains(user + kDevices, Hash48(o.device_id)));
  x[15] = !o.shipping_address_hash.empty() &&
          (first || !Contains(user + kAddresses, Hash48(o.shipping_address_hash)));
  x[16] = first;
  const int64_t hour = (o.timestamp_ms / kHourMs) % 24;
  x[17] = hour < 6;

  const auto add = [&](uint64_t key, double value, const auto&... name) {
    f.hashed.push_back({key, static_cast<float>(value)});
    if (names) names->push_back({key, {std::string_view(name)...}});
  };
  const uint64_t crosses[] = {Key(0, o.shipping_country, o.ip_country),
                              Key(1, o.billing_country, first),
                              Key(2, o.currency, static_cast<int>(std::log2(o.amount + 1))),
                              Key(3, o.ip_country)};
  for (int k = 0; k < 4; ++k) add(crosses[k], 1, kCrossNames[k]);

  // The basket.
  double units = 0, dearest = 0, total = 0;
  bool bought_before = false;
  absl::InlinedVector<std::string_view, 8> distinct;
  absl::InlinedVector<std::pair<uint32_t, double>, 8> by_category;  // category, amount
  for (const FraudLine& line : o.lines) {
    units += line.quantity;
    dearest = std::max(dearest, line.unit_price);
    if (std::find(distinct.begin(), distinct.end(), line.item_id) == distinct.end()) {
      distinct.push_back(line.item_id);
    }
    bought_before = bought_before ||
                    (user && Contains(user + kBought, Hash48(line.item_id), kKnownItems));
    const double amount = line.quantity * line.unit_price;
    total += amount;
    const uint32_t* categories = RowOf(items_, item_category_, line.item_id);
    for (int level = 0; categories && level < kCategoryLevels; ++level) {
      if (categories[level] == 0) continue;
      auto it = std::find_if(by_category.begin(), by_category.end(),
                             [&](const auto& c) { return c.first == categories[level] - 1; });
      if (it == by_category.end()) {
        by_category.emplace_back(categories[level] - 1, amount);
      } else {
        it->second += amount;
      }
    }
  }
  x[18] = std::log1p(units);
  x[19] = std::log1p(static_cast<double>(distinct.size()));
  x[20] = std::log1p(dearest);
  x[21] = bought_before;
  std::sort(by_category.begin(), by_category.end());
  for (const auto& [category, amount] : by_category) {
    const std::string_view name = categories_.Name(category);
    add(Key(4, name), total > 0 ? amount / total : 0, "basket share of ", name);
  }

  // The shop's own attributes (sorted by name).
  for (const FraudAttribute& a : o.attributes) {
    if (!a.number) {
      add(Key(5, a.name, a.text), 1, "attributes.", a.name, "=", a.text);
      continue;
    }
    NumericFraudFeature n{a.name, *a.number, 0};
    if (const std::optional<uint32_t> slot = SlotOf(a.name)) {
      const double* stat = attribute_stats_.Row(*slot);
      if (stat[kStatCount] >= 2) {
        const double sd = std::sqrt(stat[kStatM2] / (stat[kStatCount] - 1));
        n.z = static_cast<float>(
            sd > 0 ? std::clamp((*a.number - stat[kStatMean]) / sd, -kMaxZ, kMaxZ) : 0);
      }
    }
    f.numeric.push_back(std::move(n));
  }
  return f;
}

double FraudView::Logit(const FraudFeatures& f, std::vector<Contribution>* reasons) const {
  const std::vector<double>& w = *weights_;
  double logit = 0;
  const auto add = [&](double c, Contribution::Kind kind, size_t index, double value) {
    logit += c;
    if (reasons && c > 0) reasons->push_back({kind, index, value, c});
  };
  for (int i = 0; i < kNumDenseFraudFeatures; ++i) {
    const double c = (kPrior[i] + w[i]) * f.dense[i];
    if (i > 0) add(c, Contribution::kDense, i, f.dense[i]);
    else logit += c;
  }
  for (size_t k = 0; k < f.numeric.size(); ++k) {
    const std::optional<uint32_t> slot = SlotOf(f.numeric[k].name);
    if (!slot) continue;  // a name first seen now: the learner takes it in
    add(w[SlotIndex(*slot)] * f.numeric[k].z, Contribution::kNumeric, k, f.numeric[k].z);
  }
  for (size_t k = 0; k < f.hashed.size(); ++k) {
    const HashedFraudFeature& h = f.hashed[k];
    add(w[HashedIndex(options_, h.key)] * h.value, Contribution::kHashed, k, h.value);
  }
  return logit;
}

FraudReason FraudView::Name(const Contribution& c, const FraudFeatures& f,
                            const std::vector<FeatureName>& names) {
  FraudReason r{"", c.value, c.contribution};
  switch (c.kind) {
    case Contribution::kDense:
      r.feature = kFraudFeatureNames[c.index];
      break;
    case Contribution::kNumeric:
      r.feature = absl::StrCat("attributes.", f.numeric[c.index].name, " (z = ", Rounded(c.value, 1), ")");
      break;
    case Contribution::kHashed: {
      const uint64_t key = f.hashed[c.index].key;
      auto it = std::find_if(names.begin(), names.end(),
                             [&](const FeatureName& n) { return n.key == key; });
      if (it == names.end()) {
        r.feature = "a hashed feature of the order";
      } else {
        for (std::string_view part : it->parts) r.feature.append(part.data(), part.size());
      }
      break;
    }
  }
  return r;
}

FraudDecision FraudView::Decide(double p, double amount, std::string* decided_by) const {
  if (options_.rule == FraudRule::kExpectedLoss) {
    const double loss = p * amount;
    const std::string shown = absl::StrCat("expected loss ", Rounded(loss, 2));
    if (loss >= options_.decline_loss) {
      *decided_by = absl::StrCat(shown, " >= decline cost ", options_.decline_loss);
      return FraudDecision::kDecline;
    }
    if (loss >= options_.review_loss) {
      *decided_by = absl::StrCat(shown, " >= review cost ", options_.review_loss);
      return FraudDecision::kReview;
    }
    *decided_by = absl::StrCat(shown, " < review cost ", options_.review_loss);
    return FraudDecision::kApprove;
  }
  const std::string shown = absl::StrCat("probability ", Rounded(p, 3));
  if (p >= options_.decline_threshold) {
    *decided_by = absl::StrCat(shown, " >= decline threshold ", options_.decline_threshold);
    return FraudDecision::kDecline;
  }
  if (p >= options_.review_threshold) {
    *decided_by = absl::StrCat(shown, " >= review threshold ", options_.review_threshold);
    return FraudDecision::kReview;
  }
  *decided_by = absl::StrCat(shown, " < review threshold ", options_.review_threshold);
  return FraudDecision::kApprove;
}

FraudScore FraudView::Score(const FraudOrder& order) const {
  FraudScore s;
  std::vector<FeatureName> names;
  s.features = Compute(order, &names);
  if (std::optional<FraudFeatures> stored = StoredFeatures(order.order_id)) {
    s.features = *std::move(stored);
    s.rescored = true;
  }
  std::vector<Contribution> contributions;
  contributions.reserve(kNumDenseFraudFeatures + s.features.numeric.size() +
                        s.features.hashed.size());
  s.probability = Sigmoid(Logit(s.features, &contributions));
  s.decision = Decide(s.probability, order.amount, &s.decided_by);
  const size_t n = std::min(contributions.size(), static_cast<size_t>(std::max(0, options_.reasons)));
  std::partial_sort(contributions.begin(), contributions.begin() + n, contributions.end(),
                    [](const Contribution& a, const Contribution& b) {
                      return a.contribution > b.contribution;
                    });
  for (size_t i = 0; i < n; ++i) s.reasons.push_back(Name(contributions[i], s.features, names));
  return s;
}

std::string FraudView::Note(const Event& event) const {
  if (event.type != EventType::kFraudLabel) return "";
  const std::optional<double> label = LabelOf(event.order_id);
  if (!label) return "";
  if (*label == event.value) {
    return absl::StrCat("order ", event.order_id, " is already labelled ", event.value,
                        ": a repeat, counted (repeated_labels) and not trained on again");
  }
  return absl::StrCat("order ", event.order_id, " was labelled ", *label,
                      ": this label corrects it (changed_labels) and is trained on");
}

std::optional<double> FraudView::LabelOf(std::string_view order_id) const {
  const double* r = RowOf(orders_, order_rows_, order_id);
  if (r == nullptr) return std::nullopt;
  if (r[kOrderState] == kLabelledFraud) return 1.0;
  if (r[kOrderState] == kLabelledLegitimate) return 0.0;
  return std::nullopt;
}

std::optional<FraudFeatures> FraudView::StoredFeatures(std::string_view order_id) const {
  const std::optional<uint32_t> order = orders_.Find(order_id);
  if (!order || *order >= order_rows_.rows()) return std::nullopt;
  const double* r = order_rows_.Row(*order);
  FraudFeatures f;
  std::copy(r + kDense, r + kDense + kNumDenseFraudFeatures, f.dense.begin());
  if (const std::shared_ptr<const FraudSparseRow>& sparse = *order_sparse_.Row(*order)) {
    f.hashed = sparse->hashed;
    for (const FraudSparseRow::Numeric& n : sparse->numeric) {
      f.numeric.push_back({std::string(attribute_names_.Name(n.slot)), n.raw, n.z});
    }
  }
  return f;
}

Event FraudView::RecordEvent(const FraudOrder& o, const FraudScore& score) {
  const FraudFeatures& f = score.features;
  Event e;
  e.type = EventType::kOrderScored;
  // No event id: a scored order is recorded once (a re-score reuses the
  // record), and a race that records it twice is ignored on apply.
  e.order_id = o.order_id;
  e.user_id = o.user_id;
  e.timestamp_ms = o.timestamp_ms;
  e.value = o.amount;
  ByteWriter w(&e.payload);
  w.U8(kPayloadVersion);
  w.Str(o.payment_fingerprint);
  w.Str(o.device_id);
  w.Str(o.shipping_address_hash);
  w.Raw(f.dense.data(), sizeof f.dense);
  w.F64(score.probability);
  w.Varint(f.hashed.size());
  for (const HashedFraudFeature& h : f.hashed) {
    w.Raw(&h.key, sizeof h.key);
    w.F32(h.value);
  }
  w.Varint(f.numeric.size());
  for (const NumericFraudFeature& n : f.numeric) {
    w.Str(n.name);
    w.F64(n.raw);
    w.F32(n.z);
  }
  return e;
}

FraudModel::FraudModel(FraudOptions options)
    : options_(options),
      // Small blocks: a publication makes the next write to each block copy
      // it, and orders touch rows of customers, cards and devices all over.
      user_rows_(kUserCols, kKeyRowsPerBlock),
      card_rows_(kKeyCols, kKeyRowsPerBlock),
      device_rows_(kKeyCols, kKeyRowsPerBlock),
      order_rows_(kOrderCols),
      attribute_stats_(kStatCols),
      item_category_(kCategoryLevels),
      order_sparse_(1),
      z_(dims(), 0.0),
      n_(dims(), 0.0),
      bucket_keys_(Buckets(options_), 0) {}

int FraudModel::dims() const {
  return kNumDenseFraudFeatures + options_.max_attribute_names + Buckets(options_);
}

bool FraudModel::Apply(const Event& event) {
  bool matured = false;
  if (event.shop_time_ms != now_ms_) {
    now_ms_ = event.shop_time_ms;
    Mature(now_ms_);
    matured = true;  // the clock itself is state
  }
  switch (event.type) {
    case EventType::kOrderScored:
      ApplyOrder(event);
      return true;
    case EventType::kFraudLabel:
      ApplyLabel(event);
      return true;
    case EventType::kItemUpdate:
      ApplyItemUpdate(event);
      return true;
    case EventType::kPurchase:
      if (event.user_id.empty() || event.item_id.empty()) return matured;
      ApplyPurchase(event);
      return true;
    case EventType::kUserDelete:
      if (std::optional<uint32_t> r =
              RenameErased(users_, event.user_id, ErasedName(event.sequence))) {
        double* u = user_rows_.MutableRow(*r);
        std::fill(u, u + kUserCols, 0.0);
        return true;
      }
      return matured;
    case EventType::kEraseKeys:
      ApplyEraseKeys(event);
      return true;
    default:
      return matured;
  }
}

void FraudView::VisitIdentifiers(Event& event, const std::function<void(std::string&)>& visit) {
  if (event.type != EventType::kOrderScored || event.payload.empty()) return;
  ByteReader r(event.payload);
  const uint8_t version = r.U8();
  std::string ids[3] = {r.Str(), r.Str(), r.Str()};
  if (!r.status().ok()) return;
  const std::string_view rest =
      std::string_view(event.payload).substr(event.payload.size() - r.remaining());
  for (std::string& id : ids) {
    if (!id.empty()) visit(id);
  }
  std::string payload;
  ByteWriter w(&payload);
  w.U8(version);
  for (const std::string& id : ids) w.Str(id);
  w.Raw(rest.data(), rest.size());
  event.payload = std::move(payload);
}

void FraudModel::ApplyEraseKeys(const Event& e) {
  // Cards and devices are renamed, and so are the hashes of cards, devices
  // and addresses every customer's row remembers, as if the log had named
  // the placeholders all along (which it does once the erasure completes).
  const std::vector<std::string> keys = DecodeErasedKeys(e.payload);
  absl::flat_hash_map<double, double> hashes;
  for (size_t i = 0; i < keys.size(); ++i) {
    const std::string placeholder = ErasedName(static_cast<uint64_t>(e.value), i + 1);
    RenameErased(cards_, keys[i], placeholder);
    RenameErased(devices_, keys[i], placeholder);
    hashes[Hash48(keys[i])] = Hash48(placeholder);
  }
  for (uint32_t user = 0; user < users_.size(); ++user) {
    for (int col : {kUserCards, kDevices, kAddresses}) {
      for (int i = 0; i < (col == kUserCards ? kRing : kKnown); ++i) {
        // Read first: a row written is a row copied.
        if (auto it = hashes.find(user_rows_.Row(user)[col + i]); it != hashes.end()) {
          user_rows_.MutableRow(user)[col + i] = it->second;
        }
      }
    }
  }
}

void FraudModel::ApplyItemUpdate(const Event& e) {
  const std::vector<std::string> path = CategoryPath(e);
  const uint32_t item = items_.FindOrAdd(e.item_id);
  item_category_.Resize(items_.size());
  uint32_t* row = item_category_.MutableRow(item);
  std::string prefix;
  for (int level = 0; level < kCategoryLevels; ++level) {
    const bool named = level < static_cast<int>(path.size()) && !path[level].empty();
    if (named) prefix = level == 0 ? path[0] : absl::StrCat(prefix, " > ", path[level]);
    row[level] = named ? categories_.FindOrAdd(prefix) + 1 : 0;
  }
}

void FraudModel::ApplyPurchase(const Event& e) {
  const uint32_t user = users_.FindOrAdd(e.user_id);
  user_rows_.Resize(users_.size());
  double* u = user_rows_.MutableRow(user);
  const double h = Hash48(e.item_id);
  if (!Contains(u + kBought, h, kKnownItems)) Push(u + kBought, &u[kBoughtPos], h, kKnownItems);
}

void FraudModel::ApplyOrder(const Event& e) {
  ByteReader r(e.payload);
  const uint8_t version = r.U8();
  if (version != 1 && version != kPayloadVersion) return;
  const std::string card = r.Str(), device = r.Str(), address = r.Str();
  FraudFeatures f;
  double probability = std::numeric_limits<double>::quiet_NaN();
  auto sparse = std::make_shared<FraudSparseRow>();
  if (version == 1) {
    r.Raw(f.dense.data(), sizeof(double) * kDenseV1);
    // Its crosses are buckets of 4,096: keys that land in the same ones
    // (the hash space is a power of two of at least that).
    for (int k = 0; k < kCrossesV1; ++k) {
      const uint64_t bucket = r.Varint() % kBucketsV1;
      sparse->hashed.push_back({(uint64_t{1} << 63) | bucket, 1});
    }
  } else {
    r.Raw(f.dense.data(), sizeof f.dense);
    probability = r.F64();
    const uint64_t hashed = r.Varint();
    for (uint64_t i = 0; i < hashed && r.status().ok(); ++i) {
      HashedFraudFeature h;
      r.Raw(&h.key, sizeof h.key);
      h.value = r.F32();
      sparse->hashed.push_back(h);
    }
    const uint64_t numeric = r.Varint();
    for (uint64_t i = 0; i < numeric && r.status().ok(); ++i) {
      NumericFraudFeature n;
      n.name = r.Str();
      n.raw = r.F64();
      n.z = r.F32();
      f.numeric.push_back(std::move(n));
    }
  }
  if (!r.status().ok()) return;
  const size_t known = orders_.size();
  const uint32_t order = orders_.FindOrAdd(e.order_id);
  if (order < known) return;  // scored before
  order_rows_.Resize(orders_.size());
  order_sparse_.Resize(orders_.size());
  double* o = order_rows_.MutableRow(order);
  std::copy(f.dense.begin(), f.dense.end(), o + kDense);
  o[kScoredProbability] = probability;
  o[kOrderTime] = static_cast<double>(e.timestamp_ms);
  pending_.push_back(order);

  // Hash buckets keep the first key that took them.
  for (const HashedFraudFeature& h : sparse->hashed) {
    uint64_t& owner = bucket_keys_[h.key % bucket_keys_.size()];
    if (owner == 0) {
      owner = h.key;
      buckets_stale_ = true;
    } else if (owner != h.key) {
      ++hash_collisions_;
    }
  }
  // Numeric attributes: the running mean and variance of each name, in log
  // order; the order keeps the z it was scored with.
  for (const NumericFraudFeature& n : f.numeric) {
    std::optional<uint32_t> slot = attribute_names_.Find(n.name);
    if (!slot) {
      if (attribute_names_.size() >= static_cast<size_t>(options_.max_attribute_names)) {
        ++names_over_limit_;
        continue;
      }
      slot = attribute_names_.FindOrAdd(n.name);
      attribute_stats_.Resize(attribute_names_.size());
    }
    double* stat = attribute_stats_.MutableRow(*slot);
    stat[kStatCount] += 1;
    const double delta = n.raw - stat[kStatMean];
    stat[kStatMean] += delta / stat[kStatCount];
    stat[kStatM2] += delta * (n.raw - stat[kStatMean]);
    sparse->numeric.push_back({*slot, n.raw, n.z});
  }
  *order_sparse_.MutableRow(order) = std::move(sparse);

  const double t = static_cast<double>(e.timestamp_ms);
  const uint32_t user = users_.FindOrAdd(e.user_id);
  user_rows_.Resize(users_.size());
  double* u = user_rows_.MutableRow(user);
  // Welford's running mean and variance of the customer's order amounts.
  u[kUserOrders] += 1;
  const double delta = e.value - u[kAmountMean];
  u[kAmountMean] += delta / u[kUserOrders];
  u[kAmountM2] += delta * (e.value - u[kAmountMean]);
  const int pos = static_cast<int>(u[kUserRingPos]);
  u[kUserCards + pos] = card.empty() ? 0 : Hash48(card);
  Push(u + kUserTimes, &u[kUserRingPos], t);
  if (!device.empty()) Remember(u + kDevices, Hash48(device));
  if (!address.empty()) Remember(u + kAddresses, Hash48(address));
  for (auto [dict, rows, key] :
       {std::tuple{&cards_, &card_rows_, &card}, std::tuple{&devices_, &device_rows_, &device}}) {
    if (key->empty()) continue;
    const uint32_t row = dict->FindOrAdd(*key);
    rows->Resize(dict->size());
    double* k = rows->MutableRow(row);
    Push(k + kKeyTimes, &k[kKeyRingPos], t);
  }
  if (auto early = early_labels_.find(e.order_id); early != early_labels_.end()) {
    const auto [label, place] = early->second;
    early_order_.erase(place);
    early_labels_.erase(early);
    early_stale_ = true;
    Label(order, label);
  }
}

void FraudModel::ApplyLabel(const Event& e) {
  if (const std::optional<uint32_t> order = orders_.Find(e.order_id)) {
    Label(*order, e.value);
    return;
  }
  // Its record may still come: held until then, within a bound.
  early_stale_ = true;
  if (auto [it, added] = early_labels_.try_emplace(e.order_id, e.value, early_next_); !added) {
    it->second.first = e.value;
    return;
  }
  early_order_.emplace(early_next_++, e.order_id);
  if (early_order_.size() <= kMaxEarlyLabels) return;
  const std::string dropped = std::move(early_order_.begin()->second);
  early_order_.erase(early_order_.begin());
  early_labels_.erase(dropped);
  // A label for an order never scored: counted, logged now and then.
  if (unknown_labels_++ % 1000 == 0) {
    MERCATO_LOG(kWarning) << "fraud label for an order never scored: " << dropped << " ("
                          << unknown_labels_ << " so far)";
  }
}

void FraudModel::Label(uint32_t order, double label) {
  double* o = order_rows_.MutableRow(order);
  const double state = label == 1 ? kLabelledFraud : kLabelledLegitimate;
  if (o[kOrderState] == state) {
    ++repeated_labels_;  // the same label again: nothing to learn
    return;
  }
  if (o[kOrderState] == kAwaiting) {
    ++labels_;
    Calibrate(o[kScoredProbability], label);
  } else if (o[kOrderState] == kMatured) {
    ++labels_;
  } else {
    ++changed_labels_;  // a correction: one step toward the new label
  }
  o[kOrderState] = state;
  Train(order, label);
}

void FraudModel::Mature(int64_t now_ms) {
  // Labelled orders leave the queue as soon as they reach its front, so that
  // only awaiting orders, in log order, decide when the queue stops: the
  // same queue as a decoded checkpoint rebuilds.
  while (!pending_.empty()) {
    const uint32_t order = pending_.front();
    if (order_rows_.Row(order)[kOrderState] != kAwaiting) {
      pending_.pop_front();
      continue;
    }
    if (order_rows_.Row(order)[kOrderTime] + options_.maturity_ms > now_ms) break;
    pending_.pop_front();
    double* o = order_rows_.MutableRow(order);
    o[kOrderState] = kMatured;
    ++matured_;
    Calibrate(o[kScoredProbability], 0);
    Train(order, 0);
  }
}

void FraudModel::Calibrate(double probability, double label) {
  if (std::isnan(probability) || options_.calibration_window <= 0) return;
  const std::pair<float, uint8_t> entry{static_cast<float>(probability), label == 1 ? 1 : 0};
  if (calibration_.size() < static_cast<size_t>(options_.calibration_window)) {
    calibration_.push_back(entry);
  } else {
    calibration_[calibration_next_ % calibration_.size()] = entry;
  }
  ++calibration_next_;
  calibration_stale_ = true;
}

void FraudModel::Train(uint32_t order, double label) {
  const double* o = order_rows_.Row(order);
  // The coordinates this order touches and their values.
  std::vector<std::pair<int, double>> x;
  for (int i = 0; i < kNumDenseFraudFeatures; ++i) x.emplace_back(i, o[kDense + i]);
  if (const std::shared_ptr<const FraudSparseRow>& sparse = *order_sparse_.Row(order)) {
    for (const FraudSparseRow::Numeric& n : sparse->numeric) x.emplace_back(SlotIndex(n.slot), n.z);
    for (const HashedFraudFeature& h : sparse->hashed) {
      x.emplace_back(HashedIndex(options_, h.key), h.value);
    }
  }
  double logit = 0;
  for (const auto& [i, v] : x) logit += ((i < kNumDenseFraudFeatures ? kPrior[i] : 0) + Weight(i)) * v;
  const double p = Sigmoid(logit);
  for (const auto& [i, v] : x) {
    if (v == 0) continue;
    const double g = (p - label) * v;
    const double sigma = (std::sqrt(n_[i] + g * g) - std::sqrt(n_[i])) / options_.alpha;
    z_[i] += g - sigma * Weight(i);
    n_[i] += g * g;
  }
  weights_stale_ = true;
}

double FraudModel::Weight(int i) const {
  // FTRL-Proximal's closed form: L1 keeps small accumulated gradients at 0.
  if (std::abs(z_[i]) <= options_.l1) return 0.0;
  return -(z_[i] - std::copysign(options_.l1, z_[i])) /
         ((options_.beta + std::sqrt(n_[i])) / options_.alpha + options_.l2);
}

std::shared_ptr<const ModelView> FraudModel::Publish() {
  if (weights_stale_ || !weights_) {
    auto w = std::make_shared<std::vector<double>>(dims());
    for (int i = 0; i < dims(); ++i) (*w)[i] = Weight(i);
    weights_ = std::move(w);
    published_z_ = std::make_shared<const std::vector<double>>(z_);
    published_n_ = std::make_shared<const std::vector<double>>(n_);
    weights_stale_ = false;
  }
  if (buckets_stale_ || !published_bucket_keys_) {
    published_bucket_keys_ = std::make_shared<const std::vector<uint64_t>>(bucket_keys_);
    buckets_stale_ = false;
  }
  if (calibration_stale_ || !published_calibration_) {
    published_calibration_ =
        std::make_shared<const std::vector<std::pair<float, uint8_t>>>(calibration_);
    calibration_stale_ = false;
  }
  if (early_stale_ || !published_early_labels_) {
    auto early = std::make_shared<std::vector<std::pair<std::string, double>>>();
    for (const auto& [place, id] : early_order_) early->emplace_back(id, early_labels_.at(id).first);
    published_early_labels_ = std::move(early);
    early_stale_ = false;
  }
  auto view = std::make_shared<FraudView>();
  view->options_ = options_;
  view->users_ = users_.Freeze();
  view->cards_ = cards_.Freeze();
  view->devices_ = devices_.Freeze();
  view->orders_ = orders_.Freeze();
  view->attribute_names_ = attribute_names_.Freeze();
  view->items_ = items_.Freeze();
  view->categories_ = categories_.Freeze();
  view->user_rows_ = user_rows_.Freeze();
  view->card_rows_ = card_rows_.Freeze();
  view->device_rows_ = device_rows_.Freeze();
  view->order_rows_ = order_rows_.Freeze();
  view->attribute_stats_ = attribute_stats_.Freeze();
  view->item_category_ = item_category_.Freeze();
  view->order_sparse_ = order_sparse_.Freeze();
  view->weights_ = weights_;
  view->z_ = published_z_;
  view->n_ = published_n_;
  view->bucket_keys_ = published_bucket_keys_;
  view->calibration_ = published_calibration_;
  view->early_labels_ = published_early_labels_;
  view->calibration_next_ = calibration_next_;
  double brier = 0, log_loss = 0;
  for (const auto& [p, y] : calibration_) {
    const double q = std::clamp<double>(p, 1e-6, 1 - 1e-6), d = static_cast<double>(p) - y;
    brier += d * d;
    log_loss -= y ? std::log(q) : std::log(1 - q);
  }
  if (!calibration_.empty()) {
    view->brier_ = brier / static_cast<double>(calibration_.size());
    view->log_loss_ = log_loss / static_cast<double>(calibration_.size());
  }
  view->now_ms_ = now_ms_;
  view->labels_ = labels_;
  view->unknown_labels_ = unknown_labels_;
  view->matured_ = matured_;
  view->repeated_labels_ = repeated_labels_;
  view->changed_labels_ = changed_labels_;
  view->hash_collisions_ = hash_collisions_;
  view->names_over_limit_ = names_over_limit_;
  return view;
}

std::vector<std::pair<std::string, uint64_t>> FraudView::Counts() const {
  return {{"customers", users_.size()},
          {"orders", orders_.size()},
          {"labels", labels_},
          {"repeated_labels", repeated_labels_},
          {"changed_labels", changed_labels_},
          {"matured_legitimate", matured_},
          {"unknown_order_labels", unknown_labels_},
          {"early_labels", early_labels_->size()},
          {"attribute_names", attribute_names_.size()},
          {"attribute_names_over_limit", names_over_limit_},
          {"hash_collisions", hash_collisions_},
          {"calibration_orders", calibration_->size()}};
}

std::vector<std::pair<std::string, double>> FraudView::Gauges() const {
  return {{"brier_score", brier_}, {"log_loss", log_loss_}};
}

namespace {

// Checked on Decode: the row widths and weight layout of the stored state.
std::vector<uint64_t> Layout(const FraudOptions& o) {
  return {kUserCols, kKeyCols, kOrderCols, kCategoryLevels, kNumDenseFraudFeatures,
          static_cast<uint64_t>(o.max_attribute_names), static_cast<uint64_t>(o.hash_bits)};
}

}  // namespace

std::string FraudView::Encode() const {
  std::string out;
  ByteWriter w(&out);
  w.U8(kFormatVersion);
  for (uint64_t v : Layout(options_)) w.Varint(v);
  w.I64(now_ms_);
  for (uint64_t v : {labels_, unknown_labels_, matured_, repeated_labels_, changed_labels_,
                     hash_collisions_, names_over_limit_}) {
    w.Varint(v);
  }
  w.Raw(z_->data(), sizeof(double) * z_->size());
  w.Raw(n_->data(), sizeof(double) * n_->size());
  w.Raw(bucket_keys_->data(), sizeof(uint64_t) * bucket_keys_->size());
  w.Varint(calibration_next_);
  w.Varint(calibration_->size());
  for (const auto& [p, y] : *calibration_) {
    w.F32(p);
    w.U8(y);
  }
  EncodeTable(w, users_, &user_rows_);
  EncodeTable(w, cards_, &card_rows_);
  EncodeTable(w, devices_, &device_rows_);
  EncodeTable(w, orders_, &order_rows_);
  EncodeTable(w, attribute_names_, &attribute_stats_);
  EncodeTable(w, categories_, nullptr);
  w.Varint(items_.size());
  for (uint32_t i = 0; i < items_.size(); ++i) {
    w.Str(items_.Name(i));
    for (int level = 0; level < kCategoryLevels; ++level) w.Varint(item_category_.Row(i)[level]);
  }
  for (uint32_t o = 0; o < orders_.size(); ++o) {
    const std::shared_ptr<const FraudSparseRow>& sparse = *order_sparse_.Row(o);
    w.Varint(sparse ? sparse->hashed.size() : 0);
    if (!sparse) {
      w.Varint(0);
      continue;
    }
    for (const HashedFraudFeature& h : sparse->hashed) {
      w.Raw(&h.key, sizeof h.key);
      w.F32(h.value);
    }
    w.Varint(sparse->numeric.size());
    for (const FraudSparseRow::Numeric& n : sparse->numeric) {
      w.Varint(n.slot);
      w.F64(n.raw);
      w.F32(n.z);
    }
  }
  w.Varint(early_labels_->size());
  for (const auto& [id, label] : *early_labels_) {
    w.Str(id);
    w.F64(label);
  }
  return out;
}

absl::Status FraudModel::Decode(std::string_view bytes) {
  ByteReader r(bytes);
  const uint8_t version = r.U8();
  if (version >= 1 && version < kFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint of format ", version, " (hashes of its process); rebuilt from the log"));
  }
  if (version != kFormatVersion) {
    return absl::DataLossError("fraud: unknown checkpoint format version");
  }
  for (uint64_t v : Layout(options_)) {
    if (r.Varint() != v) {
      return absl::FailedPreconditionError(
          "checkpoint of another layout (rows, --fraud_hash_bits or attribute names); rebuilt "
          "from the log");
    }
  }
  FraudModel fresh(options_);
  fresh.now_ms_ = r.I64();
  for (uint64_t* v : {&fresh.labels_, &fresh.unknown_labels_, &fresh.matured_,
                      &fresh.repeated_labels_, &fresh.changed_labels_, &fresh.hash_collisions_,
                      &fresh.names_over_limit_}) {
    *v = r.Varint();
  }
  r.Raw(fresh.z_.data(), sizeof(double) * fresh.z_.size());
  r.Raw(fresh.n_.data(), sizeof(double) * fresh.n_.size());
  r.Raw(fresh.bucket_keys_.data(), sizeof(uint64_t) * fresh.bucket_keys_.size());
  fresh.calibration_next_ = r.Varint();
  const uint64_t window = r.Varint();
  if (window > static_cast<uint64_t>(std::max(0, options_.calibration_window))) r.Invalidate();
  for (uint64_t i = 0; i < window && r.status().ok(); ++i) {
    const float p = r.F32();
    fresh.calibration_.emplace_back(p, r.U8());
  }
  DecodeTable(r, fresh.users_, &fresh.user_rows_);
  DecodeTable(r, fresh.cards_, &fresh.card_rows_);
  DecodeTable(r, fresh.devices_, &fresh.device_rows_);
  DecodeTable(r, fresh.orders_, &fresh.order_rows_);
  DecodeTable(r, fresh.attribute_names_, &fresh.attribute_stats_);
  DecodeTable(r, fresh.categories_, nullptr);
  const uint64_t items = r.Varint();
  for (uint64_t i = 0; i < items && r.status().ok(); ++i) {
    const uint32_t item = fresh.items_.FindOrAdd(r.Str());
    fresh.item_category_.Resize(fresh.items_.size());
    for (int level = 0; level < kCategoryLevels; ++level) {
      const uint64_t category = r.Varint();
      if (category > fresh.categories_.size()) r.Invalidate();
      fresh.item_category_.MutableRow(item)[level] = static_cast<uint32_t>(category);
    }
  }
  fresh.order_sparse_.Resize(fresh.orders_.size());
  for (uint32_t o = 0; o < fresh.orders_.size() && r.status().ok(); ++o) {
    auto sparse = std::make_shared<FraudSparseRow>();
    sparse->hashed.resize(std::min<uint64_t>(r.Varint(), r.remaining()));
    for (HashedFraudFeature& h : sparse->hashed) {
      r.Raw(&h.key, sizeof h.key);
      h.value = r.F32();
    }
    sparse->numeric.resize(std::min<uint64_t>(r.Varint(), r.remaining()));
    for (FraudSparseRow::Numeric& n : sparse->numeric) {
      n.slot = static_cast<uint32_t>(r.Varint());
      if (n.slot >= fresh.attribute_names_.size()) r.Invalidate();
      n.raw = r.F64();
      n.z = r.F32();
    }
    if (!sparse->hashed.empty() || !sparse->numeric.empty()) {
      *fresh.order_sparse_.MutableRow(o) = std::move(sparse);
    }
  }
  const uint64_t early = r.Varint();
  if (early > kMaxEarlyLabels) r.Invalidate();
  for (uint64_t i = 0; i < early && r.status().ok(); ++i) {
    std::string id = r.Str();
    const double label = r.F64();
    if (!fresh.early_labels_.try_emplace(id, label, fresh.early_next_).second) r.Invalidate();
    fresh.early_order_.emplace(fresh.early_next_++, std::move(id));
  }
  if (!r.status().ok()) return r.status();
  if (!r.done()) return absl::DataLossError("fraud: trailing bytes in checkpoint");
  // Rows are added in log order, as the live queue is.
  for (uint32_t o = 0; o < fresh.order_rows_.rows(); ++o) {
    if (fresh.order_rows_.Row(o)[kOrderState] == kAwaiting) fresh.pending_.push_back(o);
  }
  *this = std::move(fresh);
  return absl::OkStatus();
}

}  // namespace mercato::core
