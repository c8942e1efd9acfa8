#include "engine/stop_checker.hpp"

#include <gtest/gtest.h>

using nestedfp::engine::StopChecker;

TEST(StopChecker, NoStopsEmitsEverything) {
  StopChecker s({}, false);
  EXPECT_FALSE(s.append("hello "));
  EXPECT_EQ(s.take_ready(), "hello ");
  EXPECT_FALSE(s.append("world"));
  EXPECT_EQ(s.take_ready(), "world");
  EXPECT_EQ(s.take_all(), "");
}

TEST(StopChecker, StopStringAcrossPiecesIsCutAndPrefixHeldBack) {
  StopChecker s({"END"}, false);
  EXPECT_FALSE(s.append("abcE"));
  EXPECT_EQ(s.take_ready(), "abc");  // "E" could start "END"
  EXPECT_FALSE(s.append("N"));
  EXPECT_EQ(s.take_ready(), "");  // "EN" still could
  EXPECT_TRUE(s.append("Dxyz"));
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.take_all(), "");
  EXPECT_EQ(s.text(), "abc");
}

TEST(StopChecker, FalseStartIsReleased) {
  StopChecker s({"END"}, false);
  s.append("xE");
  EXPECT_EQ(s.take_ready(), "x");
  s.append("Nd");  // "ENd" is not "END"
  EXPECT_EQ(s.take_ready(), "ENd");
  s.append("EN");
  EXPECT_EQ(s.take_ready(), "");
  EXPECT_EQ(s.take_all(), "EN");  // at the end, held text comes out
}

TEST(StopChecker, EarliestOfSeveralStopsWinsAndIncludeStop) {
  StopChecker s({"cd", "bcdef"}, true);
  EXPECT_TRUE(s.append("abcdefg"));
  EXPECT_EQ(s.take_all(), "abcd");
  StopChecker t({"\n\n", "###"}, false);
  t.append("line\n");
  EXPECT_EQ(t.take_ready(), "line");
  EXPECT_TRUE(t.append("\nnext"));
  EXPECT_EQ(t.take_all(), "");
  EXPECT_EQ(t.text(), "line");
}

TEST(StopChecker, OverlappingPrefixesHoldTheLongest) {
  StopChecker s({"aab"}, false);
  s.append("xaa");
  EXPECT_EQ(s.take_ready(), "x");
  EXPECT_TRUE(s.append("b"));
  EXPECT_EQ(s.text(), "x");
  StopChecker t({"aab"}, false);
  t.append("aaa");
  EXPECT_EQ(t.take_ready(), "a");  // "aa" may still start "aab"
  EXPECT_TRUE(t.append("b"));
  EXPECT_EQ(t.text(), "a");
}

TEST(StopChecker, StopsEndingTogetherTheLongerWins) {
  // "cd" and "d" complete at the same byte: the longer match starts first and is cut.
  StopChecker s({"d", "cd"}, false);
  EXPECT_TRUE(s.append("abcde"));
  EXPECT_EQ(s.text(), "ab");
  StopChecker t({"cd", "d"}, true);
  EXPECT_TRUE(t.append("abcde"));
  EXPECT_EQ(t.text(), "abcd");
  EXPECT_EQ(t.take_all(), "abcd");
}
