// The bench commands' list options (src/cli/list_args.hpp): values, ranges, and refusals.
#include "cli/list_args.hpp"

#include <gtest/gtest.h>

using nestedfp::cli::positive_doubles;
using nestedfp::cli::positive_ints;

TEST(ListArgs, IntsAndRanges) {
  EXPECT_EQ(positive_ints("1,8,32", "--batch"), (std::vector<int>{1, 8, 32}));
  EXPECT_EQ(positive_ints("1..4,8", "--k"), (std::vector<int>{1, 2, 3, 4, 8}));
  EXPECT_EQ(positive_ints("7", "--k"), (std::vector<int>{7}));
}

TEST(ListArgs, RefusesBadIntItems) {
  for (const char* bad : {"", "1,,2", "0", "-3", "8x", "1.5", "4..2", "1..", "..3", "a"})
    EXPECT_THROW(positive_ints(bad, "--batch"), nestedfp::Error) << bad;
  try {
    positive_ints("1,8x", "--batch");
    FAIL() << "no error";
  } catch (const nestedfp::Error& e) {  // names the option and the bad item
    EXPECT_NE(std::string(e.what()).find("--batch"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("'8x'"), std::string::npos);
  }
}

TEST(ListArgs, Doubles) {
  EXPECT_EQ(positive_doubles("10,15,2.5", "--slo-scales"), (std::vector<double>{10, 15, 2.5}));
  for (const char* bad : {"", "10,", "0", "-1", "nan", "1e", "x"})
    EXPECT_THROW(positive_doubles(bad, "--slo-scales"), nestedfp::Error) << bad;
}
