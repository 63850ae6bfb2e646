// Stable hashes are the same in every process and build: fixed values
// (FNV-1a of the length-prefixed bytes, then splitmix64's finaliser, checked
// by hand in Python), and values that differ in order or split differ.
#include "core/stable_hash.h"

#include <gtest/gtest.h>

#include <string>

namespace mercato::core {
namespace {

TEST(StableHashTest, KnownValuesInEveryProcess) {
  EXPECT_EQ(StableHash(std::string_view("mercato")), 2082637276450560116ULL);
  EXPECT_EQ(StableHash(5, std::string_view("payment_method"), std::string_view("crypto")),
            10021366542465967335ULL);
  EXPECT_EQ(StableHash(uint64_t{42}, uint64_t{7}), 14502426702292022973ULL);
}

TEST(StableHashTest, OrderAndSplitMatter) {
  const std::string ab = "ab", a = "a", b = "b";
  EXPECT_NE(StableHash(std::string_view(ab)), StableHash(std::string_view(a), std::string_view(b)));
  EXPECT_NE(StableHash(std::string_view(a), std::string_view(b)),
            StableHash(std::string_view(b), std::string_view(a)));
  EXPECT_NE(StableHash(1, 2), StableHash(2, 1));
}

}  // namespace
}  // namespace mercato::core
