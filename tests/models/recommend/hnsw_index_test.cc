#include "models/recommend/hnsw_index.h"

#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace mercato::core {
namespace {

TEST(HnswIndexTest, DecodeRejectsIndexesItCannotSearchSafely) {
  constexpr int kDim = 16;
  constexpr uint32_t kRows = 500;
  const HnswOptions options;
  HnswIndex index(kDim, options);
  std::vector<float> v(kDim);
  uint64_t seed = 7;
  const auto next = [&seed] {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<float>(seed >> 40) / static_cast<float>(1 << 24) - 0.5f;
  };
  for (uint32_t row = 0; row < kRows; ++row) {
    for (float& x : v) x = next();
    index.Upsert(row, v.data());
  }
  const std::string bytes = index.Encode();
  absl::StatusOr<std::unique_ptr<HnswIndex>> same = HnswIndex::Decode(kDim, options, bytes, kRows);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ((*same)->size(), kRows);
  for (int q = 0; q < 20; ++q) {
    for (float& x : v) x = next();
    EXPECT_EQ((*same)->Search(v.data(), 10), index.Search(v.data(), 10));
  }

  const auto code = [&](int dim, const HnswOptions& o, std::string_view b, size_t rows) {
    return HnswIndex::Decode(dim, o, b, rows).status().code();
  };
  EXPECT_EQ(code(kDim + 4, options, bytes, kRows), absl::StatusCode::kDataLoss);  // vector size
  // hnswlib's header: level-0 offset, capacity, count, ... (size_t each).
  std::string huge = bytes;
  const size_t capacity = size_t{1} << 40;
  std::memcpy(huge.data() + sizeof(size_t), &capacity, sizeof(capacity));
  EXPECT_EQ(code(kDim, options, huge, kRows), absl::StatusCode::kDataLoss);
  HnswOptions other = options;
  other.m = options.m * 2;
  EXPECT_EQ(code(kDim, other, bytes, kRows), absl::StatusCode::kDataLoss);
  EXPECT_EQ(code(kDim, options, bytes.substr(0, bytes.size() / 2), kRows),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(code(kDim, options, bytes.substr(0, 10), kRows), absl::StatusCode::kDataLoss);
  // hnswlib's header is 96 bytes; the first node's link count follows, then
  // its links. A link past the last node is refused.
  std::string bad_link = bytes;
  std::memset(bad_link.data() + 96 + 4, 0xff, 4);
  EXPECT_EQ(code(kDim, options, bad_link, kRows), absl::StatusCode::kDataLoss);
  // Whatever single byte is damaged, decoding fails or gives an index that
  // can be searched and grown.
  for (size_t pos = 0; pos < bytes.size(); pos += 37) {
    std::string damaged = bytes;
    damaged[pos] = static_cast<char>(damaged[pos] ^ 0x5a);
    absl::StatusOr<std::unique_ptr<HnswIndex>> d = HnswIndex::Decode(kDim, options, damaged, kRows);
    if (!d.ok()) continue;
    EXPECT_LE((*d)->Search(v.data(), 10).size(), static_cast<size_t>(options.ef_search))
        << "byte " << pos;
    (*d)->Upsert(kRows, v.data());
    EXPECT_EQ((*d)->size(), kRows + 1) << "byte " << pos;
  }
}

}  // namespace
}  // namespace mercato::core
