#include "server/validation.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/recommendation_ref.h"

namespace mercato::server {
namespace {

bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // Ids are mostly ASCII: eight bytes at a time while no high bit is set.
    uint64_t word;
    if (i + sizeof word <= s.size() &&
        (std::memcpy(&word, s.data() + i, sizeof word), (word & 0x8080808080808080) == 0)) {
      i += sizeof word;
      continue;
    }
    const unsigned char c = s[i];
    int n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (int k = 1; k <= n; ++k) {
      const unsigned char cc = s[i + k];
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

std::string Field(absl::string_view prefix, absl::string_view name) {
  return prefix.empty() ? std::string(name) : absl::StrCat(prefix, ".", name);
}

}  // namespace

absl::Status CheckNotErasedName(absl::string_view field, absl::string_view value) {
  if (absl::StartsWith(value, "erased-")) {
    return Invalid(field, "must not start with 'erased-', which names erased customers");
  }
  return absl::OkStatus();
}

absl::Status CheckOptionalId(absl::string_view field, absl::string_view value) {
  if (value.size() > kMaxIdBytes) {
    return Invalid(field, absl::StrCat("must be at most ", kMaxIdBytes, " bytes, got ",
                                       value.size()));
  }
  if (!IsValidUtf8(value)) return Invalid(field, "must be valid UTF-8");
  return absl::OkStatus();
}

absl::Status CheckId(absl::string_view field, absl::string_view value) {
  if (value.empty()) return Invalid(field, "is required (1..128 bytes)");
  return CheckOptionalId(field, value);
}

absl::Status CheckNumber(absl::string_view field, double value, double lo, double hi) {
  if (!std::isfinite(value)) return Invalid(field, "must be a finite number");
  if (value < lo || value > hi) {
    return Invalid(field, absl::StrCat("must be in [", lo, ", ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

absl::Status CheckCount(absl::string_view field, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) {
    return Invalid(field, absl::StrCat("must be in [", lo, ", ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

absl::Status CheckTenant(absl::string_view field, absl::string_view tenant) {
  if (!tenant.empty()) return Invalid(field, "is reserved and must be empty");
  return absl::OkStatus();
}

absl::StatusOr<core::Event> ToCoreEvent(const v1::Event& in, absl::string_view prefix) {
  if (v1::EventType_IsValid(in.type()) && in.type() > v1::FRAUD_LABEL) {
    return Invalid(Field(prefix, "type"),
                   absl::StrCat(v1::EventType_Name(in.type()),
                                " is written by the server itself, not published"));
  }
  if (!v1::EventType_IsValid(in.type()) || in.type() == v1::EVENT_TYPE_UNSPECIFIED) {
    return Invalid(Field(prefix, "type"),
                   absl::StrCat("must be one of VIEW..FRAUD_LABEL (1..8), got ", in.type()));
  }
  if (!in.category().empty()) {
    return Invalid(Field(prefix, "category"), "is set by the catalogue and must be empty");
  }
  if (!in.payload().empty()) {
    return Invalid(Field(prefix, "payload"), "is set by the server and must be empty");
  }
  if (!in.attributes().empty()) {
    return Invalid(Field(prefix, "attributes"), "is set by the catalogue and must be empty");
  }
  const auto type = static_cast<core::EventType>(in.type());
  const bool needs_item = type != core::EventType::kFraudLabel;
  const bool needs_user = type != core::EventType::kFraudLabel;
  absl::Status s = CheckId(Field(prefix, "event_id"), in.event_id());
  if (s.ok()) s = needs_user ? CheckId(Field(prefix, "user_id"), in.user_id())
                             : CheckOptionalId(Field(prefix, "user_id"), in.user_id());
  if (s.ok()) s = needs_item ? CheckId(Field(prefix, "item_id"), in.item_id())
                             : CheckOptionalId(Field(prefix, "item_id"), in.item_id());
  if (s.ok()) s = CheckOptionalId(Field(prefix, "session_id"), in.session_id());
  if (s.ok()) s = CheckNotErasedName(Field(prefix, "user_id"), in.user_id());
  if (s.ok()) s = CheckNotErasedName(Field(prefix, "session_id"), in.session_id());
  if (s.ok()) s = type == core::EventType::kFraudLabel
                      ? CheckId(Field(prefix, "order_id"), in.order_id())
                      : CheckOptionalId(Field(prefix, "order_id"), in.order_id());
  if (s.ok()) s = CheckCount(Field(prefix, "timestamp_ms"), in.timestamp_ms(), 1,
                             int64_t{4102444800000});  // 2100-01-01
  if (s.ok()) s = CheckNumber(Field(prefix, "quantity"), in.quantity(), 0, kMaxQuantity);
  if (s.ok()) s = CheckNumber(Field(prefix, "unit_price"), in.unit_price(), 0, kMaxPrice);
  if (s.ok()) s = CheckNumber(Field(prefix, "value"), in.value(), -1e9, 1e9);
  if (s.ok() && type == core::EventType::kPurchase && in.unit_price() <= 0) {
    s = Invalid(Field(prefix, "unit_price"), "must be > 0 for PURCHASE");
  }
  if (s.ok() && type == core::EventType::kFraudLabel && in.value() != 0 && in.value() != 1) {
    s = Invalid(Field(prefix, "value"), "must be 0 (legitimate) or 1 (fraud) for FRAUD_LABEL");
  }
  if (s.ok() && !in.recommendation_id().empty() &&
      !core::ParseRecommendationId(in.recommendation_id())) {
    s = Invalid(Field(prefix, "recommendation_id"),
                "is not an id Recommend gave (r1.<arm>.<source>.<served_ms>.<nonce>)");
  }
  if (s.ok()) s = CheckTenant(Field(prefix, "tenant"), in.tenant());
  if (!s.ok()) return s;
  core::Event out;
  out.type = type;
  out.event_id = in.event_id();
  out.user_id = in.user_id();
  out.item_id = in.item_id();
  out.session_id = in.session_id();
  out.order_id = in.order_id();
  out.timestamp_ms = in.timestamp_ms();
  out.quantity = in.quantity();
  if (out.quantity == 0 &&
      (type == core::EventType::kPurchase || type == core::EventType::kRefund)) {
    out.quantity = 1;
  }
  out.unit_price = in.unit_price();
  out.value = in.value();
  out.recommendation_id = in.recommendation_id();
  return out;
}

void ToProtoEvent(const core::Event& in, v1::Event* out) {
  out->set_event_id(in.event_id);
  out->set_type(static_cast<v1::EventType>(in.type));
  out->set_user_id(in.user_id);
  out->set_item_id(in.item_id);
  out->set_session_id(in.session_id);
  out->set_order_id(in.order_id);
  out->set_timestamp_ms(in.timestamp_ms);
  out->set_quantity(in.quantity);
  out->set_unit_price(in.unit_price);
  out->set_value(in.value);
  out->set_category(in.category);
  out->set_payload(in.payload);
  out->set_recommendation_id(in.recommendation_id);
  out->mutable_attributes()->insert(in.attributes.begin(), in.attributes.end());
}

absl::StatusOr<core::Item> ToCoreItem(const v1::Item& in, absl::string_view prefix) {
  absl::Status s = CheckId(Field(prefix, "item_id"), in.item_id());
  if (s.ok()) s = CheckCount(Field(prefix, "category_path"), in.category_path_size(), 0,
                             kMaxCategoryDepth);
  for (int i = 0; s.ok() && i < in.category_path_size(); ++i) {
    const std::string field = absl::StrCat(Field(prefix, "category_path"), "[", i, "]");
    s = CheckId(field, in.category_path(i));
    if (s.ok() && std::any_of(in.category_path(i).begin(), in.category_path(i).end(),
                              [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
      s = Invalid(field, "must not contain control characters");
    }
  }
  if (s.ok()) s = CheckNumber(Field(prefix, "price"), in.price(), 0, kMaxPrice);
  if (s.ok()) s = CheckNumber(Field(prefix, "unit_cost"), in.unit_cost(), 0, kMaxPrice);
  if (s.ok()) s = CheckCount(Field(prefix, "created_at_ms"), in.created_at_ms(), 0,
                             int64_t{4102444800000});
  if (s.ok()) s = CheckCount(Field(prefix, "attributes"), in.attributes_size(), 0, kMaxAttributes);
  if (s.ok()) {
    for (const auto& [k, v] : in.attributes()) {
      const std::string field = absl::StrCat(Field(prefix, "attributes"), "[", k.substr(0, 32), "]");
      s = CheckId(field, k);
      if (s.ok() && (v.size() > kMaxAttributeValueBytes || !IsValidUtf8(v))) {
        s = Invalid(field, "value must be valid UTF-8 of at most 1024 bytes");
      }
      if (!s.ok()) break;
    }
  }
  if (!s.ok()) return s;
  core::Item out;
  out.item_id = in.item_id();
  out.category_path.assign(in.category_path().begin(), in.category_path().end());
  out.price = in.price();
  out.unit_cost = in.unit_cost();
  out.in_stock = in.in_stock();
  out.created_at_ms = in.created_at_ms();
  out.attributes.insert(in.attributes().begin(), in.attributes().end());
  return out;
}

void ToProtoItem(const core::Item& in, v1::Item* out) {
  out->set_item_id(in.item_id);
  for (const auto& c : in.category_path) out->add_category_path(c);
  out->set_price(in.price);
  out->set_unit_cost(in.unit_cost);
  out->set_in_stock(in.in_stock);
  out->set_created_at_ms(in.created_at_ms);
  out->mutable_attributes()->insert(in.attributes.begin(), in.attributes.end());
}

}  // namespace mercato::server
