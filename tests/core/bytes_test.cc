#include "core/bytes.h"

#include <gtest/gtest.h>

namespace mercato::core {
namespace {

TEST(BytesTest, RoundTripsEveryType) {
  std::string buf;
  ByteWriter w(&buf);
  w.U8(7);
  w.Varint(300);
  w.Varint(UINT64_MAX);
  w.I64(-5);
  w.F64(3.25);
  w.Str("hello");
  ByteReader r(buf);
  EXPECT_EQ(r.U8(), 7);
  EXPECT_EQ(r.Varint(), 300u);
  EXPECT_EQ(r.Varint(), UINT64_MAX);
  EXPECT_EQ(r.I64(), -5);
  EXPECT_EQ(r.F64(), 3.25);
  EXPECT_EQ(r.Str(), "hello");
  EXPECT_TRUE(r.done());
  EXPECT_TRUE(r.status().ok());
}

TEST(BytesTest, TruncatedInputIsAnErrorNotACrash) {
  std::string buf;
  ByteWriter w(&buf);
  w.Str("a long enough string");
  for (size_t cut = 0; cut < buf.size(); ++cut) {
    ByteReader r(std::string_view(buf).substr(0, cut));
    r.Str();
    EXPECT_FALSE(r.status().ok()) << cut;
  }
}

}  // namespace
}  // namespace mercato::core
