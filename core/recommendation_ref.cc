#include "core/recommendation_ref.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/bytes.h"

namespace mercato::core {
namespace {

constexpr int kMaxSource = 16;
constexpr size_t kMaxArmName = 32;

}  // namespace

std::string SourceName(int source) {
  static const char* const kNames[] = {"personal", "session", "category_popular", "popular",
                                       "similar"};
  if (source >= 1 && source <= 5) return kNames[source - 1];
  return absl::StrCat(source);
}

bool IsArmName(std::string_view name) {
  if (name.empty() || name.size() > kMaxArmName) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

std::string FormatRecommendationId(const RecommendationRef& ref) {
  return absl::StrCat("r1.", ref.arm, ".", ref.source, ".", ref.served_ms, ".",
                      absl::Hex(ref.nonce, absl::kZeroPad16));
}

std::optional<RecommendationRef> ParseRecommendationId(std::string_view id) {
  const std::vector<absl::string_view> parts =
      absl::StrSplit(absl::string_view(id.data(), id.size()), '.');
  RecommendationRef ref;
  if (parts.size() != 5 || parts[0] != "r1" ||
      !IsArmName(std::string_view(parts[1].data(), parts[1].size())) ||
      !absl::SimpleAtoi(parts[2], &ref.source) || ref.source < 1 || ref.source > kMaxSource ||
      !absl::SimpleAtoi(parts[3], &ref.served_ms) || ref.served_ms <= 0 || parts[4].size() != 16 ||
      !absl::SimpleHexAtoi(parts[4], &ref.nonce)) {
    return std::nullopt;
  }
  ref.arm = std::string(parts[1]);
  if (FormatRecommendationId(ref) != id) return std::nullopt;  // one spelling only
  return ref;
}

std::string EncodeServed(const std::vector<ServedCount>& counts) {
  std::string out;
  ByteWriter w(&out);
  w.Varint(counts.size());
  for (const ServedCount& c : counts) {
    w.Str(c.arm);
    w.Varint(static_cast<uint64_t>(c.source));
    w.Varint(c.answers);
  }
  return out;
}

std::vector<ServedCount> DecodeServed(std::string_view payload) {
  ByteReader r(payload);
  std::vector<ServedCount> counts;
  for (uint64_t n = r.Varint(); n > 0 && r.status().ok(); --n) {
    ServedCount c;
    c.arm = r.Str();
    const uint64_t source = r.Varint();
    c.answers = r.Varint();
    if (!IsArmName(c.arm) || source < 1 || source > kMaxSource) r.Invalidate();
    c.source = static_cast<int>(source);
    counts.push_back(std::move(c));
  }
  if (!r.status().ok() || !r.done()) counts.clear();
  return counts;
}

}  // namespace mercato::core
