#include "core/row_block_matrix.h"

#include <gtest/gtest.h>

namespace mercato::core {
namespace {

TEST(RowBlockMatrixTest, ViewsKeepTheirContentsWhileTheWriterMovesOn) {
  RowBlockMatrix<float> m(/*cols=*/4, /*rows_per_block=*/8);
  m.Resize(20);
  m.MutableRow(3)[0] = 1;
  RowBlockView<float> v1 = m.Freeze();
  m.MutableRow(3)[0] = 2;
  m.Resize(30);
  m.MutableRow(25)[1] = 7;
  RowBlockView<float> v2 = m.Freeze();
  EXPECT_EQ(v1.Row(3)[0], 1);
  EXPECT_EQ(v1.rows(), 20u);
  EXPECT_EQ(v2.Row(3)[0], 2);
  EXPECT_EQ(v2.Row(25)[1], 7);
  EXPECT_EQ(v2.rows(), 30u);
}

TEST(RowBlockMatrixTest, PublicationCopiesOnlyChangedBlocks) {
  RowBlockMatrix<float> m(64, 256);
  m.Resize(256 * 100);
  RowBlockView<float> before = m.Freeze();
  EXPECT_EQ(m.blocks_copied(), 0u);
  // Three writes into two blocks copy exactly those two.
  m.MutableRow(0)[0] = 1;
  m.MutableRow(1)[0] = 1;
  m.MutableRow(256 * 50)[0] = 1;
  EXPECT_EQ(m.blocks_copied(), 2u);
  EXPECT_EQ(m.pages_copied(), 1u);
  RowBlockView<float> after = m.Freeze();
  for (size_t b = 0; b < after.num_blocks(); ++b) {
    const bool changed = b == 0 || b == 50;
    EXPECT_EQ(after.BlockData(b) != before.BlockData(b), changed) << b;
  }
  // With no view left holding the old blocks, writes go in place.
  before = RowBlockView<float>();
  after = RowBlockView<float>();
  m.MutableRow(2)[0] = 3;
  EXPECT_EQ(m.blocks_copied(), 2u);
  EXPECT_EQ(m.pages_copied(), 1u);
}

TEST(RowBlockMatrixTest, PublicationCopiesOnlyChangedPages) {
  // Two rows per block, 2,000 blocks: eight pages of blocks.
  RowBlockMatrix<double> m(3, 2);
  m.Resize(4000);
  for (size_t r = 0; r < m.rows(); ++r) m.MutableRow(r)[0] = static_cast<double>(r);
  RowBlockView<double> before = m.Freeze();
  // A write into the first page and one into the last copy those two pages
  // and their two blocks; growing adds to the last page.
  m.MutableRow(5)[1] = 1;
  m.MutableRow(3999)[1] = 1;
  m.Resize(4100);
  m.MutableRow(4050)[2] = 9;
  EXPECT_EQ(m.pages_copied(), 2u);
  EXPECT_EQ(m.blocks_copied(), 2u);
  RowBlockView<double> after = m.Freeze();
  ASSERT_EQ(before.num_blocks(), 2000u);
  ASSERT_EQ(after.num_blocks(), 2050u);
  for (size_t b = 0; b < before.num_blocks(); ++b) {
    const bool changed = b == 2 || b == 1999;
    EXPECT_EQ(after.BlockData(b) != before.BlockData(b), changed) << b;
  }
  for (size_t r = 0; r < before.rows(); ++r) {
    ASSERT_EQ(before.Row(r)[0], static_cast<double>(r));
    ASSERT_EQ(after.Row(r)[0], static_cast<double>(r));
  }
  EXPECT_EQ(before.Row(5)[1], 0);
  EXPECT_EQ(after.Row(5)[1], 1);
  EXPECT_EQ(after.Row(3999)[1], 1);
  EXPECT_EQ(after.Row(4050)[2], 9);
  EXPECT_EQ(after.rows(), 4100u);
  EXPECT_EQ(before.rows(), 4000u);
}

}  // namespace
}  // namespace mercato::core
