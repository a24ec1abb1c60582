// Tests of the QEMU launcher, the QMP client and real migrations of an idle QEMU (SeaBIOS, no
// kernel) through snapbench's sinks, parsed and verified; each skips with the reason when QEMU or
// /dev/kvm is missing.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "core/region.h"
#include "core/sink.h"
#include "workloads/qemu/guest_ram_copy.h"
#include "workloads/qemu/migration_stream.h"
#include "workloads/qemu/qemu_migration.h"
#include "workloads/qemu/qemu_process.h"
#include "workloads/qemu/qemu_vm.h"
#include "tests/qemu_test_support.h"

namespace {

using namespace snap::qemu;

// True once `pid` no longer exists or is a zombie nobody will run again (killed, awaiting its reaper).
bool process_gone(pid_t pid) {
  if (kill(pid, 0) != 0) return true;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const size_t paren = line.rfind(')');
  return paren == std::string::npos || (paren + 2 < line.size() && (line[paren + 2] == 'Z' || line[paren + 2] == 'X'));
}

std::string temp_path(const std::string& name) {
  return "/tmp/snapbench-test-" + std::to_string(getpid()) + "-" + name;
}

TEST(QemuProcess, FindReportsAMissingBinary) {
  QemuBinary b;
  std::string why;
  EXPECT_FALSE(find_qemu("no-such-qemu-binary-xyz", b, why));
  EXPECT_NE(why.find("not found on PATH"), std::string::npos) << why;
}

TEST(QemuProcess, FailureReportsExitStatusAndLastStderrLine) {
  QemuProcess p("/bin/sh", {"-c", "echo first >&2; echo 'the last line' >&2; exit 3"});
  ASSERT_TRUE(p.wait_exit(30));
  EXPECT_EQ(p.describe_exit(), "exited with status 3");
  EXPECT_EQ(p.stderr_last_line(), "the last line");
  EXPECT_EQ(p.failure_summary(), "QEMU exited with status 3: the last line");
}

TEST(QemuProcess, DestructorKillsAndReaps) {
  pid_t pid;
  {
    QemuProcess p("/bin/sleep", {"100"});
    pid = p.pid();
    ASSERT_TRUE(p.running());
  }
  // Reaped by the destructor: the pid is gone, not a zombie.
  EXPECT_NE(kill(pid, 0), 0);
}

TEST(QemuProcess, DiesWithSnapbenchEvenOnAnImmediateExit) {
  // A second Ctrl-C ends snapbench with _exit(130): no destructor runs, the death signal must act.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    QemuProcess p("/bin/sleep", {"100"});
    const pid_t pid = p.pid();
    (void)!write(fds[1], &pid, sizeof pid);
    _exit(130);
  }
  close(fds[1]);
  pid_t grandchild = -1;
  ASSERT_EQ(read(fds[0], &grandchild, sizeof grandchild), ssize_t(sizeof grandchild));
  close(fds[0]);
  int status;
  waitpid(child, &status, 0);
  bool gone = false;
  for (int i = 0; i < 500 && !(gone = process_gone(grandchild)); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(gone) << "the child process survived its parent";
  if (!gone) kill(grandchild, SIGKILL);
}

QemuVmOptions idle_vm() {
  QemuVmOptions o;
  o.mem_bytes = 64ull << 20;
  return o;
}

TEST(QemuQmp, StopContStatusEventsAndErrors) {
  SKIP_WITHOUT_QEMU();
  QemuVm vm(idle_vm());
  EXPECT_FALSE(vm.qmp().version().empty());
  EXPECT_EQ(vm.status(), "running");
  vm.stop();
  EXPECT_EQ(vm.status(), "paused");
  EXPECT_FALSE(vm.qmp().wait_event("STOP", 5).is_null());
  vm.cont();
  EXPECT_EQ(vm.status(), "running");
  EXPECT_FALSE(vm.qmp().wait_event("RESUME", 5).is_null());
  try {
    vm.execute("no-such-command");
    ADD_FAILURE() << "an unknown command was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-command"), std::string::npos) << e.what();
  }
  const pid_t pid = vm.process().pid();
  vm.shutdown();
  EXPECT_NE(kill(pid, 0), 0) << "QEMU left running after shutdown";
}

TEST(QemuQmp, StartupFailureReportsQemusMessage) {
  SKIP_WITHOUT_QEMU();
  QemuVmOptions o = idle_vm();
  o.extra_args = {"-no-such-option"};
  try {
    QemuVm vm(o);
    ADD_FAILURE() << "QEMU started with a bad option";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("-no-such-option"), std::string::npos) << e.what();
  }
}

