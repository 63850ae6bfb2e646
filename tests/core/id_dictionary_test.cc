#include "core/id_dictionary.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

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

TEST(IdDictionaryTest, ARenamedRowKeepsItsIndexAndEarlierViewsTheOldName) {
  IdDictionary d;
  for (int i = 0; i < 5000; ++i) d.FindOrAdd("u" + std::to_string(i));
  const IdDictionaryView before = d.Freeze();
  d.Rename(4097, "erased-7");
  EXPECT_FALSE(d.Find("u4097").has_value());
  EXPECT_EQ(d.Find("erased-7"), 4097u);
  EXPECT_EQ(d.Name(4097), "erased-7");
  EXPECT_EQ(d.Find("u4098"), 4098u);
  EXPECT_EQ(before.Find("u4097"), 4097u);
  EXPECT_EQ(before.Name(4097), "u4097");
  EXPECT_FALSE(before.Find("erased-7").has_value());
  // The old name comes back as a new row.
  EXPECT_EQ(d.FindOrAdd("u4097"), 5000u);
  EXPECT_EQ(d.Freeze().Find("erased-7"), 4097u);
}

TEST(IdDictionaryTest, ACopyAddsWithoutDisturbingTheOriginal) {
  IdDictionary original;
  for (int i = 0; i < 5000; ++i) original.FindOrAdd(absl::StrCat("item-", i));
  const IdDictionaryView before = original.Freeze();
  IdDictionary copy = original;
  // Different ids at the same new indices, and enough of them to regrow
  // the copy's table.
  for (int i = 0; i < 3000; ++i) {
    EXPECT_EQ(copy.FindOrAdd(absl::StrCat("copy-", i)), 5000u + i);
    EXPECT_EQ(original.FindOrAdd(absl::StrCat("orig-", i)), 5000u + i);
  }
  EXPECT_EQ(copy.Name(5000), "copy-0");
  EXPECT_EQ(original.Name(5000), "orig-0");
  EXPECT_FALSE(original.Find("copy-7").has_value());
  EXPECT_FALSE(copy.Find("orig-7").has_value());
  EXPECT_EQ(copy.Find("item-4999"), std::optional<uint32_t>(4999));
  EXPECT_EQ(before.size(), 5000u);
  EXPECT_FALSE(before.Find("orig-0").has_value());
  EXPECT_EQ(before.Find("item-123"), std::optional<uint32_t>(123));
}

TEST(IdDictionaryTest, ReadersFindEveryFrozenIdWhileTheWriterAdds) {
  IdDictionary d;
  for (int i = 0; i < 1000; ++i) d.FindOrAdd(absl::StrCat("o", i));
  std::atomic<std::shared_ptr<const IdDictionaryView>> published(
      std::make_shared<const IdDictionaryView>(d.Freeze()));
  std::atomic<bool> done{false};
  std::atomic<int> wrong{0};
  std::thread reader([&] {
    while (!done.load()) {
      std::shared_ptr<const IdDictionaryView> v = published.load();
      const size_t n = v->size();
      for (size_t i : {size_t{0}, n / 2, n - 1}) {
        if (v->Find(absl::StrCat("o", i)) != std::optional<uint32_t>(i)) ++wrong;
      }
      if (v->Find(absl::StrCat("o", n)).has_value()) ++wrong;
    }
  });
  // Grows the table several times while the reader probes it.
  for (int i = 1000; i < 200000; ++i) {
    d.FindOrAdd(absl::StrCat("o", i));
    if (i % 100 == 0) published.store(std::make_shared<const IdDictionaryView>(d.Freeze()));
  }
  done = true;
  reader.join();
  EXPECT_EQ(wrong.load(), 0);
}

}  // namespace
}  // namespace mercato::core
