#pragma once
// `nestedfp bench serve`: a load generator for OpenAI-compatible servers (ours or any other).
//
// Every request is a streaming POST /v1/completions with a token-id prompt:
//   {"model", "prompt": [ids], "max_tokens", "temperature": 0, "stream": true,
//    "stream_options": {"include_usage": true}}   (+ "ignore_eos": true with --ignore-eos)
// Timing, per request, from the moment it is sent: TTFT = first SSE event with a non-empty
// choice; ITL = gaps between later such events; E2E = until [DONE]; TPOT = (E2E - TTFT) /
// (output_tokens - 1). Output tokens = usage.completion_tokens when the server sends usage, else
// the number of content events (one token per event, as our server and vLLM stream). Requests that
// stop early at EOS are kept; their actual token counts are reported.
//
// Throughput mode: for each input length x output length x concurrency, a closed loop of
// `concurrency` clients sends `num_prompts` random-token prompts. Trace mode: an open loop replays
// arrival times and lengths from a CSV trace (bench_trace below).
#include <atomic>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace nestedfp::bench {

// ---- one request -----------------------------------------------------------------------------
struct Endpoint {
  std::string scheme = "http";
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string base_path;  // path prefix, e.g. "" or "/proxy"; "/v1/..." is appended
  std::string api_key;    // sent as "Authorization: Bearer ..." when not empty
  std::string model;      // "model" field; empty = ask /v1/models
  double timeout_s = 600;
};

// Parses "http[s]://host[:port][/prefix]"; a trailing "/v1" is dropped (OpenAI-client style).
Endpoint parse_url(const std::string& url);

struct RequestSpec {
  std::vector<int32_t> prompt;  // token ids
  int max_tokens = 16;
  double arrival_s = 0;  // trace mode: when to send, from the start of the run
  bool ignore_eos = false;
};

struct RequestResult {
  bool ok = false;
  std::string error;
  double start_s = 0;  // send time, from the start of the run
  double ttft_s = 0;
  double e2e_s = 0;
  std::vector<double> itl_s;
  int prompt_tokens = 0;
  int output_tokens = 0;
  int max_tokens = 0;
};

// The model id the server lists first under /v1/models. Throws nestedfp::Error naming the URL when
// the server cannot be reached or answers with something else.
std::string discover_model(const Endpoint& ep);

// Sends one streaming completion and times it. Never throws for server-side failures: they come
// back as ok = false with the error (HTTP status and body, or the connection error).
RequestResult run_request(const Endpoint& ep, const RequestSpec& spec, double run_start_s);

// Seconds on the steady clock (the time base of run_start_s and RequestResult::start_s).
double now_s();

// ---- statistics --------------------------------------------------------------------------------
struct Dist {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0, min = 0, max = 0;
  size_t n = 0;
};
// Percentile with linear interpolation between order statistics (numpy's default).
double percentile(std::vector<double> v, double p);
Dist distribution(const std::vector<double>& v);

struct Slo {
  double ttft_s = 0;  // 0 = no target
  double tpot_s = 0;
};

struct Summary {
  size_t requests = 0, completed = 0, failed = 0;
  double duration_s = 0;  // measurement window
  int64_t input_tokens = 0, output_tokens = 0;
  double request_throughput = 0;       // completed requests / s
  double output_token_throughput = 0;  // output tokens / s
  double total_token_throughput = 0;   // (input + output) tokens / s
  Dist ttft, tpot, itl, e2e;           // seconds
  Slo slo;
  double slo_ttft_attainment = 0, slo_tpot_attainment = 0, slo_attainment = 0;  // fractions
  double goodput = 0;               // requests / s meeting both targets
  std::vector<std::string> errors;  // first few distinct errors
};

// Statistics over `results`; the throughput window runs from the earliest send to the latest
// finish among them (or `window_s` when > 0). Failed requests count only in `failed`.
Summary summarize(const std::vector<RequestResult>& results, const Slo& slo, double window_s = 0);

// Keeps the middle `ratio` of requests by send time (drops (1 - ratio)/2 at each end: warm-up and
// drain). ratio 1 keeps everything.
std::vector<RequestResult> middle_fraction(std::vector<RequestResult> results, double ratio);

