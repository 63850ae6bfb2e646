// Transaction files as Mercato events: the Online Retail II CSV in
// ../shared/data/online_retail_ii and a generic
// user,item,timestamp[,price,quantity,order] CSV. Gzipped or plain.
#ifndef MERCATO_CLIENTS_TRANSACTIONS_H_
#define MERCATO_CLIENTS_TRANSACTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "mercato/v1/catalog.pb.h"
#include "mercato/v1/ingest.pb.h"

namespace mercato::clients {

// One line of a purchase (or, with a negative quantity in an order whose id
// starts with C, a cancellation).
struct Row {
  std::string order, item, description, user;
  double quantity = 0, price = 0;
  int64_t timestamp_ms = 0;
};

// Online Retail II: Invoice,StockCode,Description,Quantity,InvoiceDate,Price,
// Customer ID,Country, with a header line.
std::vector<Row> ReadOnlineRetail(const std::string& path, uint64_t* skipped);

// Generic: user,item,timestamp[,price,quantity,order]; timestamp in ms since
// the epoch or "YYYY-MM-DD HH:MM:SS" (UTC); price 0 and quantity 1 when
// absent. A first line that does not parse is taken as a header.
std::vector<Row> ReadGeneric(const std::string& path, uint64_t* skipped);

// Reads `path` in `format` ("online-retail" or "generic"); exits on an
// unreadable file or an unknown format.
std::vector<Row> ReadTransactions(const std::string& path, const std::string& format,
                                  uint64_t* skipped);

// The user id a row's events carry: its user (Online Retail customers read
// as "c<customer id>"), or for rows without one a guest named after the order.
std::string UserOf(const Row& row);

// PURCHASE and REFUND events of the rows, in row order; rows with a negative
// price or the wrong sign of quantity (Online Retail adjustments, priced 0,
// are read with quantity 0) are skipped. Event
// ids come from the row number, so replaying twice adds nothing.
std::vector<v1::Event> EventsOf(const std::vector<Row>& rows);

// The catalogue: each bought item with its last price and description, and
// the kind of product its description ends with.
std::vector<v1::Item> CatalogueOf(const std::vector<Row>& rows);

}  // namespace mercato::clients

#endif  // MERCATO_CLIENTS_TRANSACTIONS_H_
