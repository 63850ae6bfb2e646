#include "server/access.h"

#include <gtest/gtest.h>

#include <set>

namespace mercato::server {
namespace {

TEST(AccessTest, ALineFromTokenLineAdmitsItsTokenWithItsScopesOnly) {
  const std::string token = NewToken();
  const std::string other = NewToken();
  absl::StatusOr<AccessTable> table =
      AccessTable::Parse(TokenLine("storefront", token, {Scope::kRecommend, Scope::kSegment}) +
                             "\n" + TokenLine("ops", other, {Scope::kAdmin}) + "  # on-call\n",
                         "access");
  ASSERT_TRUE(table.ok()) << table.status();
  const Grant* g = table->ForToken(token);
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->name, "storefront");
  EXPECT_TRUE(g->Allows(Scope::kRecommend));
  EXPECT_TRUE(g->Allows(Scope::kSegment));
  EXPECT_FALSE(g->Allows(Scope::kAdmin));
  EXPECT_FALSE(g->Allows(Scope::kIngest));
  ASSERT_NE(table->ForToken(other), nullptr);
  EXPECT_EQ(table->ForToken(other)->name, "ops");
  EXPECT_EQ(table->ForToken(token + "x"), nullptr);
  EXPECT_EQ(table->ForToken(""), nullptr);
}

TEST(AccessTest, TheFileHoldsTheTokensHashNotTheToken) {
  const std::string token = NewToken();
  const std::string line = TokenLine("a", token, {Scope::kScore});
  EXPECT_EQ(line.find(token), std::string::npos);
  EXPECT_NE(line.find(HexOf(HashToken(token))), std::string::npos);
  // SHA-256 of "abc", from FIPS 180-2.
  EXPECT_EQ(HexOf(HashToken("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(AccessTest, NewTokensAreLongAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string t = NewToken();
    EXPECT_EQ(t.size(), 4u + 43u);
    EXPECT_EQ(t.substr(0, 4), "mct_");
    EXPECT_EQ(t.find_first_of(" \t\n#"), std::string::npos);
    seen.insert(t);
  }
  EXPECT_EQ(seen.size(), 100u);
}

TEST(AccessTest, CertificatesAreGrantedByAnyOfTheirIdentities) {
  absl::StatusOr<AccessTable> table =
      AccessTable::Parse("cert checkout checkout.shop.example score ingest\n", "access");
  ASSERT_TRUE(table.ok()) << table.status();
  const Grant* g = table->ForCertificate({"CN=checkout.shop.example", "checkout.shop.example"});
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->name, "checkout");
  EXPECT_TRUE(g->Allows(Scope::kScore));
  EXPECT_FALSE(g->Allows(Scope::kRecommend));
  EXPECT_EQ(table->ForCertificate({"CN=stranger"}), nullptr);
}

TEST(AccessTest, ErrorsNameTheFileTheLineAndTheProblem) {
  struct Case {
    std::string text, expected;
  };
  const std::string hash(64, 'a');
  for (const Case& c : std::vector<Case>{
           {"# ok\nuser bob " + hash + " admin\n", "access:2: starts with 'user'"},
           {"token bob " + hash + "\n", "access:1: needs a name"},
           {"token bob " + hash + " admin root\n", "access:1: unknown scope 'root'"},
           {"token bob 1234 admin\n", "access:1: the token's hash must be 64 hex digits"},
           {"token bob " + std::string(64, 'g') + " admin\n", "must be 64 hex digits"},
       }) {
    absl::StatusOr<AccessTable> t = AccessTable::Parse(c.text, "access");
    ASSERT_FALSE(t.ok()) << c.text;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find(c.expected), std::string::npos) << t.status();
  }
}

TEST(AccessTest, ScopeNamesRoundTrip) {
  for (int i = 0; i < kScopeCount; ++i) {
    const Scope s = static_cast<Scope>(i);
    EXPECT_EQ(ParseScope(ScopeName(s)), s);
  }
  EXPECT_FALSE(ParseScope("everything").has_value());
}

}  // namespace
}  // namespace mercato::server
