#pragma once
// Internal to src/format: eligibility that also hands back the per-row exponents.
#include <vector>

#include "nestedfp/format.hpp"

namespace nestedfp::format::detail {

// As check(); when k is not null it receives one exponent per row (0 for rejected rows).
Eligibility check_rows(const uint16_t* w, int64_t rows, int64_t cols, ScaleMode mode,
                       std::vector<int8_t>* k);

}  // namespace nestedfp::format::detail
