#include "core/log.h"

#include <atomic>
#include <cstdio>
#include <string>

#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace mercato::core {
namespace {

std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};

const char* Name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "info";
}

}  // namespace

void SetMinLogLevel(LogLevel level) { min_level = static_cast<int>(level); }
LogLevel MinLogLevel() { return static_cast<LogLevel>(min_level.load()); }

bool ParseLogLevel(std::string_view name, LogLevel* out) {
  for (LogLevel l : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning, LogLevel::kError}) {
    if (name == Name(l)) {
      *out = l;
      return true;
    }
  }
  return false;
}

LogRecord::~LogRecord() {
  std::string_view file(file_);
  if (auto slash = file.rfind('/'); slash != std::string_view::npos) file.remove_prefix(slash + 1);
  const std::string msg = absl::StrReplaceAll(stream_.str(), {{"\\", "\\\\"}, {"\"", "\\\""},
                                                              {"\n", "\\n"}});
  const std::string line =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()) +
      " level=" + Name(level_) + " src=" + std::string(file) + ":" + std::to_string(line_) +
      " msg=\"" + msg + "\"\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace mercato::core
