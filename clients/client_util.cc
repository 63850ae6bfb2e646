#include "clients/client_util.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "mercato/v1/admin.grpc.pb.h"
#include "mercato/v1/catalog.grpc.pb.h"
#include "mercato/v1/ingest.grpc.pb.h"

ABSL_FLAG(std::string, tls_ca_file, "",
          "TLS: verify the server's certificate against this CA (PEM); empty = plaintext");
ABSL_FLAG(std::string, tls_cert_file, "", "mutual TLS: this client's certificate chain (PEM)");
ABSL_FLAG(std::string, tls_key_file, "", "mutual TLS: this client's private key (PEM)");
ABSL_FLAG(std::string, auth_token_file, "",
          "file holding the bearer token sent with every call; default: $MERCATO_TOKEN");

namespace mercato::clients {
namespace {

std::string ReadOrExit(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::cerr << "cannot read " << path << "\n";
    std::exit(2);
  }
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Adds `authorization: Bearer <token>` to every call of a channel. Works on
// plaintext channels too, where gRPC's call credentials are refused.
class BearerToken final : public grpc::experimental::Interceptor {
 public:
  explicit BearerToken(const std::string* header) : header_(header) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", *header_);
    }
    methods->Proceed();
  }

 private:
  const std::string* header_;
};

class BearerTokenFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenFactory(const std::string& token) : header_("Bearer " + token) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new BearerToken(&header_);
  }

 private:
  const std::string header_;
};

// "ipv4:A:P,B:P" (or ipv6:[A]:P,...) for the targets "host:port,host:port"
// each resolved once; exits naming the one that does not resolve. gRPC's
// static resolver takes addresses only, and one of each kind.
std::string AddressList(const std::vector<std::string>& targets) {
  std::string ipv4, ipv6;
  for (const std::string& target : targets) {
    const size_t colon = target.rfind(':');
    std::string host = target.substr(0, colon);
    const std::string port = colon == std::string::npos ? "" : target.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (port.empty() || getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0) {
      std::cerr << "target " << target << ": no such host:port\n";
      std::exit(2);
    }
    char text[INET6_ADDRSTRLEN] = {};
    if (found->ai_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(found->ai_addr)->sin6_addr, text,
                sizeof(text));
      absl::StrAppend(&ipv6, ipv6.empty() ? "ipv6:" : ",", "[", text, "]:", port);
    } else {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr, text,
                sizeof(text));
      absl::StrAppend(&ipv4, ipv4.empty() ? "ipv4:" : ",", text, ":", port);
    }
    freeaddrinfo(found);
  }
  if (!ipv4.empty() && !ipv6.empty()) {
    std::cerr << "targets " << absl::StrJoin(targets, ",")
              << ": give IPv4 or IPv6 replicas, not both\n";
    std::exit(2);
  }
  return ipv4.empty() ? ipv6 : ipv4;
}

}  // namespace

