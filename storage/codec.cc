#include "storage/codec.h"

#include "core/bytes.h"

namespace mercato::storage {
namespace {

constexpr uint8_t kItemFormat = 1;

}  // namespace

std::string SequenceKey(uint64_t sequence) {
  std::string key(8, '\0');
  for (int i = 7; i >= 0; --i, sequence >>= 8) key[i] = static_cast<char>(sequence & 0xff);
  return key;
}

uint64_t DecodeSequenceKey(std::string_view key) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(key[i]);
  return v;
}

std::string EncodeItem(const core::Item& item) {
  std::string out;
  core::ByteWriter w(&out);
  w.U8(kItemFormat);
  w.Str(item.item_id);
  w.Varint(item.category_path.size());
  for (const auto& c : item.category_path) w.Str(c);
  w.F64(item.price);
  w.F64(item.unit_cost);
  w.U8(item.in_stock ? 1 : 0);
  w.I64(item.created_at_ms);
  w.Varint(item.attributes.size());
  for (const auto& [k, v] : item.attributes) {
    w.Str(k);
    w.Str(v);
  }
  return out;
}

absl::StatusOr<core::Item> DecodeItem(std::string_view bytes) {
  core::ByteReader r(bytes);
  if (r.U8() != kItemFormat) return absl::DataLossError("item: unknown format version");
  core::Item item;
  item.item_id = r.Str();
  for (uint64_t n = r.Varint(); n > 0 && r.status().ok(); --n) {
    item.category_path.push_back(r.Str());
  }
  item.price = r.F64();
  item.unit_cost = r.F64();
  item.in_stock = r.U8() != 0;
  item.created_at_ms = r.I64();
  for (uint64_t n = r.Varint(); n > 0 && r.status().ok(); --n) {
    std::string k = r.Str();
    item.attributes[k] = r.Str();
  }
  if (!r.status().ok()) return r.status();
  if (!r.done()) return absl::DataLossError("item: trailing bytes");
  return item;
}

}  // namespace mercato::storage
