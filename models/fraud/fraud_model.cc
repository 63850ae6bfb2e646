#include "models/fraud/fraud_model.h"

#include <algorithm>
#include <cmath>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "core/bytes.h"
#include "core/log.h"
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
};

namespace {

// 2: labels keep their value (OrderState) and repeats and corrections are
// counted. Version 1 is still read.
constexpr uint8_t kFormatVersion = 2;
constexpr uint8_t kPayloadVersion = 1;
constexpr int kRing = 16;  // order times kept per customer, card and device
constexpr int kKnown = 8;  // devices and addresses remembered per customer
constexpr int kKeyRowsPerBlock = 32;
constexpr int64_t kHourMs = 3600LL * 1000, kDayMs = 24 * kHourMs;
constexpr int kDims = kNumDenseFraudFeatures + kFraudHashBuckets;
const char* const kCrossNames[kNumFraudCrosses] = {"shipping x IP country",
                                                   "billing country x first order",
                                                   "currency x amount band", "IP country"};

// Shipped prior weights, in log-odds per unit of each dense feature: a fraud
// rate near 2% for an established customer, and the classic signals.
constexpr std::array<double, kNumDenseFraudFeatures> kPrior = {
    -4.0, 0.2, 0.3, -0.2, 1.5, 0.3, 0.1, 0.8, 0.4, 0.6, 0.2, 1.0, 1.0, 0.5, 0.3, 0.3, 0.5, 0.2};

// Customer rows.
enum UserCol : int {
  kUserOrders,
  kAmountMean,
  kAmountM2,
  kUserRingPos,
  kUserTimes,                       // kRing order times
  kUserCards = kUserTimes + kRing,  // kRing card hashes, parallel to the times
  kDevices = kUserCards + kRing,    // kKnown device hashes
  kAddresses = kDevices + kKnown,   // kKnown address hashes
  kUserCols = kAddresses + kKnown
};
// Card and device rows: a ring of order times.
enum KeyCol : int { kKeyRingPos, kKeyTimes, kKeyCols = kKeyTimes + kRing };
// Order rows: the scoring-time features, the order time and its state.
enum OrderCol : int {
  kDense,
  kCrosses = kDense + kNumDenseFraudFeatures,
  kOrderTime = kCrosses + kNumFraudCrosses,
  kOrderState,  // one of the order states below
  kOrderCols
};

// What an order row has been trained on (kept in its double column).
constexpr double kAwaiting = 0;
constexpr double kLabelledBefore = 1;  // labelled, value unknown: rows of format version 1
constexpr double kMatured = 2;         // no label within the maturity: trained as legitimate
constexpr double kLabelledLegitimate = 3;
constexpr double kLabelledFraud = 4;

// Checked on Decode: the row widths and weight count of the stored state.
constexpr int kLayout[] = {kUserCols, kKeyCols, kOrderCols, kDims};

// A 48-bit hash, exact in a double; never 0 (0 marks an empty slot).
double Hash48(std::string_view s) { return static_cast<double>((absl::HashOf(s) >> 16) | 1); }

// The hashed bucket of a categorical cross.
template <class... T>
uint32_t Bucket(const T&... values) {
  return static_cast<uint32_t>(absl::HashOf(values...) % kFraudHashBuckets);
}

int CountSince(const double* times, double since) {
  int n = 0;
  for (int i = 0; i < kRing; ++i) n += times[i] > since;
  return n;
}

void Push(double* ring, double* pos, double value) {
  ring[static_cast<int>(*pos) % kRing] = value;
  *pos = static_cast<double>((static_cast<int>(*pos) + 1) % kRing);
}

bool Contains(const double* set, double h) {
  return std::find(set, set + kKnown, h) != set + kKnown;
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

const double* RowOf(const IdDictionaryView& dict, const RowBlockView<double>& rows,
                    std::string_view id) {
  if (id.empty()) return nullptr;
  const std::optional<uint32_t> r = dict.Find(id);
  return r ? rows.Row(*r) : nullptr;
}

double Sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

}  // namespace

FraudFeatures FraudView::Compute(const FraudOrder& o) const {
  FraudFeatures f;
  auto& x = f.dense;
  const double t = static_cast<double>(o.timestamp_ms);
  const double* user = RowOf(users_, user_rows_, o.user_id);
  const double* card = RowOf(cards_, card_rows_, o.payment_fingerprint);
  const double* device = RowOf(devices_, device_rows_, o.device_id);
  x[0] = 1;
  x[1] = std::log1p(o.amount);
  if (user && user[kUserOrders] >= 2) {
    const double sd = std::sqrt(user[kAmountM2] / (user[kUserOrders] - 1));
    x[2] = std::clamp((o.amount - user[kAmountMean]) / std::max(sd, 1.0), -5.0, 5.0);
  }
  const double age_days = std::max(0.0, (t - static_cast<double>(o.account_created_ms)) / kDayMs);
  x[3] = std::log1p(age_days);
  x[4] = age_days < 1;
  if (user) {
    x[5] = CountSince(user + kUserTimes, t - kHourMs);
    x[6] = CountSince(user + kUserTimes, t - kDayMs);
    const double this_card = Hash48(o.payment_fingerprint);
    std::vector<double> others;
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
  f.crosses = {Bucket(0, o.shipping_country, o.ip_country), Bucket(1, o.billing_country, first),
               Bucket(2, o.currency, static_cast<int>(std::log2(o.amount + 1))),
               Bucket(3, o.ip_country)};
  return f;
}

double FraudView::Logit(const FraudFeatures& f, std::vector<FraudReason>* reasons) const {
  const std::vector<double>& w = *weights_;
  double logit = 0;
  for (int i = 0; i < kNumDenseFraudFeatures; ++i) {
    const double c = (kPrior[i] + w[i]) * f.dense[i];
    logit += c;
    if (reasons && i > 0 && c > 0) reasons->push_back({kFraudFeatureNames[i], f.dense[i], c});
  }
  for (int k = 0; k < kNumFraudCrosses; ++k) {
    const double c = w[kNumDenseFraudFeatures + f.crosses[k]];
    logit += c;
    if (reasons && c > 0) reasons->push_back({kCrossNames[k], 1, c});
  }
  return logit;
}

FraudScore FraudView::Score(const FraudOrder& order) const {
  FraudScore s;
  if (std::optional<FraudFeatures> stored = StoredFeatures(order.order_id)) {
    s.features = *stored;
    s.rescored = true;
  } else {
    s.features = Compute(order);
  }
  s.probability = Sigmoid(Logit(s.features, &s.reasons));
  s.decision = s.probability >= options_.decline_threshold  ? FraudDecision::kDecline
               : s.probability >= options_.review_threshold ? FraudDecision::kReview
                                                            : FraudDecision::kApprove;
  std::sort(s.reasons.begin(), s.reasons.end(), [](const FraudReason& a, const FraudReason& b) {
    return a.contribution > b.contribution;
  });
  if (s.reasons.size() > static_cast<size_t>(options_.reasons)) s.reasons.resize(options_.reasons);
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
  const double* r = RowOf(orders_, order_rows_, order_id);
  if (r == nullptr) return std::nullopt;
  FraudFeatures f;
  std::copy(r + kDense, r + kDense + kNumDenseFraudFeatures, f.dense.begin());
  for (int k = 0; k < kNumFraudCrosses; ++k) f.crosses[k] = static_cast<uint32_t>(r[kCrosses + k]);
  return f;
}

Event FraudView::RecordEvent(const FraudOrder& o, const FraudFeatures& f) {
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
  for (uint32_t c : f.crosses) w.Varint(c);
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
      z_(kDims, 0.0),
      n_(kDims, 0.0) {}

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
    case EventType::kUserDelete:
      if (std::optional<uint32_t> r = users_.Find(event.user_id)) {
        double* u = user_rows_.MutableRow(*r);
        std::fill(u, u + kUserCols, 0.0);
        return true;
      }
      return false;
    default:
      return matured;
  }
}

void FraudModel::ApplyOrder(const Event& e) {
  ByteReader r(e.payload);
  if (r.U8() != kPayloadVersion) return;
  const std::string card = r.Str(), device = r.Str(), address = r.Str();
  FraudFeatures f;
  r.Raw(f.dense.data(), sizeof f.dense);
  for (uint32_t& c : f.crosses) c = static_cast<uint32_t>(r.Varint());
  if (!r.status().ok()) return;
  const size_t known = orders_.size();
  const uint32_t order = orders_.FindOrAdd(e.order_id);
  if (order < known) return;  // scored before
  order_rows_.Resize(orders_.size());
  double* o = order_rows_.MutableRow(order);
  std::copy(f.dense.begin(), f.dense.end(), o + kDense);
  for (int k = 0; k < kNumFraudCrosses; ++k) o[kCrosses + k] = f.crosses[k];
  o[kOrderTime] = static_cast<double>(e.timestamp_ms);
  pending_.push_back(order);

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
}

void FraudModel::ApplyLabel(const Event& e) {
  const std::optional<uint32_t> order = orders_.Find(e.order_id);
  if (!order) {
    // A label for an order never scored: counted, logged now and then.
    if (unknown_labels_++ % 1000 == 0) {
      MERCATO_LOG(kWarning) << "fraud label for an order never scored: " << e.order_id << " ("
                            << unknown_labels_ << " so far)";
    }
    return;
  }
  double* o = order_rows_.MutableRow(*order);
  const double state = e.value == 1 ? kLabelledFraud : kLabelledLegitimate;
  if (o[kOrderState] == state || o[kOrderState] == kLabelledBefore) {
    ++repeated_labels_;  // the same label again: nothing to learn
    return;
  }
  if (o[kOrderState] == kAwaiting || o[kOrderState] == kMatured) {
    ++labels_;
  } else {
    ++changed_labels_;  // a correction: one step toward the new label
  }
  o[kOrderState] = state;
  Train(*order, e.value);
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
    order_rows_.MutableRow(order)[kOrderState] = kMatured;
    ++matured_;
    Train(order, 0);
  }
}

