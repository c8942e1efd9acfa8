// All weights of a Hugging Face model directory: one model.safetensors, or the shards listed in
// model.safetensors.index.json ("weight_map": tensor name -> shard file).
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "nestedfp/error.hpp"
#include "nestedfp/safetensors.hpp"

namespace nestedfp::io {

namespace fs = std::filesystem;

WeightStore WeightStore::open_dir(const std::string& dir) {
  WeightStore ws;
  const fs::path root(dir);
  const fs::path index_path = root / "model.safetensors.index.json";
  const fs::path single = root / "model.safetensors";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) fail("{}: not a directory", dir);

  if (fs::exists(index_path, ec)) {
    const std::string ip = index_path.string();
    std::ifstream in(index_path);
    if (!in) fail("{}: cannot read", ip);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not valid JSON ({})", ip, e.what());
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail("{}: missing object 'weight_map'", ip);
    std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
    for (auto& [name, shard] : j["weight_map"].items()) {
      if (!shard.is_string()) fail("{}: weight_map entry '{}' must be a file name", ip, name);
      const std::string file = shard.get<std::string>();
      // Shards live next to the index; refuse paths that would escape the directory.
      if (file.empty() || file.find('/') != std::string::npos || file == "..")
        fail("{}: weight_map entry '{}' names an invalid shard file '{}'", ip, name, file);
      auto it = shards.find(file);
      if (it == shards.end()) {
        const fs::path sp = root / file;
        if (!fs::exists(sp, ec))
          fail("{}: shard '{}' (named by {} for tensor '{}') is missing", sp.string(), file,
               index_path.filename().string(), name);
        it =
            shards
                .emplace(file, std::shared_ptr<SafetensorsFile>(SafetensorsFile::open(sp.string())))
                .first;
        ws.files_.push_back(it->second);
      }
      const TensorView* t = it->second->find(name);
      if (!t)
        fail("{}: tensor '{}' is named by {} but is not in this shard", it->second->path(), name,
             index_path.filename().string());
      ws.index_[name] = t;
    }
  } else if (fs::exists(single, ec)) {
    ws.files_.push_back(std::shared_ptr<SafetensorsFile>(SafetensorsFile::open(single.string())));
    for (auto& t : ws.files_.back()->tensors()) ws.index_[t.name] = &t;
  } else {
    fail("{}: no model.safetensors or model.safetensors.index.json found", dir);
  }
  return ws;
}

const TensorView* WeightStore::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorView& WeightStore::get(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t) fail("weight '{}' not found in the model's safetensors files", name);
  return *t;
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (auto& [n, _] : index_) out.push_back(n);
  return out;
}

size_t WeightStore::total_bytes() const {
  size_t s = 0;
  for (auto& [_, t] : index_) s += t->nbytes;
  return s;
}

}  // namespace nestedfp::io
