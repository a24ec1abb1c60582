// A human-readable summary of one run, for the terminal.
#pragma once
#include <cstdio>

#include "harness/run.h"

namespace snap {
void print_summary(FILE* out, const RunResult& r, int rep, int reps);
}
