// Parsing and formatting of sizes and rates for the CLI and matrix specs.
#include "core/units.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace snap {

void throw_errno(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Parses "<number><suffix>" where suffix is one of "", k, m, g, t with optional "i", "b".
bool parse_size_impl(const std::string& text, double& out) {
  std::string s = lower(text);
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || errno != 0 || !std::isfinite(v) || v < 0) return false;
  std::string suf(end);
  double mult = 1;
  if (!suf.empty()) {
    switch (suf[0]) {
      case 'k': mult = 1024.0; break;
      case 'm': mult = 1024.0 * 1024; break;
      case 'g': mult = 1024.0 * 1024 * 1024; break;
      case 't': mult = 1024.0 * 1024 * 1024 * 1024; break;
      case 'b': mult = 1; break;
      default: return false;
    }
    std::string rest = suf.substr(suf[0] == 'b' ? 0 : 1);
    if (!(rest.empty() || rest == "b" || rest == "i" || rest == "ib")) return false;
  }
  out = v * mult;
  return true;
}

}  // namespace

uint64_t parse_size(const std::string& text, const std::string& what) {
  double v;
  if (!parse_size_impl(text, v) || v > 1e18)
    throw UsageError(what + ": malformed size '" + text + "' (expected e.g. 4096, 64M, 1G, 1GiB)");
  return uint64_t(std::llround(v));
}

double parse_rate_pages(const std::string& text, const std::string& what) {
  std::string s = lower(text);
  if (s == "max" || s == "unlimited") return kRateMax;
  auto bad = [&]() {
    return UsageError(what + ": malformed rate '" + text +
                      "' (expected e.g. 0, max, 100MiB/s, 20000pages/s)");
  };
  const std::string pages_suffix = "pages/s";
  if (s.size() > pages_suffix.size() &&
      s.compare(s.size() - pages_suffix.size(), pages_suffix.size(), pages_suffix) == 0) {
    std::string num = s.substr(0, s.size() - pages_suffix.size());
    char* end = nullptr;
    double v = std::strtod(num.c_str(), &end);
    if (end == num.c_str() || *end != '\0' || !std::isfinite(v) || v < 0 || v > 1e18 / double(kPageSize)) throw bad();
    return v;
  }
  std::string num = s;
  if (num.size() > 2 && num.compare(num.size() - 2, 2, "/s") == 0) {
    num = num.substr(0, num.size() - 2);
  } else if (s != "0") {
    // "100MiB" is a size, not a rate: taking it as per second would guess what was meant.
    throw UsageError(what + ": '" + text + "' is not a rate: it needs /s (e.g. 100MiB/s, 20000pages/s; 0 for idle)");
  }
  double v;
  if (!parse_size_impl(num, v) || v > 1e18) throw bad();  // 1e18 B/s: a typo, not a rate
  return v / double(kPageSize);
}

uint64_t parse_bandwidth(const std::string& text, const std::string& what) {
  std::string s = lower(text);
  if (s == "0" || s == "max" || s == "unlimited" || s == "none") return 0;
  // A bandwidth is bytes per second: "1G" alone is a size, and taking it as 1G/s would hide a typo of
  // another flag's value (as with rates, issue 25 item 8), so the "/s" is required.
  if (s.size() <= 2 || s.compare(s.size() - 2, 2, "/s") != 0)
    throw UsageError(what + ": '" + text + "' is a size, not a bandwidth: add the unit of time (e.g. " + text +
                     "/s), or 0 for no cap");
  std::string num = s.substr(0, s.size() - 2);
  double v;
  if (!parse_size_impl(num, v) || v < 1 || v > 1e18)  // 1e18 B/s: beyond any device, and fits uint64_t
    throw UsageError(what + ": malformed bandwidth '" + text + "' (expected e.g. 800MiB/s, 1G/s, 0 for no cap)");
  return uint64_t(std::llround(v));
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

}  // namespace snap
