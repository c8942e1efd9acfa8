#include "nestedfp/precision_policy.hpp"

#include <charconv>

#include "nestedfp/error.hpp"

namespace nestedfp {
namespace {

constexpr const char* kForms =
    "expected fp16, fp8, dynamic[:threshold=N[,hysteresis=H]] or "
    "slo[:ttft=MS,tpot=MS,hysteresis=F,gain=F,forecast=F,hold=F]";

class FixedPolicy final : public PrecisionPolicy {
 public:
  explicit FixedPolicy(Precision p) : p_(p) {}
  Precision choose(const StepLoad&) override { return p_; }
  std::string spec() const override { return to_string(p_); }

 private:
  Precision p_;
};

class DynamicPolicy final : public PrecisionPolicy {
 public:
  DynamicPolicy(int threshold, int hysteresis) : threshold_(threshold), hysteresis_(hysteresis) {}
  Precision choose(const StepLoad& load) override {
    int bar = last_ == Precision::FP8 ? threshold_ - hysteresis_ : threshold_;
    last_ = load.num_tokens > bar ? Precision::FP8 : Precision::FP16;
    return last_;
  }
  std::string spec() const override {
    return fmt::format("dynamic:threshold={},hysteresis={}", threshold_, hysteresis_);
  }

 private:
  int threshold_, hysteresis_;
  Precision last_ = Precision::FP16;
};

int parse_int(std::string_view spec, std::string_view key, std::string_view v) {
  int out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size() || v.empty() || out < 0)
    fail("precision policy '{}': {} must be a non-negative integer, got '{}'", spec, key, v);
  return out;
}

}  // namespace

bool is_slo_spec(std::string_view spec) { return spec.substr(0, spec.find(':')) == "slo"; }

std::unique_ptr<PrecisionPolicy> make_precision_policy(std::string_view spec,
                                                       const PolicyContext& ctx) {
  if (spec == "fp16") return std::make_unique<FixedPolicy>(Precision::FP16);
  if (spec == "fp8") return std::make_unique<FixedPolicy>(Precision::FP8);
  if (is_slo_spec(spec)) return make_slo_policy(spec, ctx);
  std::string_view head = spec.substr(0, spec.find(':'));
  if (head != "dynamic") fail("unknown precision policy '{}': {}", spec, kForms);
  int threshold = ctx.max_num_batched_tokens / 2, hysteresis = 0;
  if (head.size() < spec.size()) {
    std::string_view rest = spec.substr(head.size() + 1);
    if (rest.empty()) fail("precision policy '{}': nothing after ':'; {}", spec, kForms);
    bool seen_t = false, seen_h = false;
    while (true) {
      std::string_view item = rest.substr(0, rest.find(','));
      auto eq = item.find('=');
      if (eq == std::string_view::npos)
        fail("precision policy '{}': '{}' is not key=value; {}", spec, item, kForms);
      std::string_view key = item.substr(0, eq), val = item.substr(eq + 1);
      if (key == "threshold" && !seen_t) {
        threshold = parse_int(spec, key, val);
        seen_t = true;
      } else if (key == "hysteresis" && !seen_h) {
        hysteresis = parse_int(spec, key, val);
        seen_h = true;
      } else {
        fail("precision policy '{}': unknown or repeated option '{}'; {}", spec, key, kForms);
      }
      if (item.size() == rest.size()) break;
      rest = rest.substr(item.size() + 1);
    }
  }
  if (hysteresis > threshold)
    fail("precision policy '{}': hysteresis ({}) must not exceed threshold ({})", spec, hysteresis,
         threshold);
  return std::make_unique<DynamicPolicy>(threshold, hysteresis);
}

}  // namespace nestedfp
