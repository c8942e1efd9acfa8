#include <gtest/gtest.h>

#include "nestedfp/error.hpp"
#include "nestedfp/precision_policy.hpp"

using namespace nestedfp;

namespace {
Precision at(PrecisionPolicy& p, int tokens) { return p.choose({tokens, 1, 0, {}}); }
}  // namespace

TEST(PrecisionPolicy, FixedPolicies) {
  auto a = make_precision_policy("fp16", 512);
  auto b = make_precision_policy("fp8", 512);
  for (int t : {1, 300, 5000}) {
    EXPECT_EQ(at(*a, t), Precision::FP16);
    EXPECT_EQ(at(*b, t), Precision::FP8);
  }
  EXPECT_EQ(a->spec(), "fp16");
  EXPECT_EQ(b->spec(), "fp8");
}

TEST(PrecisionPolicy, DynamicDefaultsToHalfTheBudget) {
  auto p = make_precision_policy("dynamic", 300);
  EXPECT_EQ(p->spec(), "dynamic:threshold=150,hysteresis=0");
  EXPECT_EQ(at(*p, 150), Precision::FP16);  // "more than N"
  EXPECT_EQ(at(*p, 151), Precision::FP8);
  EXPECT_EQ(at(*p, 1), Precision::FP16);
}

TEST(PrecisionPolicy, DynamicThresholdAndHysteresis) {
  auto p = make_precision_policy("dynamic:threshold=64,hysteresis=16", 512);
  EXPECT_EQ(p->spec(), "dynamic:threshold=64,hysteresis=16");
  EXPECT_EQ(at(*p, 60), Precision::FP16);
  EXPECT_EQ(at(*p, 64), Precision::FP16);
  EXPECT_EQ(at(*p, 65), Precision::FP8);
  EXPECT_EQ(at(*p, 60), Precision::FP8);  // stays: 60 > 64 - 16
  EXPECT_EQ(at(*p, 49), Precision::FP8);
  EXPECT_EQ(at(*p, 48), Precision::FP16);  // drops at N - H
  EXPECT_EQ(at(*p, 60), Precision::FP16);  // and needs > N again
  auto q = make_precision_policy("dynamic:hysteresis=2,threshold=10", 512);
  EXPECT_EQ(q->spec(), "dynamic:threshold=10,hysteresis=2");
}

TEST(PrecisionPolicy, ParseErrorsSayWhatIsWrong) {
  for (const char* bad : {"", "fp4", "FP16", "dynamic:", "dynamic:threshold",
                          "dynamic:threshold=", "dynamic:threshold=-1", "dynamic:threshold=1x",
                          "dynamic:threshold=10,", "dynamic:foo=1",
                          "dynamic:threshold=1,threshold=2", "dynamic:threshold=4,hysteresis=5",
                          "dynamic;threshold=4", "dynamic:threshold=99999999999999"}) {
    try {
      make_precision_policy(bad, 512);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("precision policy"), std::string::npos) << e.what();
    }
  }
}