// One migration of an idle VM into a sink; the parsed counts and QEMU's counters must agree.
struct Migrated {
  MigrationOutcome out;
  uint64_t total_pages = 0;
};

Migrated migrate_idle(QemuVm& vm, snap::Sink& sink, MigrationStreamParser& parser, bool background,
                      const std::string& ram_block = "pc.ram") {
  MigrationOptions mo;
  mo.background_snapshot = background;
  Migrated m;
  m.out = migrate_to_sink(vm, mo, sink, parser);
  for (const auto& b : parser.blocks()) m.total_pages += b.bytes / kTargetPageSize;
  EXPECT_EQ(cross_check(m.out, parser), "");
  EXPECT_EQ(parser.bytes().total, sink.bytes_written());
  EXPECT_FALSE(parser.devices().empty());
  EXPECT_GE(parser.block_index(ram_block), 0);
  return m;
}

TEST(QemuMigration, StopCopySavesEveryPageOnceAndMatchesGuestMemory) {
  SKIP_WITHOUT_QEMU();
  QemuVm vm(idle_vm());
  vm.stop();
  GuestRamCopy ram;
  MigrationStreamParser parser(&ram);
  auto sink = snap::make_sink({"memory", false, 0, 64ull << 20});
  Migrated m = migrate_idle(vm, *sink, parser, false);
  EXPECT_EQ(parser.duplicate_pages(), 0u);
  EXPECT_EQ(parser.unique_pages(), m.total_pages);
  EXPECT_EQ(vm.status(), "postmigrate");
  ASSERT_TRUE(ram.found());
  EXPECT_EQ(ram.bytes(), 64ull << 20);
  const std::string dump = temp_path("stopcopy.ram");
  vm.execute("pmemsave", {{"val", 0}, {"size", ram.bytes()}, {"filename", dump}});
  RamCompare c = ram.compare_with_dump(dump);
  std::remove(dump.c_str());
  EXPECT_TRUE(c.pass) << c.message;
  EXPECT_EQ(c.pages_compared, ram.pages() - (0x100000 - 0xA0000) / kTargetPageSize);
  // The parser's view of the bytes equals what the sink kept.
  MigrationStreamParser again;
  const auto bytes = sink->read_back();
  again.feed(bytes.data(), bytes.size());
  again.finish();
  EXPECT_EQ(again.pages_saved(), parser.pages_saved());
}

