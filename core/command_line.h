// Command-line parsing shared by every Mercato binary, so that `--help`
// lists the binary's own flags with their defaults.
//
// Abseil's `--help` shows only flags defined in a file named after the
// program (mercato-server.cc, mercato-server_main.cc, ...); Mercato's flags
// live in server/main.cc and clients/*.cc, so without this `--help` printed
// "No flags matched". Here every flag outside Abseil's own files counts as
// the binary's; `--helpfull` still lists Abseil's too.
#ifndef MERCATO_CORE_COMMAND_LINE_H_
#define MERCATO_CORE_COMMAND_LINE_H_

#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace mercato::core {

// Sets `usage` as the program's usage message, parses the flags (exiting on
// --help, --version or a bad flag, as Abseil does) and returns the
// positional arguments, argv[0] first.
inline std::vector<char*> ParseCommandLine(int argc, char** argv, const char* usage) {
  absl::FlagsUsageConfig config;
  const auto ours = [](absl::string_view file) { return !absl::StrContains(file, "absl/"); };
  config.contains_helpshort_flags = ours;
  config.contains_help_flags = ours;
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);
  return absl::ParseCommandLine(argc, argv);
}

}  // namespace mercato::core

#endif  // MERCATO_CORE_COMMAND_LINE_H_
