#include "clients/transactions.h"

#include <zlib.h>

#include <cstdlib>
#include <iostream>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

namespace mercato::clients {
namespace {

// Splits one CSV line; fields may be quoted, with "" for a quote inside.
std::vector<std::string> SplitCsv(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        out.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        out.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else if (c != '\r' && c != '\n') {
      out.back() += c;
    }
  }
  return out;
}

bool ParseTimestamp(const std::string& s, int64_t* ms) {
  if (absl::SimpleAtoi(s, ms)) return true;
  absl::Time t;
  std::string err;
  if (!absl::ParseTime("%Y-%m-%d %H:%M:%S", s, absl::UTCTimeZone(), &t, &err)) return false;
  *ms = absl::ToUnixMillis(t);
  return true;
}

bool ParseRetail(const std::vector<std::string>& f, Row* row) {
  if (f.size() != 8) return false;
  row->order = f[0];
  row->item = f[1];
  row->description = f[2];
  const absl::string_view customer = absl::StripSuffix(f[6], ".0");
  row->user = customer.empty() ? "" : absl::StrCat("c", customer);
  if (!absl::SimpleAtod(f[3], &row->quantity) || !absl::SimpleAtod(f[5], &row->price) ||
      !ParseTimestamp(f[4], &row->timestamp_ms)) {
    return false;
  }
  if (row->price <= 0) row->quantity = 0;  // an adjustment, not a sale
  return !row->item.empty() && !row->order.empty();
}

bool ParseGeneric(const std::vector<std::string>& f, Row* row) {
  if (f.size() < 3 || f.size() > 6 || f[0].empty() || f[1].empty()) return false;
  row->user = f[0];
  row->item = f[1];
  row->quantity = 1;
  if (!ParseTimestamp(f[2], &row->timestamp_ms)) return false;
  if (f.size() > 3 && !f[3].empty() && !absl::SimpleAtod(f[3], &row->price)) return false;
  if (f.size() > 4 && !f[4].empty() && !absl::SimpleAtod(f[4], &row->quantity)) return false;
  if (f.size() > 5) row->order = f[5];
  return true;
}

// Calls `parse` on every line after the first; the first line too when
// `header_optional` and it parses.
template <class Parse>
std::vector<Row> ReadLines(const std::string& path, uint64_t* skipped, bool header_optional,
                           Parse parse) {
  gzFile in = gzopen(path.c_str(), "rb");  // reads plain files too
  if (in == nullptr) {
    std::cerr << "cannot open " << path << "\n";
    std::exit(1);
  }
  std::vector<Row> rows;
  std::string line;
  char buf[4096];
  bool first = true;
  while (gzgets(in, buf, sizeof buf) != nullptr) {
    line += buf;
    if (line.empty() || line.back() != '\n') continue;
    Row row;
    if (parse(SplitCsv(line), &row)) {
      if (!first || header_optional) rows.push_back(std::move(row));
    } else if (!first) {
      ++*skipped;
    }
    first = false;
    line.clear();
  }
  gzclose(in);
  return rows;
}

}  // namespace

std::vector<Row> ReadOnlineRetail(const std::string& path, uint64_t* skipped) {
  return ReadLines(path, skipped, false, ParseRetail);
}

std::vector<Row> ReadGeneric(const std::string& path, uint64_t* skipped) {
  return ReadLines(path, skipped, true, ParseGeneric);
}

std::vector<Row> ReadTransactions(const std::string& path, const std::string& format,
                                  uint64_t* skipped) {
  if (format == "online-retail") return ReadOnlineRetail(path, skipped);
  if (format == "generic") return ReadGeneric(path, skipped);
  std::cerr << "--format: must be online-retail or generic, got " << format << "\n";
  std::exit(2);
}

std::string UserOf(const Row& row) {
  return row.user.empty() ? absl::StrCat("guest-", row.order) : row.user;
}

std::vector<v1::Event> EventsOf(const std::vector<Row>& rows) {
  std::vector<v1::Event> events;
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    const bool refund = !r.order.empty() && r.order[0] == 'C';
    if (r.price < 0 || (refund ? r.quantity >= 0 : r.quantity <= 0)) continue;
    v1::Event& e = events.emplace_back();
    e.set_event_id(absl::StrCat("row-", i));
    e.set_type(refund ? v1::REFUND : v1::PURCHASE);
    e.set_user_id(UserOf(r));
    e.set_item_id(r.item);
    e.set_order_id(r.order);
    e.set_timestamp_ms(r.timestamp_ms);
    e.set_quantity(std::abs(r.quantity));
    e.set_unit_price(r.price);
  }
  return events;
}

std::vector<v1::Item> CatalogueOf(const std::vector<Row>& rows) {
  std::map<std::string, const Row*> last_row;
  for (const Row& r : rows) {
    if (r.quantity > 0) last_row[r.item] = &r;
  }
  std::vector<v1::Item> items;
  for (const auto& [code, r] : last_row) {
    v1::Item& it = items.emplace_back();
    it.set_item_id(code);
    it.set_price(r->price);
    it.set_in_stock(true);
    if (!r->description.empty()) {
      (*it.mutable_attributes())["description"] = r->description.substr(0, 1024);
      // The description's last word names the kind of product ("HOLDER",
      // "MUG", "BAG"): one attribute that items share.
      const absl::string_view words = absl::StripTrailingAsciiWhitespace(r->description);
      const absl::string_view kind = words.substr(words.find_last_of(' ') + 1);
      if (!kind.empty()) (*it.mutable_attributes())["kind"] = std::string(kind);
    }
  }
  return items;
}

}  // namespace mercato::clients