TEST(QemuMigration, ComparisonCatchesADifferentPage) {
  SKIP_WITHOUT_QEMU();
  QemuVm vm(idle_vm());
  vm.stop();
  GuestRamCopy ram;
  MigrationStreamParser parser(&ram);
  auto sink = snap::make_sink({"null", false, 0, 0});
  migrate_idle(vm, *sink, parser, false);
  // A dump differing in one byte of one page: the comparison must name that page and byte.
  const std::string dump = temp_path("changed.ram");
  vm.execute("pmemsave", {{"val", 0}, {"size", ram.bytes()}, {"filename", dump}});
  {
    std::fstream f(dump, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(0x200000 + 17);
    f.put(char(0x5a));
  }
  RamCompare c = ram.compare_with_dump(dump);
  std::remove(dump.c_str());
  EXPECT_FALSE(c.pass);
  EXPECT_EQ(c.pages_differing, 1u);
  EXPECT_NE(c.message.find("page 512 differs at byte 17"), std::string::npos) << c.message;
}

TEST(QemuMigration, PrecopyOfARunningGuestParsesAndVerifies) {
  SKIP_WITHOUT_QEMU();
  QemuVm vm(idle_vm());
  GuestRamCopy ram;
  MigrationStreamParser parser(&ram);
  const std::string file = temp_path("precopy.stream");
  auto sink = snap::make_sink({"file:" + file, false, 0, 0});
  Migrated m = migrate_idle(vm, *sink, parser, false);
  EXPECT_GE(m.out.dirty_sync_count, 1u);
  EXPECT_EQ(parser.unique_pages(), m.total_pages);
  EXPECT_TRUE(parser.ram_end_seen());
  EXPECT_EQ(vm.status(), "postmigrate");
  const std::string dump = temp_path("precopy.ram");
  vm.execute("pmemsave", {{"val", 0}, {"size", ram.bytes()}, {"filename", dump}});
  RamCompare c = ram.compare_with_dump(dump);
  std::remove(dump.c_str());
  EXPECT_TRUE(c.pass) << c.message;
  // The file sink holds exactly the parsed stream.
  std::ifstream in(file, std::ios::binary | std::ios::ate);
  EXPECT_EQ(uint64_t(in.tellg()), parser.bytes().total);
  std::remove(file.c_str());
}

TEST(QemuMigration, BackgroundSnapshotSavesEachPageOnceThroughExec) {
  SKIP_WITHOUT_QEMU();
  QemuVm vm(idle_vm());
  GuestRamCopy ram;
  MigrationStreamParser parser(&ram);
  const std::string file = temp_path("bg.stream");
  auto sink = snap::make_sink({"exec:cat > " + file, false, 0, 0});
  Migrated m = migrate_idle(vm, *sink, parser, true);
  EXPECT_EQ(parser.duplicate_pages(), 0u);
  EXPECT_EQ(parser.unique_pages(), m.total_pages);
  EXPECT_FALSE(parser.ram_end_seen());  // background-snapshot ends without a RAM END section
  EXPECT_EQ(m.out.capabilities.dump().find("background-snapshot") != std::string::npos, true);
  EXPECT_EQ(vm.status(), "running");  // the guest ran on
  std::ifstream in(file, std::ios::binary | std::ios::ate);
  EXPECT_EQ(uint64_t(in.tellg()), parser.bytes().total);
  std::remove(file.c_str());
}

TEST(QemuMigration, BandwidthIsQemusMaxBandwidth) {
  SKIP_WITHOUT_QEMU();
  QemuVm vm(idle_vm());
  MigrationOptions mo;
  mo.max_bandwidth = 300ull << 20;
  mo.downtime_limit_ms = 123;
  MigrationStreamParser parser;
  auto sink = snap::make_sink({"null", false, 0, 0});
  MigrationOutcome out = migrate_to_sink(vm, mo, *sink, parser);
  EXPECT_EQ(out.parameters.value("max-bandwidth", uint64_t(0)), 300ull << 20);
  EXPECT_EQ(out.parameters.value("downtime-limit", uint64_t(0)), 123u);
  // Without a cap snapbench lifts QEMU's default 128 MiB/s.
  QemuVm vm2(idle_vm());
  MigrationStreamParser parser2;
  auto sink2 = snap::make_sink({"null", false, 0, 0});
  MigrationOutcome out2 = migrate_to_sink(vm2, MigrationOptions{}, *sink2, parser2);
  EXPECT_EQ(out2.parameters.value("max-bandwidth", uint64_t(0)), kUnlimitedBandwidth);
}

// Guest RAM shared with snapbench: what snapbench writes before boot is what the guest sees at
// guest-physical 4 GiB, and after a migration the parsed RAM equals that memory byte for byte.
TEST(QemuMigration, SharedGuestRamIsSeenByTheGuestAndVerifiesDirectly) {
  SKIP_WITHOUT_QEMU();
  for (bool background : {false, true}) {
    QemuVmOptions o = idle_vm();
    o.mem_bytes = 96ull << 20;
    o.low_ram_bytes = 64ull << 20;
    o.shared_ram = true;
    o.start_paused = true;
    QemuVm vm(o);
    ASSERT_NE(vm.guest_ram(), nullptr);
    ASSERT_EQ(vm.guest_ram_bytes(), 96ull << 20);
    uint8_t* high = vm.guest_ram() + o.low_ram_bytes;  // guest-physical 4 GiB
    for (uint64_t i = 0; i < (32ull << 20); i += kTargetPageSize) std::memcpy(high + i, &i, sizeof i);
    const std::string seen = vm.execute("human-monitor-command", {{"command-line", "xp /2wx 0x100001000"}});
    EXPECT_NE(seen.find("0x00001000 0x00000000"), std::string::npos) << seen;
    vm.cont();
    GuestRamCopy ram(kSharedRamBlock);
    MigrationStreamParser parser(&ram);
    auto sink = snap::make_sink({"null", false, 0, 0});
    if (!background) vm.stop();
    migrate_idle(vm, *sink, parser, background, kSharedRamBlock);
    if (background) vm.stop();  // an idle SeaBIOS guest leaves the data area alone; stop it to compare
    ASSERT_TRUE(ram.found());
    RamCompare c = ram.compare_with_memory(vm.guest_ram(), vm.guest_ram_bytes(), 0, o.low_ram_bytes);
    EXPECT_TRUE(c.pass) << c.message;
    EXPECT_EQ(c.pages_compared, (32ull << 20) / kTargetPageSize);
    EXPECT_EQ(std::memcmp(ram.page((o.low_ram_bytes >> 12) + 5), high + 5 * kTargetPageSize, kTargetPageSize), 0);
  }
}

// snapbench's own (shared) Region as the guest's data area: plugged at guest-physical 4 GiB, and a
// background snapshot of it parses into exactly the region's pages.
TEST(QemuMigration, SharedRegionIsTheGuestsDataAreaAtFourGiB) {
  SKIP_WITHOUT_QEMU();
  snap::RegionOptions ro;
  ro.bytes = 32ull << 20;
  ro.populate = 0.5;
  ro.shared = true;
  snap::Region region(ro);
  QemuVmOptions o = idle_vm();
  o.data_fd = region.fd();
  o.data_bytes = region.bytes();
  QemuVm vm(o);
  uint64_t marker = 0x1122334455667788ull;
  std::memcpy(region.page(3) + 8, &marker, sizeof marker);
  const std::string seen = vm.execute("human-monitor-command", {{"command-line", "xp /2wx 0x100003008"}});
  EXPECT_NE(seen.find("0x55667788 0x11223344"), std::string::npos) << seen;
  GuestRamCopy ram(kDataRamBlock);
  MigrationStreamParser parser(&ram);
  auto sink = snap::make_sink({"null", false, 0, 0});
  migrate_idle(vm, *sink, parser, true);
  ASSERT_TRUE(ram.found());
  const int b = parser.block_index(kDataRamBlock);
  ASSERT_GE(b, 0);
  EXPECT_EQ(parser.blocks()[size_t(b)].unique_pages, region.pages());
  EXPECT_EQ(parser.blocks()[size_t(b)].duplicate_pages(), 0u);
  // The unpopulated half went as zero pages.
  EXPECT_EQ(parser.blocks()[size_t(b)].zero_pages, region.pages() - region.populated_pages());
  RamCompare c = ram.compare_with_memory(region.base(), region.bytes());
  EXPECT_TRUE(c.pass) << c.message;
}

// A migration slow enough to interfere with: 64 KiB/s for ~0.6 MB of RAM records.
MigrationOptions slow_migration() {
  MigrationOptions mo;
  mo.max_bandwidth = 64 << 10;
  mo.qmp_timeout_s = 2;
  return mo;
}

// Sends `sig` to QEMU half a second into a slow migration: the migration must fail with a message
// containing `needle`, and no QEMU may be left once the VM is shut down.
void expect_failure_after_signal(int sig, const std::string& needle) {
  QemuVm vm(idle_vm());
  const pid_t pid = vm.process().pid();
  std::thread signaller([pid, sig] {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    kill(pid, sig);
  });
  MigrationStreamParser parser;
  auto sink = snap::make_sink({"null", false, 0, 0});
  try {
    migrate_to_sink(vm, slow_migration(), *sink, parser);
    ADD_FAILURE() << "the migration completed although QEMU got signal " << sig;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
  signaller.join();
  vm.shutdown();
  EXPECT_NE(kill(pid, 0), 0) << "QEMU left behind";
}

TEST(QemuMigration, QemuDyingMidMigrationFailsWithItsLastStderrLine) {
  SKIP_WITHOUT_QEMU();
  // QEMU prints "terminating on signal 15 from pid ..." and exits.
  expect_failure_after_signal(SIGTERM, "terminating on signal 15");
}

TEST(QemuMigration, HangingQemuFailsAndIsKilled) {
  SKIP_WITHOUT_QEMU();
  // A stopped QEMU neither answers QMP nor writes the stream.
  expect_failure_after_signal(SIGSTOP, "did not answer 'query-migrate'");
}

TEST(QemuMigration, FailingSinkCancelsTheMigration) {
  SKIP_WITHOUT_QEMU();
  QemuVm vm(idle_vm());
  MigrationStreamParser parser;
  auto sink = snap::make_sink({"fail:100K", false, 0, 0});
  try {
    migrate_to_sink(vm, MigrationOptions{}, *sink, parser);
    ADD_FAILURE() << "the migration completed into a failing sink";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("fail"), std::string::npos) << e.what();
  }
  // QEMU survives a failed migration and keeps running the guest.
  EXPECT_EQ(vm.status(), "running");
}

}  // namespace
