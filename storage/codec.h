// Stored layouts of catalogue items (events: core::EncodeEvent). Each value
// starts with a format version byte; fields follow in core/bytes.h encoding:
//   item v1:  item_id str, n varint + n category strs, price f64, unit_cost
//             f64, in_stock u8, created_at_ms i64, n varint + n (key, value)
// Sequence numbers are keys, not values: 8 bytes big-endian so that RocksDB's
// byte order is log order.
#ifndef MERCATO_STORAGE_CODEC_H_
#define MERCATO_STORAGE_CODEC_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/event.h"

namespace mercato::storage {

std::string SequenceKey(uint64_t sequence);
// REQUIRES: key.size() == 8.
uint64_t DecodeSequenceKey(std::string_view key);

std::string EncodeItem(const core::Item& item);
absl::StatusOr<core::Item> DecodeItem(std::string_view bytes);

}  // namespace mercato::storage

#endif  // MERCATO_STORAGE_CODEC_H_
