// What online evaluation of recommendations writes and reads:
//   - a recommendation id, which every Recommend answer carries and events
//     may carry back: "r1.<arm>.<source>.<served_ms>.<nonce>", so that an
//     event names the experiment arm, the answer's source (that of its
//     first item) and when it was served without any state kept per answer;
//   - the payload of a RECOMMENDATIONS_SERVED record: how many answers each
//     (arm, source) gave since the last record.
#ifndef MERCATO_CORE_RECOMMENDATION_REF_H_
#define MERCATO_CORE_RECOMMENDATION_REF_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mercato::core {

// The arm of requests that name none.
inline constexpr char kDefaultArm[] = "default";

struct RecommendationRef {
  std::string arm;
  int source = 0;  // RecommendSource / mercato.v1.RecommendationSource
  int64_t served_ms = 0;
  uint64_t nonce = 0;
  bool operator==(const RecommendationRef&) const = default;
};

// "personal", "session", "category_popular", "popular", "similar", or the
// number for another.
std::string SourceName(int source);

// Whether `name` may name an arm: 1..32 of [a-z0-9_].
bool IsArmName(std::string_view name);

std::string FormatRecommendationId(const RecommendationRef& ref);
// None unless `id` is one FormatRecommendationId gives.
std::optional<RecommendationRef> ParseRecommendationId(std::string_view id);

struct ServedCount {
  std::string arm;
  int source = 0;
  uint64_t answers = 0;
  bool operator==(const ServedCount&) const = default;
};
std::string EncodeServed(const std::vector<ServedCount>& counts);
// Empty for bytes EncodeServed did not give.
std::vector<ServedCount> DecodeServed(std::string_view payload);

}  // namespace mercato::core

#endif  // MERCATO_CORE_RECOMMENDATION_REF_H_
