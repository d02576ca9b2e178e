// Keys for the encryption tests: two raw 32-byte keys whose key ids (the first fingerprint
// byte) differ, so a keyring can hold both during a rotation.
#pragma once

#include <string>

#include "rumor/security.h"

namespace rumor::testing {

inline const std::string& test_key_a() {
  static const std::string k(32, 'A');
  return k;
}

inline const std::string& test_key_b() {
  static const std::string k = [] {
    for (char c = 'B'; c < 'Z'; ++c) {
      std::string b(32, c);
      if (key_fingerprint(b).substr(0, 2) != key_fingerprint(test_key_a()).substr(0, 2)) return b;
    }
    return std::string(32, 'B');
  }();
  return k;
}

}  // namespace rumor::testing
