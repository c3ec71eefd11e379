/* Can ggml's AMX kernels run here, as this compiler builds them?
 *
 * Compiled by native/build.sh as ggml-cpu is (c++ -O3 -march=native); built
 * only when -march=native enables AMX.
 *
 *   amx_probe ggml   configures the tiles exactly as ggml-cpu/amx/mmq.cpp's
 *                    ggml_tile_config_init() does, then runs tile instructions
 *   amx_probe plain  the same with the configuration written byte by byte
 *
 * Exit 0: it ran. SIGILL kills the process (build.sh runs each in a child);
 * exit 3: the kernel refused the tile-data permission, as ggml requests it
 * (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)).
 *
 * Seen on Debian's g++ 12.2 at -O3: "plain" runs and "ggml" dies of SIGILL.
 * The compiler drops the stores that fill ggml's tile_config_t before
 * _tile_loadconfig (it does not see the intrinsic read them), so every tile
 * stays unconfigured and the first tile instruction is illegal. The machine
 * can run AMX; ggml built by this compiler cannot.
 */
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

// ggml-cpu/amx/mmq.cpp, as written there
struct tile_config_t {
    uint8_t palette_id = 0;
    uint8_t start_row = 0;
    uint8_t reserved_0[14] = {0};
    uint16_t colsb[16] = {0};
    uint8_t rows[16] = {0};
};

__attribute__((noinline)) static void config_as_ggml() {
    alignas(64) tile_config_t tc = {};
    tc.palette_id = 1;
    tc.start_row = 0;
    tc.rows[0] = 8;   tc.colsb[0] = 64;
    tc.rows[1] = 8;   tc.colsb[1] = 64;
    tc.rows[2] = 16;  tc.colsb[2] = 32;
    tc.rows[3] = 16;  tc.colsb[3] = 32;
    tc.rows[4] = 16;  tc.colsb[4] = 64;
    tc.rows[5] = 16;  tc.colsb[5] = 64;
    tc.rows[6] = 16;  tc.colsb[6] = 64;
    tc.rows[7] = 16;  tc.colsb[7] = 64;
    _tile_loadconfig(&tc);
}

__attribute__((noinline)) static void config_plain() {
    alignas(64) static volatile unsigned char cfg[64];
    std::memset((void *)cfg, 0, sizeof cfg);
    cfg[0] = 1;
    for (int t = 0; t < 8; t++) {
        cfg[16 + 2 * t] = t < 2 ? 64 : t < 4 ? 32 : 64;
        cfg[48 + t] = t < 2 ? 8 : 16;
    }
    _tile_loadconfig((const void *)cfg);
}

static volatile int sink;

int main(int argc, char **argv) {
    if (argc != 2 || (std::strcmp(argv[1], "ggml") && std::strcmp(argv[1], "plain"))) {
        std::fprintf(stderr, "usage: %s ggml|plain\n", argv[0]);
        return 2;
    }
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
        return 3;
    }
    if (argv[1][0] == 'g') {
        config_as_ggml();
    } else {
        config_plain();
    }
    alignas(64) static int32_t c[16 * 16];
    _tile_zero(4);
    _tile_zero(0);
    _tile_zero(2);
    _tile_dpbssd(4, 2, 0);
    _tile_stored(4, c, 64);
    _tile_release();
    sink = c[0];
    return 0;
}
