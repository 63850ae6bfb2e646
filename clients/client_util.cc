#include "clients/client_util.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace mercato::clients {

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

bool WaitForReady(grpc::Channel& channel, std::chrono::milliseconds timeout) {
  return channel.WaitForConnected(std::chrono::system_clock::now() + timeout);
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
  return absl::StrFormat(
      "%-22s calls=%-8d errors=%-5d qps=%-9.0f p50=%7.1fus p90=%7.1fus p99=%7.1fus "
      "p99.9=%7.1fus",
      name, r.calls, r.errors, r.qps, r.p50_us, r.p90_us, r.p99_us, r.p999_us);
}

}  // namespace mercato::clients
