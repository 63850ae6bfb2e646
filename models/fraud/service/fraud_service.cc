// The fraud module: its flags, Fraud.Score, and the decisions counted by
// outcome.
#include <prometheus/counter.h>

#include <algorithm>
#include <cctype>
#include <iterator>

#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "mercato/v1/fraud.grpc.pb.h"
#include "models/fraud/fraud_model.h"
#include "server/model_module.h"
#include "server/status_util.h"
#include "server/validation.h"

ABSL_FLAG(double, fraud_review_threshold, mercato::core::FraudOptions{}.review_threshold,
          "Score: REVIEW from this fraud probability");
ABSL_FLAG(double, fraud_decline_threshold, mercato::core::FraudOptions{}.decline_threshold,
          "Score: DECLINE from this fraud probability");
ABSL_FLAG(int, fraud_maturity_days, 30,
          "an order without a fraud label after this many days is legitimate");
ABSL_FLAG(double, ftrl_alpha, mercato::core::FraudOptions{}.alpha,
          "fraud model: FTRL-Proximal learning rate alpha");
ABSL_FLAG(double, ftrl_beta, mercato::core::FraudOptions{}.beta, "fraud model: FTRL-Proximal beta");
ABSL_FLAG(double, ftrl_l1, mercato::core::FraudOptions{}.l1, "fraud model: L1 strength");
ABSL_FLAG(double, ftrl_l2, mercato::core::FraudOptions{}.l2, "fraud model: L2 strength");
ABSL_FLAG(std::string, fraud_decision, "threshold",
          "how Score decides: threshold (--fraud_review_threshold, --fraud_decline_threshold) or "
          "expected_loss (probability x amount against --fraud_review_cost, "
          "--fraud_decline_cost)");
ABSL_FLAG(double, fraud_review_cost, mercato::core::FraudOptions{}.review_loss,
          "expected_loss: REVIEW from this expected loss (order currency)");
ABSL_FLAG(double, fraud_decline_cost, mercato::core::FraudOptions{}.decline_loss,
          "expected_loss: DECLINE from this expected loss (order currency)");
ABSL_FLAG(int, fraud_hash_bits, mercato::core::FraudOptions{}.hash_bits,
          "fraud model: 2^bits weights for hashed features (text attributes, basket categories, "
          "crosses), 12..24");
ABSL_FLAG(int, fraud_max_attribute_names, mercato::core::FraudOptions{}.max_attribute_names,
          "fraud model: numeric attribute names learned, at most (later ones are ignored and "
          "counted)");
ABSL_FLAG(int, fraud_calibration_window, mercato::core::FraudOptions{}.calibration_window,
          "fraud model: Brier score and log loss over the last this many labelled or matured "
          "scored orders");

namespace mercato::server {
namespace {

constexpr int kMaxLineItems = 1000;

// ISO 4217 codes in circulation.
constexpr const char* kCurrencies[] = {
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SYP", "SZL", "THB", "TJS",
    "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWL"};

absl::Status CheckCountry(absl::string_view field, const std::string& code) {
  if (code.empty() || (code.size() == 2 && std::isupper(static_cast<unsigned char>(code[0])) &&
                       std::isupper(static_cast<unsigned char>(code[1])))) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": must be an ISO 3166-1 alpha-2 code such as \"DE\", or empty"));
}

// The checks of one line item; errors name its fields alone ("quantity: ...").
absl::Status CheckLine(const v1::LineItem& line) {
  absl::Status s = CheckId("item_id", line.item_id());
  if (s.ok()) s = CheckNumber("quantity", line.quantity(), 0, kMaxQuantity);
  if (s.ok() && line.quantity() == 0) s = absl::InvalidArgumentError("quantity: must be > 0");
  if (s.ok()) s = CheckNumber("unit_price", line.unit_price(), 0, kMaxPrice);
  return s;
}

// The checks of one attribute; errors begin ": ", for its name in front.
absl::Status CheckAttribute(const std::string& key, const v1::AttributeValue& value) {
  absl::Status s = CheckId("", key);
  if (s.ok() && value.has_number()) s = CheckNumber("", value.number(), -1e18, 1e18);
  if (s.ok() && value.has_text()) s = CheckOptionalId("", value.text());
  if (s.ok() && value.kind_case() == v1::AttributeValue::KIND_NOT_SET) {
    s = absl::InvalidArgumentError(": needs a text or a number");
  }
  return s;
}

