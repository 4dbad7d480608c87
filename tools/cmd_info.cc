#include "commands.h"
namespace rec { int runInfo(const InfoOptions&) { return 70; } }
