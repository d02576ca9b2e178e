#include "rumor/status.h"

namespace rumor {

std::string_view code_name(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid_argument";
    case Code::kTooLarge: return "too_large";
    case Code::kClockSkew: return "clock_skew";
    case Code::kBusy: return "busy";
    case Code::kNotFound: return "not_found";
    case Code::kMalformed: return "malformed";
    case Code::kIo: return "io";
    case Code::kUnavailable: return "unavailable";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  std::string s(code_name(code_));
  if (!message_.empty()) {
    s += ": ";
    s += message_;
  }
  return s;
}

}  // namespace rumor