void FraudModel::Train(uint32_t order, double label) {
  const double* o = order_rows_.Row(order);
  // The coordinates this order touches and their values.
  std::array<std::pair<int, double>, kNumDenseFraudFeatures + kNumFraudCrosses> x;
  for (int i = 0; i < kNumDenseFraudFeatures; ++i) x[i] = {i, o[kDense + i]};
  for (int k = 0; k < kNumFraudCrosses; ++k) {
    x[kNumDenseFraudFeatures + k] = {kNumDenseFraudFeatures + static_cast<int>(o[kCrosses + k]), 1};
  }
  double logit = 0;
  for (const auto& [i, v] : x)
    logit += ((i < kNumDenseFraudFeatures ? kPrior[i] : 0) + Weight(i)) * v;
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
    auto w = std::make_shared<std::vector<double>>(kDims);
    for (int i = 0; i < kDims; ++i) (*w)[i] = Weight(i);
    weights_ = std::move(w);
    published_z_ = std::make_shared<const std::vector<double>>(z_);
    published_n_ = std::make_shared<const std::vector<double>>(n_);
    weights_stale_ = false;
  }
  auto view = std::make_shared<FraudView>();
  view->options_ = options_;
  view->users_ = users_.Freeze();
  view->cards_ = cards_.Freeze();
  view->devices_ = devices_.Freeze();
  view->orders_ = orders_.Freeze();
  view->user_rows_ = user_rows_.Freeze();
  view->card_rows_ = card_rows_.Freeze();
  view->device_rows_ = device_rows_.Freeze();
  view->order_rows_ = order_rows_.Freeze();
  view->weights_ = weights_;
  view->z_ = published_z_;
  view->n_ = published_n_;
  view->now_ms_ = now_ms_;
  view->labels_ = labels_;
  view->unknown_labels_ = unknown_labels_;
  view->matured_ = matured_;
  view->repeated_labels_ = repeated_labels_;
  view->changed_labels_ = changed_labels_;
  return view;
}

