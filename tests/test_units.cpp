// Parsing of sizes, rates and bandwidths, and of --set parameters (table-driven).
#include <gtest/gtest.h>

#include "core/error.h"
#include "core/params.h"
#include "core/units.h"

using namespace snap;

TEST(Units, SizesParse) {
  struct Case {
    const char* text;
    uint64_t bytes;
  } cases[] = {{"4096", 4096},        {"64K", 64 << 10},      {"64M", 64ull << 20},
               {"1G", 1ull << 30},    {"1GiB", 1ull << 30},   {"2gb", 2ull << 30},
               {"0.5G", 512ull << 20}, {"256MiB", 256ull << 20}, {"1T", 1ull << 40}};
  for (const auto& c : cases) EXPECT_EQ(parse_size(c.text, "--mem"), c.bytes) << c.text;
}

TEST(Units, BadSizesNameTheFlag) {
  for (const char* bad : {"", "abc", "12Q", "-1M", "1GiBs", "M"}) {
    try {
      parse_size(bad, "--mem");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("--mem"), std::string::npos);
    }
  }
}

TEST(Units, RatesParse) {
  EXPECT_EQ(parse_rate_pages("max", "--rate"), kRateMax);
  EXPECT_EQ(parse_rate_pages("0", "--rate"), 0.0);
  EXPECT_DOUBLE_EQ(parse_rate_pages("100MiB/s", "--rate"), 100.0 * 256);
  EXPECT_DOUBLE_EQ(parse_rate_pages("20000pages/s", "--rate"), 20000.0);
  EXPECT_DOUBLE_EQ(parse_rate_pages("4K/s", "--rate"), 1.0);
  for (const char* bad : {"fast", "10pages", "-5pages/s", "x/s"}) EXPECT_THROW(parse_rate_pages(bad, "--rate"), UsageError) << bad;
}

TEST(Units, Bandwidth) {
  EXPECT_EQ(parse_bandwidth("0", "--bandwidth"), 0u);
  EXPECT_EQ(parse_bandwidth("800MiB/s", "--bandwidth"), 800ull << 20);
  EXPECT_EQ(parse_bandwidth("1G/s", "--bandwidth"), 1ull << 30);
  // A size without a unit of time is refused, naming the fix (it was taken as 1G/s before).
  EXPECT_THROW(parse_bandwidth("1G", "--bandwidth"), UsageError);
  EXPECT_THROW(parse_bandwidth("/s", "--bandwidth"), UsageError);
  EXPECT_THROW(parse_bandwidth("lots", "--bandwidth"), UsageError);
}

TEST(Params, DefaultsSetAndErrors) {
  std::vector<ParamSpec> specs = {{"chunk_pages", ParamSpec::Type::kInt, "512", 1, 65536, "h"},
                                  {"ratio", ParamSpec::Type::kDouble, "0.5", 0, 1, "h"},
                                  {"spin", ParamSpec::Type::kBool, "false", 0, 0, "h"},
                                  {"mode", ParamSpec::Type::kString, "poll", 0, 0, "h", {"poll", "read"}}};
  ParamValues d("u", specs, {});
  EXPECT_EQ(d.get_int("chunk_pages"), 512);
  EXPECT_DOUBLE_EQ(d.get_double("ratio"), 0.5);
  EXPECT_FALSE(d.get_bool("spin"));
  ParamValues s("u", specs, {{"chunk_pages", "16"}, {"spin", "on"}, {"mode", "read"}});
  EXPECT_EQ(s.get_int("chunk_pages"), 16);
  EXPECT_TRUE(s.get_bool("spin"));
  EXPECT_EQ(s.get_string("mode"), "read");
  for (auto bad : std::vector<std::map<std::string, std::string>>{
           {{"nope", "1"}}, {{"chunk_pages", "0"}}, {{"mode", "bogus"}}, {{"chunk_pages", "1.5"}}, {{"ratio", "2"}}, {{"spin", "maybe"}}})
    EXPECT_THROW(ParamValues("u", specs, bad), UsageError);
}

TEST(Params, Assignments) {
  ParamAssignments a;
  parse_assignment("uffd-wp.chunk_pages=64", a);
  EXPECT_EQ(a["uffd-wp"]["chunk_pages"], "64");
  for (const char* bad : {"nodot=1", ".x=1", "a.=1", "a.b", "a=b.c"}) EXPECT_THROW(parse_assignment(bad, a), UsageError) << bad;
}