ClientAuth ClientAuthFromFlags() {
  ClientAuth auth{absl::GetFlag(FLAGS_tls_ca_file), absl::GetFlag(FLAGS_tls_cert_file),
                  absl::GetFlag(FLAGS_tls_key_file)};
  if (const std::string file = absl::GetFlag(FLAGS_auth_token_file); !file.empty()) {
    auth.token = ReadOrExit(file);
  } else if (const char* env = std::getenv("MERCATO_TOKEN")) {
    auth.token = env;
  }
  auth.token = std::string(absl::StripAsciiWhitespace(auth.token));
  return auth;
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target, const ClientAuth& auth) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!auth.ca_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadOrExit(auth.ca_file);
    if (!auth.cert_file.empty()) ssl.pem_cert_chain = ReadOrExit(auth.cert_file);
    if (!auth.key_file.empty()) ssl.pem_private_key = ReadOrExit(auth.key_file);
    creds = grpc::SslCredentials(ssl);
  }
  std::string resolved = target;
  if (const std::vector<std::string> replicas = absl::StrSplit(target, ','); replicas.size() > 1) {
    // Replicas: each call to the next that reports SERVING on grpc.health.
    resolved = AddressList(replicas);
    args.SetServiceConfigJSON(
        R"({"loadBalancingConfig":[{"round_robin":{}}],"healthCheckConfig":{"serviceName":""}})");
    // The name the servers' certificates carry.
    const std::string& first = replicas.front();
    args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, first.substr(0, first.rfind(':')));
  }
  if (auth.token.empty()) return grpc::CreateCustomChannel(resolved, creds, args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<BearerTokenFactory>(auth.token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(resolved, creds, args,
                                                                 std::move(interceptors));
}

bool WaitForReady(grpc::Channel& channel, std::chrono::milliseconds timeout) {
  return channel.WaitForConnected(std::chrono::system_clock::now() + timeout);
}

v1::Event ToProto(const core::Event& e) {
  v1::Event out;
  out.set_event_id(e.event_id);
  out.set_type(static_cast<v1::EventType>(e.type));
  out.set_user_id(e.user_id);
  out.set_item_id(e.item_id);
  out.set_session_id(e.session_id);
  out.set_order_id(e.order_id);
  out.set_timestamp_ms(e.timestamp_ms);
  out.set_quantity(e.quantity);
  out.set_unit_price(e.unit_price);
  out.set_value(e.value);
  return out;
}

v1::Item ToProto(const core::Item& item) {
  v1::Item out;
  out.set_item_id(item.item_id);
  for (const auto& c : item.category_path) out.add_category_path(c);
  out.set_price(item.price);
  out.set_unit_cost(item.unit_cost);
  out.set_in_stock(item.in_stock);
  out.set_created_at_ms(item.created_at_ms);
  out.mutable_attributes()->insert(item.attributes.begin(), item.attributes.end());
  return out;
}

namespace {

absl::Status Failed(absl::string_view what, const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

std::unique_ptr<grpc::ClientContext> LongCall() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(2));
  return ctx;
}

}  // namespace

absl::StatusOr<uint64_t> UpsertItems(grpc::Channel& channel, const std::vector<v1::Item>& items,
                                     int batch) {
  // Borrowed: the stub does not outlive this call.
  auto catalog = v1::Catalog::NewStub(std::shared_ptr<grpc::Channel>(&channel, [](auto*) {}));
  uint64_t upserted = 0;
  for (size_t i = 0; i < items.size(); i += batch) {
    v1::UpsertItemsRequest req;
    req.mutable_items()->Add(items.begin() + i, items.begin() + std::min(items.size(), i + batch));
    v1::UpsertItemsResponse resp;
    if (grpc::Status s = catalog->UpsertItems(LongCall().get(), req, &resp); !s.ok()) {
      return Failed("UpsertItems", s);
    }
    upserted += resp.upserted();
  }
  return upserted;
}

absl::Status PublishEvents(grpc::Channel& channel, const std::vector<v1::Event>& events, int batch,
                           v1::PublishSummary* summary) {
  auto ingest = v1::Ingest::NewStub(std::shared_ptr<grpc::Channel>(&channel, [](auto*) {}));
  for (size_t i = 0; i < events.size(); i += batch) {
    v1::EventBatch req;
    req.mutable_events()->Add(events.begin() + i,
                              events.begin() + std::min(events.size(), i + batch));
    v1::PublishSummary resp;
    if (grpc::Status s = ingest->PublishBatch(LongCall().get(), req, &resp); !s.ok()) {
      return Failed("PublishBatch", s);
    }
    summary->set_accepted(summary->accepted() + resp.accepted());
    summary->set_duplicates(summary->duplicates() + resp.duplicates());
    summary->set_last_sequence(resp.last_sequence());
  }
  return absl::OkStatus();
}

absl::Status LoadDemoShop(grpc::Channel& channel, const core::DemoShop& shop, int batch,
                          v1::PublishSummary* summary) {
  std::vector<v1::Item> items;
  for (const core::DemoItem& it : shop.items) items.push_back(ToProto(it.item));
  if (absl::StatusOr<uint64_t> n = UpsertItems(channel, items, batch); !n.ok()) return n.status();
  std::vector<v1::Event> events;
  events.reserve(shop.events.size());
  for (const core::Event& e : shop.events) events.push_back(ToProto(e));
  return PublishEvents(channel, events, batch, summary);
}

