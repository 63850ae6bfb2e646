// Request validation and proto <-> core conversion. Every check names the
// field (as a path like `events[3].event_id`) and the limit it broke.
#ifndef MERCATO_SERVER_VALIDATION_H_
#define MERCATO_SERVER_VALIDATION_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/event.h"
#include "mercato/v1/catalog.pb.h"
#include "mercato/v1/ingest.pb.h"

namespace mercato::server {

inline constexpr size_t kMaxIdBytes = 128;
inline constexpr int kMaxBatchEvents = 10000;
inline constexpr int kMaxBatchItems = 10000;
inline constexpr double kMaxPrice = 1e9;
inline constexpr double kMaxQuantity = 1e6;
inline constexpr int kMaxCategoryDepth = 8;
inline constexpr int kMaxAttributes = 64;
inline constexpr size_t kMaxAttributeValueBytes = 1024;
inline constexpr int kMaxReadEvents = 10000;

// An id: 1..128 bytes of valid UTF-8.
absl::Status CheckId(absl::string_view field, absl::string_view value);
// As CheckId, but empty is allowed.
absl::Status CheckOptionalId(absl::string_view field, absl::string_view value);
// INVALID_ARGUMENT when `value` is a name an erasure leaves ("erased-...",
// core::ErasedName), which no customer, session, card or device may take.
absl::Status CheckNotErasedName(absl::string_view field, absl::string_view value);
// A finite number in [lo, hi].
absl::Status CheckNumber(absl::string_view field, double value, double lo, double hi);
// An integer count in [lo, hi].
absl::Status CheckCount(absl::string_view field, int64_t value, int64_t lo, int64_t hi);
// The reserved tenant field must be empty for now.
absl::Status CheckTenant(absl::string_view field, absl::string_view tenant);

// `s`, or when it failed its error with `prefix()` in front of its message:
// a check of a field inside a list runs under a short name (or "", for an
// error that begins ": ") and the field's full path, which costs a string,
// is built only for an error.
template <class Prefix>
absl::Status Named(absl::Status s, const Prefix& prefix) {
  return s.ok() ? s : absl::InvalidArgumentError(absl::StrCat(prefix(), s.message()));
}

// Validates `in` and converts it; `prefix` is the event's field path, e.g.
// "events[3]".
absl::StatusOr<core::Event> ToCoreEvent(const v1::Event& in, absl::string_view prefix);
void ToProtoEvent(const core::Event& in, v1::Event* out);

absl::StatusOr<core::Item> ToCoreItem(const v1::Item& in, absl::string_view prefix);
void ToProtoItem(const core::Item& in, v1::Item* out);

}  // namespace mercato::server

#endif  // MERCATO_SERVER_VALIDATION_H_
