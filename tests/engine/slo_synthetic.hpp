#pragma once
// The synthetic step-time model the slo policy tests share (slo_policy_test, slo_forecast_test,
// slo_overload_test): FP16 10 ms + 0.1 ms/token (a full 1000-token step 110 ms: 9091 prompt
// tokens/s), FP8 6 ms + 0.05 ms/token (56 ms: 17857 tokens/s), no per-sequence cost; and an slo
// policy made from a spec over it.
#include <memory>
#include <string>

#include "nestedfp/latency_model.hpp"
#include "nestedfp/precision_policy.hpp"

namespace nestedfp::slotest {

// fp8_faster = false: FP8 costs what FP16 does (FP8 never helps).
inline LatencyModel synthetic_model(bool fp8_faster = true) {
  LatencyModel m;
  m.set_prior(Precision::FP16, LatencyModel::Coeffs{0.010, 1e-4, 0});
  m.set_prior(Precision::FP8, fp8_faster ? LatencyModel::Coeffs{0.006, 5e-5, 0}
                                         : LatencyModel::Coeffs{0.010, 1e-4, 0});
  return m;
}

inline std::unique_ptr<PrecisionPolicy> make_policy(const LatencyModel& m, const std::string& spec,
                                                    int budget = 1000) {
  PolicyContext ctx{budget, 0, 0, &m};
  return make_precision_policy(spec, ctx);
}

}  // namespace nestedfp::slotest
