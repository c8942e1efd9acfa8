#pragma once
// Shared by the tests that run the bundled pystd-16m model against its REFERENCE.json.
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "engine/offline.hpp"
#include "nestedfp/tokenizer.hpp"

namespace nestedfp::testing_pystd {

inline const std::string kModel = NESTEDFP_SOURCE_DIR "/models/pystd-16m";
inline const std::string kText = NESTEDFP_SOURCE_DIR "/../shared/data/eval/pystd_public.txt.gz";

inline const nlohmann::json& reference() {
  static const nlohmann::json j = [] {
    std::ifstream f(kModel + "/REFERENCE.json");
    return nlohmann::json::parse(f);
  }();
  return j;
}

// Token ids of the start of the public text: the first 8 chunks need 4096; 64 KB of text is plenty.
inline const std::vector<int32_t>& text_ids() {
  static const std::vector<int32_t> ids = [] {
    const std::string text = engine::read_text_file(kText);
    return Tokenizer::load(kModel).encode(std::string_view(text).substr(0, 65536), false);
  }();
  return ids;
}

}  // namespace nestedfp::testing_pystd
