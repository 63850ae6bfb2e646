// Who may call what, without gRPC: the scopes, the access file that grants
// them, and the tokens it names. The file keeps SHA-256 hashes of tokens,
// never the tokens, so reading it does not let anyone call the server.
//
// The file, one grant per line ('#' starts a comment):
//   token NAME SHA256HEX SCOPE...   a bearer token, by its hash
//   cert  NAME IDENTITY  SCOPE...   a client certificate (mutual TLS) whose
//                                   subject, common name or a SAN is IDENTITY
// NAME is who the audit names. Scopes: recommend segment pricing score
// forecast ingest catalog admin, and metrics (the /metrics endpoint, by
// basic auth with the token as password).
#ifndef MERCATO_SERVER_ACCESS_H_
#define MERCATO_SERVER_ACCESS_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mercato::server {

enum class Scope : uint8_t {
  kRecommend,
  kSegment,
  kPricing,
  kScore,
  kForecast,
  kIngest,
  kCatalog,
  kAdmin,
  kMetrics,
};
inline constexpr int kScopeCount = 9;

absl::string_view ScopeName(Scope scope);
std::optional<Scope> ParseScope(absl::string_view name);

using Sha256 = std::array<uint8_t, 32>;
Sha256 HashToken(absl::string_view token);
std::string HexOf(const Sha256& hash);

// A fresh token: "mct_" and 43 characters of base64url from 32 random bytes.
std::string NewToken();
// The access-file line granting `scopes` to `token` under `name`.
std::string TokenLine(absl::string_view name, absl::string_view token,
                      const std::vector<Scope>& scopes);

struct Grant {
  std::string name;
  uint32_t scopes = 0;  // bit per Scope
  bool Allows(Scope s) const { return (scopes >> static_cast<int>(s)) & 1; }
};

// An access file, parsed. Immutable; thread-safe.
class AccessTable {
 public:
  // INVALID_ARGUMENT naming `path`, the line and what is wrong with it.
  static absl::StatusOr<AccessTable> Parse(absl::string_view text, absl::string_view path);

  // The grant of `token`, or null. Compares the token's hash with every
  // listed hash in constant time, so the time taken tells nothing of how
  // close a guess came.
  const Grant* ForToken(absl::string_view token) const;
  // The grant of the first of `identities` (a certificate's subject, common
  // name and SANs) that a cert line names, or null.
  const Grant* ForCertificate(const std::vector<std::string>& identities) const;

  size_t tokens() const { return tokens_.size(); }
  size_t certificates() const { return certs_.size(); }

 private:
  std::vector<std::pair<Sha256, Grant>> tokens_;
  std::vector<std::pair<std::string, Grant>> certs_;
};

}  // namespace mercato::server

#endif  // MERCATO_SERVER_ACCESS_H_
