#include "core/id_dictionary.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace mercato::core {
namespace {

TEST(IdDictionaryTest, AssignsDenseIndicesInOrderOfFirstAppearance) {
  IdDictionary d;
  EXPECT_EQ(d.FindOrAdd("a"), 0u);
  EXPECT_EQ(d.FindOrAdd("b"), 1u);
  EXPECT_EQ(d.FindOrAdd("a"), 0u);
  EXPECT_EQ(d.size(), 2u);
  EXPECT_EQ(d.Name(1), "b");
  EXPECT_FALSE(d.Find("c").has_value());
}

TEST(IdDictionaryTest, ViewsSeeExactlyWhatWasThereWhenFrozen) {
  IdDictionary d;
  std::vector<IdDictionaryView> views;
  constexpr int kIds = 50000;
  for (int i = 0; i < kIds; ++i) {
    d.FindOrAdd(absl::StrCat("user-", i));
    if (i % 997 == 0) views.push_back(d.Freeze());
  }
  IdDictionaryView last = d.Freeze();
  ASSERT_EQ(last.size(), static_cast<size_t>(kIds));
  for (int i = 0; i < kIds; i += 7) {
    const std::string id = absl::StrCat("user-", i);
    ASSERT_EQ(last.Find(id), std::optional<uint32_t>(i));
    ASSERT_EQ(last.Name(i), id);
  }
  for (const IdDictionaryView& v : views) {
    EXPECT_TRUE(v.Find(absl::StrCat("user-", v.size() - 1)).has_value());
    EXPECT_FALSE(v.Find(absl::StrCat("user-", v.size())).has_value());
  }
}

}  // namespace
}  // namespace mercato::core
