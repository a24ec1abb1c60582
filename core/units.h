// Parsing of sizes ("64M", "1GiB", "4096") and rates ("100MiB/s", "20000pages/s", "0", "max").
#pragma once
#include <cstdint>
#include <string>

namespace snap {

constexpr size_t kPageSize = 4096;

// Bytes from "4096", "64K", "64M", "1G", "1GiB", "2MB" (K/M/G/T are binary: 1K = 1024).
// Throws UsageError naming `what` on malformed input.
uint64_t parse_size(const std::string& text, const std::string& what);

// A write or save rate in pages per second. "max" means unlimited (returns kRateMax), "0" means idle.
// Accepts "<size>/s" (bytes per second, converted to pages) and "<n>pages/s".
constexpr double kRateMax = -1.0;
double parse_rate_pages(const std::string& text, const std::string& what);

// A bandwidth in bytes per second; "0" or "unlimited" or "max" means no cap (returns 0).
uint64_t parse_bandwidth(const std::string& text, const std::string& what);

// Human-readable forms for messages and reports.
std::string format_bytes(double bytes);

}  // namespace snap
