// Certificates made by openssl at test time, for the TLS and auth tests.
#ifndef MERCATO_TESTS_INTEGRATION_PKI_H_
#define MERCATO_TESTS_INTEGRATION_PKI_H_

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace mercato::testing {

// Runs a shell command; fails the test when it fails.
inline void Sh(const std::string& command) {
  ASSERT_EQ(std::system((command + " 2>/dev/null >/dev/null").c_str()), 0) << command;
}

// A CA `name` in `dir`: name.key, name.pem.
inline void MakeCa(const std::string& dir, const std::string& name) {
  Sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=" +
     name + " -keyout " + dir + "/" + name + ".key -out " + dir + "/" + name + ".pem");
}

// A certificate `name` (name.key, name.pem) for 127.0.0.1, signed by `ca`.
inline void MakeCert(const std::string& dir, const std::string& name, const std::string& ca) {
  const std::string base = dir + "/" + name;
  std::ofstream(base + ".ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
  Sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=" + name +
     " -keyout " + base + ".key -out " + base + ".csr");
  Sh("openssl x509 -req -days 2 -in " + base + ".csr -CA " + dir + "/" + ca + ".pem -CAkey " + dir +
     "/" + ca + ".key -CAcreateserial -extfile " + base + ".ext -out " + base + ".pem");
}

}  // namespace mercato::testing

#endif  // MERCATO_TESTS_INTEGRATION_PKI_H_
