#include "core/recommendation_ref.h"

#include "gtest/gtest.h"

namespace mercato::core {
namespace {

TEST(RecommendationRefTest, IdsRoundTripAndOnlyTheirOwnSpellingParses) {
  const RecommendationRef ref{"treatment_2", 1, 1767225600123, 0x00ab00cd00ef0012ULL};
  const std::string id = FormatRecommendationId(ref);
  EXPECT_EQ(id, "r1.treatment_2.1.1767225600123.00ab00cd00ef0012");
  EXPECT_EQ(ParseRecommendationId(id), ref);
  for (const char* bad :
       {"", "r1", "r2.a.1.5.00ab00cd00ef0012", "r1.A.1.5.00ab00cd00ef0012",
        "r1.a.0.5.00ab00cd00ef0012", "r1.a.1.0.00ab00cd00ef0012", "r1.a.1.5.ab00cd00ef0012",
        "r1.a.1.05.00ab00cd00ef0012", "r1.a.1.5.00AB00CD00EF0012", "r1.a.1.5.00ab00cd00ef0012.x",
        "r1..1.5.00ab00cd00ef0012"}) {
    EXPECT_FALSE(ParseRecommendationId(bad)) << bad;
  }
  EXPECT_FALSE(IsArmName(std::string(33, 'a')));
  EXPECT_TRUE(IsArmName(std::string(32, 'a')));
}

TEST(RecommendationRefTest, ServedCountsRoundTripAndDamageGivesNone) {
  const std::vector<ServedCount> counts = {{"default", 1, 17}, {"popular", 4, 3}};
  const std::string bytes = EncodeServed(counts);
  EXPECT_EQ(DecodeServed(bytes), counts);
  EXPECT_TRUE(DecodeServed(bytes.substr(0, bytes.size() - 1)).empty());
  EXPECT_TRUE(DecodeServed(bytes + "x").empty());
  EXPECT_TRUE(DecodeServed(EncodeServed({{"Bad Arm", 1, 1}})).empty());
}

}  // namespace
}  // namespace mercato::core
