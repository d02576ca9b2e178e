// The client's JSON helpers: UTF-8 detection decides between text and base64, and stats series
// names split into name and labels.
#include <gtest/gtest.h>

#include <string>

#include "tools/client.h"

namespace rumor::tools {
namespace {

TEST(ClientJson, Utf8IsRecognisedStrictly) {
  EXPECT_TRUE(is_utf8(""));
  EXPECT_TRUE(is_utf8("plain ascii \x01\x7f"));
  EXPECT_TRUE(is_utf8("h\xc3\xa9llo"));              // é
  EXPECT_TRUE(is_utf8("\xe2\x82\xac"));              // €
  EXPECT_TRUE(is_utf8("\xf0\x9f\x98\x80"));          // U+1F600
  EXPECT_TRUE(is_utf8("\xf4\x8f\xbf\xbf"));          // U+10FFFF
  EXPECT_FALSE(is_utf8("\xff"));
  EXPECT_FALSE(is_utf8("\x01\x02\xff"));
  EXPECT_FALSE(is_utf8("\xc3"));                     // truncated
  EXPECT_FALSE(is_utf8("\xe2\x82"));                 // truncated
  EXPECT_FALSE(is_utf8("\xc0\xaf"));                 // overlong '/'
  EXPECT_FALSE(is_utf8("\xe0\x80\xaf"));             // overlong
  EXPECT_FALSE(is_utf8("\xed\xa0\x80"));             // a surrogate
  EXPECT_FALSE(is_utf8("\xf4\x90\x80\x80"));         // above U+10FFFF
  EXPECT_FALSE(is_utf8("\xc3\x28"));                 // bad continuation
  EXPECT_FALSE(is_utf8(std::string("a\0\xfe", 3)));
}

TEST(ClientJson, Base64AndJsonStrings) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("\x01\x02\xff"), "AQL/");
  EXPECT_EQ(base64_encode("ab"), "YWI=");
  EXPECT_EQ(text_or_base64("a\"b\\\n"), "a\"b\\\n");
  EXPECT_EQ(text_or_base64("\x01\x02\xff"), "AQL/");
}

TEST(ClientJson, SeriesNamesSplitIntoNameAndLabels) {
  auto s = parse_series("rumor_packets_sent_total");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->name, "rumor_packets_sent_total");
  EXPECT_TRUE(s->labels.empty());
  s = parse_series(R"(rumor_drops_total{reason="bad_mac",core="1"})");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->name, "rumor_drops_total");
  ASSERT_EQ(s->labels.size(), 2u);
  EXPECT_EQ(s->labels[0], (std::pair<std::string, std::string>{"reason", "bad_mac"}));
  EXPECT_EQ(s->labels[1], (std::pair<std::string, std::string>{"core", "1"}));
  s = parse_series(R"(x{v="a\"b\\c"})");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->labels[0].second, "a\"b\\c");
  EXPECT_FALSE(parse_series(R"(x{v="a)"));
  EXPECT_FALSE(parse_series(R"(x{v=a})"));
  EXPECT_FALSE(parse_series(R"({v="a"})"));
}

}  // namespace
}  // namespace rumor::tools
