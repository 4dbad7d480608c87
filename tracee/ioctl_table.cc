#include "ioctl_table.h"

#include <algorithm>
#include <array>

namespace rec::sys {
namespace {

using enum IoctlOut;

// Sizes are the kernel's (x86-64) structs, checked against the uapi headers.
// clang-format off
constexpr IoctlRow kIoctls[] = {
  // HDIO (block devices)
  {0x0301, "HDIO_GETGEO", 16},            // struct hd_geometry
  // Block devices, legacy numbers
  {0x125E, "BLKROGET", 4},
  {0x1260, "BLKGETSIZE", 8},
  {0x1263, "BLKRAGET", 8},
  {0x1267, "BLKSECTGET", 2},
  {0x1268, "BLKSSZGET", 4},
  {0x1278, "BLKIOMIN", 4},
  {0x1279, "BLKIOOPT", 4},
  {0x127A, "BLKALIGNOFF", 4},
  {0x127B, "BLKPBSZGET", 4},
  {0x127C, "BLKDISCARDZEROES", 4},
  {0x127E, "BLKROTATIONAL", 2},
  // Keyboard and console (KD*, GIO_*)
  {0x4B31, "KDGETLED", 1},
  {0x4B33, "KDGKBTYPE", 1},
  {0x4B3A, "KDSETMODE", 0},
  {0x4B3B, "KDGETMODE", 4},
  {0x4B40, "GIO_SCRNMAP", 256},
  {0x4B44, "KDGKBMODE", 4},
  {0x4B45, "KDSKBMODE", 0},
  {0x4B46, "KDGKBENT", 4},                // struct kbentry
  {0x4B48, "KDGKBSENT", 513},             // struct kbsentry
  {0x4B4A, "KDGKBDIACR", 772},            // struct kbdiacrs
  {0x4B4C, "KDGETKEYCODE", 8},            // struct kbkeycode
  {0x4B60, "GIO_FONT", 8192},
  {0x4B62, "KDGKBMETA", 4},
  {0x4B64, "KDGKBLED", 1},
  {0x4B69, "GIO_UNISCRNMAP", 512},
  {0x4B70, "GIO_CMAP", 48},
  {0x4BFA, "KDGKBDIACRUC", 3076},         // struct kbdiacrsuc
  // Terminals (asm-generic/ioctls.h)
  {0x5401, "TCGETS", 36},                 // the kernel's struct termios, not glibc's 60 bytes
  {0x5402, "TCSETS", 0},
  {0x5403, "TCSETSW", 0},
  {0x5404, "TCSETSF", 0},
  {0x5405, "TCGETA", 18},                 // struct termio
  {0x5406, "TCSETA", 0},
  {0x5407, "TCSETAW", 0},
  {0x5408, "TCSETAF", 0},
  {0x5409, "TCSBRK", 0},
  {0x540A, "TCXONC", 0},
  {0x540B, "TCFLSH", 0},
  {0x540C, "TIOCEXCL", 0},
  {0x540D, "TIOCNXCL", 0},
  {0x540E, "TIOCSCTTY", 0},
  {0x540F, "TIOCGPGRP", 4},
  {0x5410, "TIOCSPGRP", 0},
  {0x5411, "TIOCOUTQ", 4},
  {0x5412, "TIOCSTI", 0},
  {0x5413, "TIOCGWINSZ", 8},
  {0x5414, "TIOCSWINSZ", 0},
  {0x5415, "TIOCMGET", 4},
  {0x5416, "TIOCMBIS", 0},
  {0x5417, "TIOCMBIC", 0},
  {0x5418, "TIOCMSET", 0},
  {0x5419, "TIOCGSOFTCAR", 4},
  {0x541A, "TIOCSSOFTCAR", 0},
  {0x541B, "FIONREAD", 4},
  {0x541C, "TIOCLINUX", 1},               // the subcodes that answer write one byte
  {0x541D, "TIOCCONS", 0},
  {0x541E, "TIOCGSERIAL", 72},            // struct serial_struct
  {0x541F, "TIOCSSERIAL", 0},
  {0x5420, "TIOCPKT", 0},
  {0x5421, "FIONBIO", 0},
  {0x5422, "TIOCNOTTY", 0},
  {0x5423, "TIOCSETD", 0},
  {0x5424, "TIOCGETD", 4},
  {0x5425, "TCSBRKP", 0},
  {0x5427, "TIOCSBRK", 0},
  {0x5428, "TIOCCBRK", 0},
  {0x5429, "TIOCGSID", 4},
  {0x542E, "TIOCGRS485", 32},             // struct serial_rs485
  {0x542F, "TIOCSRS485", 32},             // written back as applied
  {0x5432, "TCGETX", 16},                 // struct termiox
  {0x5437, "TIOCVHANGUP", 0},
  {0x5450, "FIONCLEX", 0},
  {0x5451, "FIOCLEX", 0},
  {0x5452, "FIOASYNC", 0},
  {0x5454, "TIOCSERGWILD", 4},
  {0x5456, "TIOCGLCKTRMIOS", 36},
  {0x5457, "TIOCSLCKTRMIOS", 0},
  {0x5459, "TIOCSERGETLSR", 4},
  {0x545A, "TIOCSERGETMULTI", 168},       // struct serial_multiport_struct
  {0x545C, "TIOCMIWAIT", 0},
  {0x545D, "TIOCGICOUNT", 80},            // struct serial_icounter_struct
  {0x5460, "FIOQSIZE", 8},
  // Virtual terminals (linux/vt.h)
  {0x5600, "VT_OPENQRY", 4},
  {0x5601, "VT_GETMODE", 8},              // struct vt_mode
  {0x5602, "VT_SETMODE", 0},
  {0x5603, "VT_GETSTATE", 6},             // struct vt_stat
  {0x5604, "VT_SENDSIG", 0},
  {0x5605, "VT_RELDISP", 0},
  {0x5606, "VT_ACTIVATE", 0},
  {0x5607, "VT_WAITACTIVE", 0},
  {0x5608, "VT_DISALLOCATE", 0},
  {0x560D, "VT_GETHIFONTMASK", 2},
  {0x560E, "VT_WAITEVENT", 28},           // struct vt_event
  // Sockets (linux/sockios.h)
  {0x8901, "FIOSETOWN", 0},
  {0x8902, "SIOCSPGRP", 0},
  {0x8903, "FIOGETOWN", 4},
  {0x8904, "SIOCGPGRP", 4},
  {0x8905, "SIOCATMARK", 4},
  {0x8906, "SIOCGSTAMP", 16},             // struct timeval
  {0x8907, "SIOCGSTAMPNS", 16},           // struct timespec
  {0x8910, "SIOCGIFNAME", 40},            // struct ifreq, from here on
  {0x8912, "SIOCGIFCONF", 16, Ifconf},
  {0x8913, "SIOCGIFFLAGS", 40},
  {0x8915, "SIOCGIFADDR", 40},
  {0x8917, "SIOCGIFDSTADDR", 40},
  {0x8919, "SIOCGIFBRDADDR", 40},
  {0x891B, "SIOCGIFNETMASK", 40},
  {0x891D, "SIOCGIFMETRIC", 40},
  {0x891F, "SIOCGIFMEM", 40},
  {0x8921, "SIOCGIFMTU", 40},
  {0x8925, "SIOCGIFENCAP", 40},
  {0x8927, "SIOCGIFHWADDR", 40},
  {0x8929, "SIOCGIFSLAVE", 40},
  {0x8933, "SIOCGIFINDEX", 40},
  {0x8935, "SIOCGIFPFLAGS", 40},
  {0x8938, "SIOCGIFCOUNT", 40},
  {0x8942, "SIOCGIFTXQLEN", 40},
  {0x8947, "SIOCGMIIPHY", 40},
  {0x8948, "SIOCGMIIREG", 40},
  {0x894B, "SIOCOUTQNSD", 4},
  {0x8954, "SIOCGARP", 68},               // struct arpreq
  {0x8970, "SIOCGIFMAP", 40},
  {0x89B1, "SIOCGHWTSTAMP", 40},
  // Encoded requests that need a name or more than their _IOC size
  {0x40045431, "TIOCSPTLCK", 0},
  {0x80045430, "TIOCGPTN", 4},
  {0x80086601, "FS_IOC_GETFLAGS", 8},
  {0xC020660B, "FS_IOC_FIEMAP", 32, Fiemap},
};
// clang-format on

constexpr bool sortedUnique() {
  for (size_t i = 1; i < std::size(kIoctls); ++i)
    if (kIoctls[i - 1].request >= kIoctls[i].request) return false;
  return true;
}
static_assert(sortedUnique(), "ioctl rows must be in strictly increasing request order");

}  // namespace

const IoctlRow* findIoctl(uint32_t request) {
  auto it = std::lower_bound(std::begin(kIoctls), std::end(kIoctls), request,
                             [](const IoctlRow& row, uint32_t r) { return row.request < r; });
  return it != std::end(kIoctls) && it->request == request ? it : nullptr;
}

}  // namespace rec::sys
