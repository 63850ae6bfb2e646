#include "server/access.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace mercato::server {
namespace {

constexpr absl::string_view kScopeNames[kScopeCount] = {"recommend", "segment",  "pricing",
                                                        "score",     "forecast", "ingest",
                                                        "catalog",   "admin",    "metrics"};

std::optional<Sha256> ParseHex(absl::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  Sha256 out;
  for (size_t i = 0; i < out.size(); ++i) {
    int v = 0;
    for (char c : hex.substr(2 * i, 2)) {
      const int d = absl::ascii_isdigit(c)   ? c - '0'
                    : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                    : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                             : -1;
      if (d < 0) return std::nullopt;
      v = v * 16 + d;
    }
    out[i] = static_cast<uint8_t>(v);
  }
  return out;
}

}  // namespace

absl::string_view ScopeName(Scope scope) { return kScopeNames[static_cast<int>(scope)]; }

std::optional<Scope> ParseScope(absl::string_view name) {
  for (int i = 0; i < kScopeCount; ++i) {
    if (kScopeNames[i] == name) return static_cast<Scope>(i);
  }
  return std::nullopt;
}

Sha256 HashToken(absl::string_view token) {
  // Fetched once: OpenSSL 3's one-shot SHA256() looks the algorithm up on
  // every call, three times the cost of the digest itself.
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  Sha256 out;
  unsigned int size = 0;
  if (sha256 == nullptr || EVP_Digest(token.data(), token.size(), out.data(), &size, sha256,
                                      nullptr) != 1) {
    std::abort();  // no SHA-256: no token could be checked
  }
  return out;
}

std::string HexOf(const Sha256& hash) {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(hash.data()), hash.size()));
}

std::string NewToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1)
    std::abort();  // no entropy: never hand out a weak token
  std::string encoded;
  absl::WebSafeBase64Escape(absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)),
                            &encoded);
  return absl::StrCat("mct_", encoded);
}

std::string TokenLine(absl::string_view name, absl::string_view token,
                      const std::vector<Scope>& scopes) {
  std::vector<absl::string_view> names;
  for (Scope s : scopes) names.push_back(ScopeName(s));
  return absl::StrCat("token ", name, " ", HexOf(HashToken(token)), " ", absl::StrJoin(names, " "));
}

absl::StatusOr<AccessTable> AccessTable::Parse(absl::string_view text, absl::string_view path) {
  AccessTable table;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = line.substr(0, line.find('#'));
    const std::vector<absl::string_view> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (words.empty()) continue;
    auto error = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_number, ": ", why));
    };
    if (words[0] != "token" && words[0] != "cert") {
      return error(absl::StrCat(
          "starts with '", words[0],
          "'; a line is 'token NAME SHA256HEX SCOPE...' or 'cert NAME IDENTITY SCOPE...'"));
    }
    if (words.size() < 4) return error("needs a name, a hash or identity, and at least one scope");
    Grant grant{std::string(words[1])};
    for (size_t i = 3; i < words.size(); ++i) {
      const std::optional<Scope> s = ParseScope(words[i]);
      if (!s) {
        return error(absl::StrCat("unknown scope '", words[i], "'; scopes are ",
                                  absl::StrJoin(kScopeNames, " ")));
      }
      grant.scopes |= 1u << static_cast<int>(*s);
    }
    if (words[0] == "token") {
      const std::optional<Sha256> hash = ParseHex(words[2]);
      if (!hash)
        return error("the token's hash must be 64 hex digits (SHA-256; see mercatoctl token new)");
      table.tokens_.emplace_back(*hash, std::move(grant));
    } else {
      table.certs_.emplace_back(std::string(words[2]), std::move(grant));
    }
  }
  return table;
}

const Grant* AccessTable::ForToken(absl::string_view token) const {
  const Sha256 hash = HashToken(token);
  const Grant* found = nullptr;
  for (const auto& [listed, grant] : tokens_) {
    // Every entry is compared, whatever matched before.
    const bool same = CRYPTO_memcmp(listed.data(), hash.data(), hash.size()) == 0;
    if (same && found == nullptr) found = &grant;
  }
  return found;
}

const Grant* AccessTable::ForCertificate(const std::vector<std::string>& identities) const {
  for (const std::string& id : identities) {
    for (const auto& [listed, grant] : certs_) {
      if (listed == id) return &grant;
    }
  }
  return nullptr;
}

}  // namespace mercato::server