// ---- traces ------------------------------------------------------------------------------------
struct TraceRow {
  double t_s = 0;  // seconds since the first row of the file
  int context_tokens = 0, generated_tokens = 0;
};

// Reads `TIMESTAMP,ContextTokens,GeneratedTokens` (header required; timestamps like
// "2023-11-16 18:15:46.6805900", or plain seconds). Throws nestedfp::Error naming file and line.
std::vector<TraceRow> read_trace(const std::string& path);
std::vector<TraceRow> parse_trace(const std::string& text, const std::string& name);

struct TraceSlice {
  double start_s = 0;       // skip rows before this offset from the first row
  double duration_s = 0;    // 0 = to the end
  size_t num_requests = 0;  // 0 = all in the window
  double time_scale = 1;    // > 1 replays faster: arrival offsets are divided by it
  int max_input_len = 0;    // 0 = no clamp; else context tokens are clamped to it
  int max_output_len = 0;
};
// Requests for the slice: arrivals relative to the first kept row (divided by time_scale),
// lengths clamped to [1, max]. Prompts are left empty (filled by make_prompt).
std::vector<RequestSpec> slice_trace(const std::vector<TraceRow>& rows, const TraceSlice& s);

// A random-token prompt of `len` ids drawn uniformly from [lo, hi).
std::vector<int32_t> make_prompt(int len, int32_t lo, int32_t hi, uint64_t seed);

// ---- load generation ---------------------------------------------------------------------------
struct MetricsSample {
  double t_s = 0;  // from the start of the run
  double steps_fp16 = 0, steps_fp8 = 0, tokens_fp16 = 0, tokens_fp8 = 0;
};
// Values of nestedfp_steps_total{precision=...} and nestedfp_step_tokens_total{precision=...} in a
// Prometheus text page; nullopt when the page has none of them.
std::optional<MetricsSample> parse_precision_metrics(const std::string& prometheus_text);

// Per interval between consecutive samples (t_s = its middle): the FP16 share of engine steps and
// of step tokens (NaN when the engine was idle), steps per second of each precision, and requests
// sent per second (from `send_times_s`, same time base).
struct PrecisionTimeline {
  std::vector<double> t_s, fp16_step_share, fp16_token_share, fp16_steps_per_s, fp8_steps_per_s,
      arrivals_per_s;
};
PrecisionTimeline precision_timeline(const std::vector<MetricsSample>& samples,
                                     const std::vector<double>& send_times_s);

// Polls GET /metrics every `interval_s` on a thread until stop().
class MetricsPoller {
 public:
  MetricsPoller(Endpoint ep, double run_start_s, double interval_s = 1.0);
  ~MetricsPoller();
  void stop();
  std::vector<MetricsSample> samples() const;
  bool saw_metrics() const { return saw_.load(); }

 private:
  struct Impl;
  Impl* impl_;
  std::atomic<bool> saw_{false};
};

// Closed loop: `concurrency` workers send `specs` in order; returns results in spec order.
std::vector<RequestResult> run_closed_loop(const Endpoint& ep,
                                           const std::vector<RequestSpec>& specs, int concurrency,
                                           double run_start_s);
// Open loop: each spec is sent at run_start_s + arrival_s, whatever is still running.
std::vector<RequestResult> run_open_loop(const Endpoint& ep, const std::vector<RequestSpec>& specs,
                                         double run_start_s);

// ---- reports -----------------------------------------------------------------------------------
nlohmann::json to_json(const Summary& s);
nlohmann::json to_json(const RequestResult& r);
// One table row per summary, with the labels in front ("in", "out", "conc", or "trace").
std::string format_table(const std::vector<std::pair<std::string, Summary>>& rows);

// latency_over_time.png: TTFT, TPOT and E2E of each request against its send time.
// precision_share.png: per polling interval, the FP8 share of engine steps and of step tokens.
// Returns the files written (the precision plot is skipped without samples).
std::vector<std::string> write_plots(const std::string& dir,
                                     const std::vector<RequestResult>& results,
                                     const std::vector<MetricsSample>& metrics,
                                     const std::string& title);

}  // namespace nestedfp::bench
