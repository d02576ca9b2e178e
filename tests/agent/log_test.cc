// Log lines: strict logfmt (every token key=value), and JSON built from the same fields.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "tools/log.h"

namespace rumor::tools {
namespace {

TEST(Log, TextIsStrictLogfmt) {
  const std::string fields = "name=" + logfmt_value("n 1") + " note=" +
                             logfmt_value("say \"hi\"\n\tback\\slash\x01") + " n=3 empty=" +
                             logfmt_value("");
  const std::string line =
      format_log_line(LogFormat::kText, "2026-12-07T10:00:00.000Z", LogLevel::kWarn,
                      "member changed", fields);
  EXPECT_EQ(line.rfind("time=2026-12-07T10:00:00.000Z level=warn msg=\"member changed\" ", 0),
            0u)
      << line;
  auto pairs = parse_logfmt(line);
  ASSERT_TRUE(pairs) << line;
  ASSERT_EQ(pairs->size(), 7u);
  EXPECT_EQ((*pairs)[2].second, "member changed");
  EXPECT_EQ((*pairs)[3].second, "n 1");
  EXPECT_EQ((*pairs)[4].second, "say \"hi\"\n\tback\\slash\x01");
  EXPECT_EQ((*pairs)[5].second, "3");
  EXPECT_EQ((*pairs)[6].second, "");
  EXPECT_EQ(line.find('\n'), std::string::npos) << "one event, one line";
}

TEST(Log, JsonCarriesTheSameFields) {
  const std::string fields = "name=" + logfmt_value("n 1") + " attempts=4 gso=true id=0012 " +
                             "msg=" + logfmt_value("shadowed");
  const std::string line = format_log_line(LogFormat::kJson, "2026-12-07T10:00:00.000Z",
                                           LogLevel::kInfo, "joined", fields);
  const auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["time"], "2026-12-07T10:00:00.000Z");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["msg"], "joined");
  EXPECT_EQ(j["name"], "n 1");
  EXPECT_EQ(j["attempts"], 4);
  EXPECT_EQ(j["gso"], true);
  EXPECT_EQ(j["id"], "0012") << "a leading zero keeps it text";
  EXPECT_EQ(j["field.msg"], "shadowed");
}

TEST(Log, MalformedFieldsAreRefusedByTheParser) {
  EXPECT_FALSE(parse_logfmt("a=\"unterminated"));
  EXPECT_FALSE(parse_logfmt("novalue"));
  EXPECT_FALSE(parse_logfmt("=x"));
  EXPECT_TRUE(parse_logfmt(""));
}

}  // namespace
}  // namespace rumor::tools
