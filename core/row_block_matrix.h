// Copy-on-write row-block matrix: the container for large per-user and
// per-item model rows. The learner owns one RowBlockMatrix and mutates it;
// Freeze() hands out an immutable RowBlockView that shares every block. A
// later write to a block that a view still holds copies that block first.
// Blocks are grouped in pages of internal::kBlocksPerPage, shared the same
// way, so a publication costs one pointer per page plus the pages and blocks
// that changed: a million rows in blocks of 256 are 16 pointers, not 3,907.
//
// Thread-safety: a RowBlockMatrix is used by one thread (the learner). A
// RowBlockView is immutable and safe to read from any number of threads.
#ifndef MERCATO_CORE_ROW_BLOCK_MATRIX_H_
#define MERCATO_CORE_ROW_BLOCK_MATRIX_H_

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace mercato::core {

namespace internal {
inline constexpr size_t kBlocksPerPage = 256;
template <class T>
using RowBlock = std::shared_ptr<std::vector<T>>;
template <class T>
using RowPage = std::vector<RowBlock<T>>;
// The data of block b of `pages` (a vector of pointers to pages).
template <class Pages>
auto BlockOf(const Pages& pages, size_t b) {
  return (*pages[b / kBlocksPerPage])[b % kBlocksPerPage]->data();
}
}  // namespace internal

template <class T>
class RowBlockView {
 public:
  RowBlockView() = default;
  size_t rows() const { return rows_; }
  int cols() const { return cols_; }
  int rows_per_block() const { return rows_per_block_; }
  // REQUIRES: r < rows().
  const T* Row(size_t r) const {
    assert(r < rows_);
    return BlockData(r / rows_per_block_) + (r % rows_per_block_) * cols_;
  }
  // The contiguous rows of block b (rows_per_block() rows, the last may be
  // partly beyond rows()).
  const T* BlockData(size_t b) const { return internal::BlockOf(pages_, b); }
  size_t num_blocks() const { return blocks_; }

 private:
  template <class>
  friend class RowBlockMatrix;
  std::vector<std::shared_ptr<const internal::RowPage<T>>> pages_;
  size_t blocks_ = 0;
  size_t rows_ = 0;
  int cols_ = 0;
  int rows_per_block_ = 1;
};

template <class T>
class RowBlockMatrix {
 public:
  // REQUIRES: cols > 0, rows_per_block > 0.
  explicit RowBlockMatrix(int cols, int rows_per_block = 256)
      : cols_(cols), rows_per_block_(rows_per_block) {}

  size_t rows() const { return rows_; }
  int cols() const { return cols_; }

  // Grows to `rows` rows; new rows are zero. Never shrinks.
  void Resize(size_t rows) {
    if (rows <= rows_) return;
    const size_t need = (rows + rows_per_block_ - 1) / rows_per_block_;
    for (; blocks_ < need; ++blocks_) {
      if (blocks_ % internal::kBlocksPerPage == 0) {
        pages_.push_back(std::make_shared<internal::RowPage<T>>());
        pages_.back()->reserve(internal::kBlocksPerPage);
      }
      MutablePage(blocks_ / internal::kBlocksPerPage)
          .push_back(
              std::make_shared<std::vector<T>>(static_cast<size_t>(rows_per_block_) * cols_, T{}));
    }
    rows_ = rows;
  }

  // REQUIRES: r < rows().
  const T* Row(size_t r) const {
    assert(r < rows_);
    return internal::BlockOf(pages_, r / rows_per_block_) + (r % rows_per_block_) * cols_;
  }

  // REQUIRES: r < rows(). Copies the row's page and block first when a view
  // shares them.
  T* MutableRow(size_t r) {
    assert(r < rows_);
    const size_t b = r / rows_per_block_;
    internal::RowBlock<T>& block =
        MutablePage(b / internal::kBlocksPerPage)[b % internal::kBlocksPerPage];
    // use_count() > 1 means a view (or a stale copy) holds the block; a
    // spurious copy from a concurrent release is harmless.
    if (block.use_count() > 1) {
      block = std::make_shared<std::vector<T>>(*block);
      ++blocks_copied_;
    }
    return block->data() + (r % rows_per_block_) * cols_;
  }

  // An immutable view of the current contents; O(number of pages).
  RowBlockView<T> Freeze() const {
    RowBlockView<T> view;
    view.pages_.assign(pages_.begin(), pages_.end());
    view.blocks_ = blocks_;
    view.rows_ = rows_;
    view.cols_ = cols_;
    view.rows_per_block_ = rows_per_block_;
    return view;
  }

  // Blocks and pages copied because a view shared them, since construction.
  uint64_t blocks_copied() const { return blocks_copied_; }
  uint64_t pages_copied() const { return pages_copied_; }

 private:
  // Page p, copied first when a view shares it (its blocks then are shared
  // by both, so a write copies its block as well).
  internal::RowPage<T>& MutablePage(size_t p) {
    std::shared_ptr<internal::RowPage<T>>& page = pages_[p];
    if (page.use_count() > 1) {
      auto copy = std::make_shared<internal::RowPage<T>>();
      copy->reserve(internal::kBlocksPerPage);
      copy->assign(page->begin(), page->end());
      page = std::move(copy);
      ++pages_copied_;
    }
    return *page;
  }

  std::vector<std::shared_ptr<internal::RowPage<T>>> pages_;
  size_t blocks_ = 0;
  size_t rows_ = 0;
  int cols_;
  int rows_per_block_;
  uint64_t blocks_copied_ = 0, pages_copied_ = 0;
};

}  // namespace mercato::core

#endif  // MERCATO_CORE_ROW_BLOCK_MATRIX_H_
