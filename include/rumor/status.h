// Errors as values (LevelDB's Status, liburing's -errno). Every operating error a caller can
// meet — oversized input, a full queue, a far-future version, a malformed packet — comes back as
// a Status or a Result<T>; nothing on the data path throws. Programmer errors abort
// (RUMOR_ASSERT).
//
// Thread-safety: Status and Result are values; distinct objects may be used from any thread.
#pragma once

// The public headers use C++20 (std::span, operator<=>): say so before anything else fails.
#if !defined(__cplusplus) || __cplusplus < 202002L
#error "rumor needs C++20 or later: compile with -std=c++20 (CMake: rumor::rumor sets cxx_std_20)"
#endif

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <optional>

namespace rumor {

enum class Code : std::uint8_t {
  kOk = 0,
  kInvalidArgument,  // the caller passed something that can never work (empty key, bad config)
  kTooLarge,         // a key, value, packet or count above its configured limit
  kClockSkew,        // a version further ahead of local time than max_clock_skew_ms
  kBusy,             // a bounded queue is full; retry later (back-pressure)
  kNotFound,
  kMalformed,        // undecodable input from the network or a file
  kIo,               // the operating system said no (errno in the message)
  kUnavailable,      // the node is stopped, or a peer cannot be reached
};

std::string_view code_name(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status ok() { return Status(); }
  static Status error(Code code, std::string message) { return Status(code, std::move(message)); }

  bool is_ok() const { return code_ == Code::kOk; }
  explicit operator bool() const { return is_ok(); }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "too_large: value is 2048 bytes, value_bytes_max is 1024"
  std::string to_string() const;

 private:
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// Result<T>: a T or an error Status. A small stand-in for std::expected, which clang 14's
// library here lacks.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : status_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (status_.is_ok()) status_ = Status::error(Code::kInvalidArgument, "Result from ok Status");
  }

  bool is_ok() const { return value_.has_value(); }
  explicit operator bool() const { return is_ok(); }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return *std::move(value_); }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  const Status& status() const { return status_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace rumor
