#include "commands.h"
namespace rec { int runDump(const DumpOptions&) { return 70; } }