absl::StatusOr<core::FraudOrder> ToFraudOrder(const v1::Order& in) {
  absl::Status s = CheckId("order_id", in.order_id());
  if (s.ok()) s = CheckId("user_id", in.user_id());
  if (s.ok()) s = CheckNumber("amount", in.amount(), 0, kMaxPrice);
  static const absl::flat_hash_set<std::string_view> currencies(std::begin(kCurrencies),
                                                                std::end(kCurrencies));
  if (s.ok() && !currencies.contains(in.currency())) {
    s = absl::InvalidArgumentError(
        absl::StrCat("currency: must be an ISO 4217 code such as \"EUR\", got \"",
                     in.currency().substr(0, 16), "\""));
  }
  if (s.ok()) s = CheckOptionalId("payment_fingerprint", in.payment_fingerprint());
  if (s.ok()) s = CheckOptionalId("device_id", in.device_id());
  if (s.ok()) s = CheckOptionalId("shipping_address_hash", in.shipping_address_hash());
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string&>{"user_id", in.user_id()},
        {"payment_fingerprint", in.payment_fingerprint()},
        {"device_id", in.device_id()},
        {"shipping_address_hash", in.shipping_address_hash()}}) {
    if (s.ok()) s = CheckNotErasedName(field, value);
  }
  if (s.ok()) s = CheckCountry("billing_country", in.billing_country());
  if (s.ok()) s = CheckCountry("shipping_country", in.shipping_country());
  if (s.ok()) s = CheckCountry("ip_country", in.ip_country());
  if (s.ok())
    s = CheckCount("account_created_ms", in.account_created_ms(), 0, int64_t{4102444800000});
  if (s.ok()) s = CheckCount("timestamp_ms", in.timestamp_ms(), 0, int64_t{4102444800000});
  if (s.ok()) s = CheckCount("line_items", in.line_items_size(), 0, kMaxLineItems);
  for (int i = 0; s.ok() && i < in.line_items_size(); ++i) {
    s = Named(CheckLine(in.line_items(i)), [i] { return absl::StrCat("line_items[", i, "]."); });
  }
  if (s.ok()) s = CheckCount("attributes", in.attributes_size(), 0, kMaxAttributes);
  for (const auto& [key, value] : in.attributes()) {
    if (!s.ok()) break;
    s = Named(CheckAttribute(key, value),
              [&key = key] { return absl::StrCat("attributes[", key.substr(0, 32), "]"); });
  }
  if (s.ok()) s = CheckTenant("tenant", in.tenant());
  if (!s.ok()) return s;
  core::FraudOrder o;
  o.order_id = in.order_id();
  o.user_id = in.user_id();
  o.payment_fingerprint = in.payment_fingerprint();
  o.device_id = in.device_id();
  o.shipping_address_hash = in.shipping_address_hash();
  o.billing_country = in.billing_country();
  o.shipping_country = in.shipping_country();
  o.ip_country = in.ip_country();
  o.currency = in.currency();
  o.amount = in.amount();
  o.account_created_ms = in.account_created_ms();
  o.timestamp_ms = in.timestamp_ms() == 0 ? core::Clock::Real()->NowMs() : in.timestamp_ms();
  // Map order is unspecified; features are made in name order.
  std::vector<const google::protobuf::Map<std::string, v1::AttributeValue>::value_type*> sorted;
  sorted.reserve(in.attributes_size());
  for (const auto& entry : in.attributes()) sorted.push_back(&entry);
  std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) {
    return a->first < b->first;
  });
  o.attributes.reserve(sorted.size());
  for (const auto* entry : sorted) {
    core::FraudAttribute& a = o.attributes.emplace_back();
    a.name = entry->first;
    if (entry->second.has_number()) {
      a.number = entry->second.number();
    } else {
      a.text = entry->second.text();
    }
  }
  o.lines.reserve(in.line_items_size());
  for (const v1::LineItem& line : in.line_items()) {
    o.lines.push_back({line.item_id(), line.quantity(), line.unit_price()});
  }
  return o;
}

// Decisions counted by outcome, null without metrics.
struct DecisionCounters {
  prometheus::Counter* approve = nullptr;
  prometheus::Counter* review = nullptr;
  prometheus::Counter* decline = nullptr;
  void Count(v1::Decision d) const {
    prometheus::Counter* c = d == v1::APPROVE ? approve : d == v1::REVIEW ? review : decline;
    if (c) c->Increment();
  }
};

UnaryHandler<v1::Order, v1::ScoreResponse> ScoreHandler(Runtime* rt, DecisionCounters counters) {
  return [rt, counters](grpc::ServerContext&, const v1::Order& req, v1::ScoreResponse* resp) {
    if (!rt->ready()) return NotReady();
    absl::StatusOr<core::FraudOrder> order = ToFraudOrder(req);
    if (!order.ok()) return ToGrpcStatus(order.status());
    const std::shared_ptr<const core::Snapshot> snap = rt->learner().snapshot();
    auto model = ServedModel<core::FraudView>(*snap, core::kFraudModelName);
    if (!model.ok()) return ToGrpcStatus(model.status());
    core::FraudScore score = model->first->Score(*order);
    if (!score.rescored) rt->AppendInBackground(core::FraudView::RecordEvent(*order, score));
    resp->set_probability(score.probability);
    resp->set_decision(static_cast<v1::Decision>(score.decision));
    resp->set_decided_by(std::move(score.decided_by));
    counters.Count(resp->decision());
    for (core::FraudReason& r : score.reasons) {
      v1::ReasonCode* out = resp->add_reasons();
      out->set_feature(std::move(r.feature));
      out->set_value(r.value);
      out->set_contribution(r.contribution);
    }
    resp->set_model_version(model->second);
    return grpc::Status::OK;
  };
}