std::vector<std::pair<std::string, uint64_t>> FraudView::Counts() const {
  return {{"customers", users_.size()},
          {"orders", orders_.size()},
          {"labels", labels_},
          {"repeated_labels", repeated_labels_},
          {"changed_labels", changed_labels_},
          {"matured_legitimate", matured_},
          {"unknown_order_labels", unknown_labels_}};
}

std::string FraudView::Encode() const {
  std::string out;
  ByteWriter w(&out);
  w.U8(kFormatVersion);
  for (int cols : kLayout) w.Varint(cols);
  w.I64(now_ms_);
  for (uint64_t v : {labels_, unknown_labels_, matured_, repeated_labels_, changed_labels_}) {
    w.Varint(v);
  }
  w.Raw(z_->data(), sizeof(double) * kDims);
  w.Raw(n_->data(), sizeof(double) * kDims);
  EncodeTable(w, users_, &user_rows_);
  EncodeTable(w, cards_, &card_rows_);
  EncodeTable(w, devices_, &device_rows_);
  EncodeTable(w, orders_, &order_rows_);
  return out;
}

absl::Status FraudModel::Decode(std::string_view bytes) {
  ByteReader r(bytes);
  const uint8_t version = r.U8();
  if (version < 1 || version > kFormatVersion) {
    return absl::DataLossError("fraud: unknown checkpoint format version");
  }
  for (int cols : kLayout) {
    if (r.Varint() != static_cast<uint64_t>(cols)) {
      return absl::DataLossError("fraud: checkpoint has another row layout");
    }
  }
  FraudModel fresh(options_);
  fresh.now_ms_ = r.I64();
  for (uint64_t* v : {&fresh.labels_, &fresh.unknown_labels_, &fresh.matured_}) *v = r.Varint();
  if (version >= 2) {
    for (uint64_t* v : {&fresh.repeated_labels_, &fresh.changed_labels_}) *v = r.Varint();
  }
  r.Raw(fresh.z_.data(), sizeof(double) * kDims);
  r.Raw(fresh.n_.data(), sizeof(double) * kDims);
  DecodeTable(r, fresh.users_, &fresh.user_rows_);
  DecodeTable(r, fresh.cards_, &fresh.card_rows_);
  DecodeTable(r, fresh.devices_, &fresh.device_rows_);
  DecodeTable(r, fresh.orders_, &fresh.order_rows_);
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