std::unique_ptr<grpc::ClientContext> Deadline(int seconds) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return ctx;
}

void CheckOrExit(const grpc::Status& status, const char* what) {
  if (status.ok()) return;
  std::cerr << what << ": " << status.error_message() << "\n";
  std::exit(1);
}

void CheckOrExit(const absl::Status& status, const char* what) {
  if (status.ok()) return;
  std::cerr << what << ": " << status << "\n";
  std::exit(1);
}

namespace {

std::unique_ptr<v1::Admin::Stub> AdminOf(grpc::Channel& channel) {
  return v1::Admin::NewStub(std::shared_ptr<grpc::Channel>(&channel, [](grpc::Channel*) {}));
}

absl::StatusOr<v1::ModelStatusResponse> ModelStatus(v1::Admin::Stub& admin) {
  v1::ModelStatusResponse st;
  grpc::Status s = admin.ModelStatus(Deadline(30).get(), v1::ModelStatusRequest(), &st);
  if (!s.ok()) return absl::UnavailableError(absl::StrCat("ModelStatus: ", s.error_message()));
  return st;
}

}  // namespace

absl::Status WaitApplied(grpc::Channel& channel) {
  auto admin = AdminOf(channel);
  for (;;) {
    absl::StatusOr<v1::ModelStatusResponse> st = ModelStatus(*admin);
    if (!st.ok()) return st.status();
    if (st->lag_events() == 0) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

absl::StatusOr<uint64_t> ModelCount(grpc::Channel& channel, const std::string& model,
                                    const std::string& name) {
  auto admin = AdminOf(channel);
  absl::StatusOr<v1::ModelStatusResponse> st = ModelStatus(*admin);
  if (!st.ok()) return st.status();
  for (const auto& m : st->models()) {
    if (m.name() == model && m.counts().contains(name)) return m.counts().at(name);
  }
  return 0;
}

absl::Status RetrainRecommendations(grpc::Channel& channel) {
  absl::StatusOr<uint64_t> before = ModelCount(channel, "recommend", "retrains");
  if (!before.ok()) return before.status();
  v1::RetrainRequest retrain;
  retrain.set_model("recommend");
  v1::RetrainResponse started;
  if (grpc::Status s = AdminOf(channel)->Retrain(Deadline(30).get(), retrain, &started); !s.ok()) {
    return absl::UnavailableError(absl::StrCat("Retrain: ", s.error_message()));
  }
  for (;;) {
    absl::StatusOr<uint64_t> now = ModelCount(channel, "recommend", "retrains");
    if (!now.ok()) return now.status();
    if (*now != *before) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void FillPercentiles(std::vector<double>& latencies_us, LoadResult& result) {
  if (latencies_us.empty()) return;
  std::sort(latencies_us.begin(), latencies_us.end());
  auto at = [&](double q) {
    size_t i = static_cast<size_t>(q * (latencies_us.size() - 1));
    return latencies_us[i];
  };
  result.p50_us = at(0.50);
  result.p90_us = at(0.90);
  result.p99_us = at(0.99);
  result.p999_us = at(0.999);
}

std::string FormatLoadResult(absl::string_view name, const LoadResult& r) {
  std::string out = absl::StrFormat(
      "%-22s calls=%-8d errors=%-5d qps=%-9.0f p50=%7.1fus p90=%7.1fus p99=%7.1fus "
      "p99.9=%7.1fus",
      name, r.calls, r.errors, r.qps, r.p50_us, r.p90_us, r.p99_us, r.p999_us);
  if (r.errors > 0) {
    absl::StrAppendFormat(&out,
                          "\n%-22s goodput=%.0f/s (answered OK within the deadline), their "
                          "p50=%.1fus p99=%.1fus",
                          "", r.goodput, r.ok_p50_us, r.ok_p99_us);
  }
  return out;
}

}  // namespace mercato::clients