absl::Status FraudFromFlags(ModuleOptions& options) {
  core::FraudOptions& f = options.Mutable<core::FraudOptions>();
  f.review_threshold = absl::GetFlag(FLAGS_fraud_review_threshold);
  f.decline_threshold = absl::GetFlag(FLAGS_fraud_decline_threshold);
  const int maturity_days = absl::GetFlag(FLAGS_fraud_maturity_days);
  f.maturity_ms = int64_t{24 * 3600 * 1000} * maturity_days;
  f.alpha = absl::GetFlag(FLAGS_ftrl_alpha);
  f.beta = absl::GetFlag(FLAGS_ftrl_beta);
  f.l1 = absl::GetFlag(FLAGS_ftrl_l1);
  f.l2 = absl::GetFlag(FLAGS_ftrl_l2);
  const std::string rule = absl::GetFlag(FLAGS_fraud_decision);
  f.rule = rule == "expected_loss" ? core::FraudRule::kExpectedLoss : core::FraudRule::kThreshold;
  f.review_loss = absl::GetFlag(FLAGS_fraud_review_cost);
  f.decline_loss = absl::GetFlag(FLAGS_fraud_decline_cost);
  f.hash_bits = absl::GetFlag(FLAGS_fraud_hash_bits);
  f.max_attribute_names = absl::GetFlag(FLAGS_fraud_max_attribute_names);
  f.calibration_window = absl::GetFlag(FLAGS_fraud_calibration_window);
  absl::Status s = CheckFlag(rule == "threshold" || rule == "expected_loss", "fraud_decision",
                             "must be threshold or expected_loss");
  if (s.ok()) s = CheckFlag(0 < f.review_threshold && f.review_threshold <= 1,
                             "fraud_review_threshold", "must be in (0, 1]");
  if (s.ok()) {
    s = CheckFlag(f.review_threshold <= f.decline_threshold && f.decline_threshold <= 1,
                  "fraud_decline_threshold", "must be in [--fraud_review_threshold, 1]");
  }
  if (s.ok()) s = CheckFlag(maturity_days >= 1, "fraud_maturity_days", "must be >= 1");
  if (s.ok()) s = CheckFlag(f.alpha > 0, "ftrl_alpha", "must be > 0");
  if (s.ok()) s = CheckFlag(f.beta >= 0, "ftrl_beta", "must be >= 0");
  if (s.ok()) s = CheckFlag(f.l1 >= 0, "ftrl_l1", "must be >= 0");
  if (s.ok()) s = CheckFlag(f.l2 >= 0, "ftrl_l2", "must be >= 0");
  if (s.ok()) s = CheckFlag(f.review_loss >= 0, "fraud_review_cost", "must be >= 0");
  if (s.ok()) {
    s = CheckFlag(f.decline_loss >= f.review_loss, "fraud_decline_cost",
                  "must be >= --fraud_review_cost");
  }
  if (s.ok()) s = CheckFlag(12 <= f.hash_bits && f.hash_bits <= 24, "fraud_hash_bits", "must be in 12..24");
  if (s.ok()) {
    s = CheckFlag(0 <= f.max_attribute_names && f.max_attribute_names <= 4096,
                  "fraud_max_attribute_names", "must be in 0..4096");
  }
  if (s.ok()) {
    s = CheckFlag(1 <= f.calibration_window && f.calibration_window <= 1000000,
                  "fraud_calibration_window", "must be in 1..1000000");
  }
  return s;
}

void ServeFraud(ServiceRegistrar& r) {
  using Raw = v1::Fraud::WithRawMethod_Score<v1::Fraud::Service>;
  Raw* fraud = r.Serve(std::make_unique<Raw>(), v1::Fraud::service_full_name(), Scope::kScore);
  DecisionCounters counters;
  if (Metrics* m = r.metrics()) {
    const std::string name = "mercato_fraud_decisions_total";
    const std::string help = "Fraud.Score decisions, by outcome";
    counters.approve = &m->AddCounter(name, help, {{"decision", "approve"}});
    counters.review = &m->AddCounter(name, help, {{"decision", "review"}});
    counters.decline = &m->AddCounter(name, help, {{"decision", "decline"}});
  }
  r.Unary(fraud, &Raw::RequestScore, "Score", ScoreHandler(r.runtime(), counters));
}

}  // namespace

ModelModule FraudModule() {
  return {
      .name = core::kFraudModelName,
      .from_flags = FraudFromFlags,
      .make = [](const ModuleOptions& o, const ModelDependencies&) -> std::unique_ptr<core::Model> {
        return std::make_unique<core::FraudModel>(o.Get<core::FraudOptions>());
      },
      .serve = ServeFraud,
      .identifiers = core::FraudView::VisitIdentifiers};
}

}  // namespace mercato::server
