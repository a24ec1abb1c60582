// Runs the analysis scripts' tests: test_plot.py under the python3 that has matplotlib, test_variants.py,
// test_model.py and test_perf_report.py under any python3.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

namespace {

namespace fs = std::filesystem;

struct Shell {
  int rc = -1;
  std::string out;  // stdout and stderr together
};

Shell shell(const std::string& command) {
  Shell s;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return s;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) s.out.append(buf.data(), n);
  int st = pclose(p);
  s.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return s;
}

// Single-quoted for sh (our paths hold no single quote).
std::string sh_quoted(const std::string& text) { return "'" + text + "'"; }

// The scripts live in the source tree, not the build tree: CMake compiles this file by its absolute
// path, so __FILE__ is <source>/tests/test_plot.cpp.
fs::path source_dir() { return fs::path(__FILE__).parent_path().parent_path(); }

// Runs an analysis script's tests under the python3 that has matplotlib (skipped, with the reason,
// where there is none).
void run_matplotlib_script_test(const std::string& script) {
  const fs::path analysis = source_dir() / "analysis";
  ASSERT_TRUE(fs::exists(analysis / "find_python.sh")) << "no find_python.sh under " << analysis
                                                       << " (is __FILE__ an absolute source path?)";
  Shell finder = shell("bash " + sh_quoted(analysis / "find_python.sh"));
  if (finder.rc != 0) GTEST_SKIP() << "no python3 can import matplotlib: " << finder.out;
  std::string python = finder.out.substr(0, finder.out.find('\n'));
  ASSERT_TRUE(fs::exists(python)) << "find_python.sh printed '" << finder.out << "'";

  // SNAPBENCH_BINARY: the binary whose `columns` are the header the fixture must have (test_plot.py).
  Shell test = shell("SNAPBENCH_BINARY=" + sh_quoted(SNAPBENCH_BINARY) + " " + sh_quoted(python) + " " +
                     sh_quoted(analysis / script));
  EXPECT_EQ(test.rc, 0) << python << " analysis/" << script << " failed:\n" << test.out;
}

// variants.py, model.py and perf_report.py need only the standard library: any python3 runs their tests.
void run_stdlib_script_test(const std::string& script) {
  Shell which = shell("command -v python3");
  if (which.rc != 0) GTEST_SKIP() << "no python3 on PATH";
  Shell test = shell("python3 " + sh_quoted(source_dir() / "analysis" / script));
  EXPECT_EQ(test.rc, 0) << "analysis/" << script << " failed:\n" << test.out;
}

}  // namespace

TEST(PlotScripts, TestPlotPassesUnderPythonWithMatplotlib) { run_matplotlib_script_test("test_plot.py"); }

// The side-by-side figure of results/qemu/.
TEST(PlotScripts, TestQemuVsSnapbenchPasses) { run_matplotlib_script_test("test_qemu_vs_snapbench.py"); }

TEST(PlotScripts, TestVariantsPasses) { run_stdlib_script_test("test_variants.py"); }

// model.py's tests include its error bound against results/paper/results.csv (the committed study):
// a model change that stops fitting the measurements fails here.
TEST(PlotScripts, TestModelPasses) { run_stdlib_script_test("test_model.py"); }

TEST(PlotScripts, TestPerfReportPasses) { run_stdlib_script_test("test_perf_report.py"); }
